// Discord's JSON objects as the fake sends them, built from plain inputs and typed with
// discord-api-types: users, members, guilds, channels, messages and the interaction payloads a test
// dispatches (slash commands, buttons, selects, modal submits, context menus).
import {
  type APIApplicationCommandInteractionDataBasicOption,
  type APIApplicationCommandInteractionDataOption,
  type APIAttachment,
  type APIAuthorizingIntegrationOwnersMap,
  type APIChannel,
  type APIChatInputApplicationCommandInteraction,
  type APIDMChannel,
  type APIInteractionGuildMember,
  type APIMessage,
  type APIMessageApplicationCommandInteraction,
  type APIMessageComponentButtonInteraction,
  type APIMessageComponentSelectMenuInteraction,
  type APIMessageTopLevelComponent,
  type APIModalSubmitInteraction,
  type APIPartialInteractionGuild,
  type APIRole,
  type APITextChannel,
  type APIUser,
  type APIUserApplicationCommandInteraction,
  ApplicationCommandOptionType,
  ApplicationCommandType,
  type ChannelFlags,
  ChannelType,
  ComponentType,
  type GatewayGuildCreateDispatchData,
  GuildDefaultMessageNotifications,
  GuildExplicitContentFilter,
  type GuildMemberFlags,
  GuildMFALevel,
  GuildNSFWLevel,
  GuildPremiumTier,
  type GuildSystemChannelFlags,
  GuildVerificationLevel,
  type InteractionContextType,
  InteractionType,
  Locale,
  type ModalSubmitComponent,
  type ModalSubmitLabelComponent,
  type RoleFlags,
} from 'discord-api-types/v10';
import type { ChannelState, GuildState, MessageState } from './state.js';

/** Permissions bitfields as Discord sends them (decimal strings). */
export const PERMISSIONS = {
  /** A bot with everything it needs in a test guild (administrator). */
  botInGuild: '8',
  /**
   * What an app without a bot gets in user-install contexts: attach files, embed links, mention everyone,
   * external emojis, send messages, use application commands.
   */
  userInstall: String((1n << 15n) | (1n << 14n) | (1n << 17n) | (1n << 18n) | (1n << 11n) | (1n << 31n)),
  member: '2248473465835073',
} as const;

export function userPayload(id: string, username: string, bot = false): APIUser {
  return {
    id,
    username,
    discriminator: '0',
    global_name: bot ? null : username,
    avatar: null,
    ...(bot ? { bot: true } : {}),
  };
}

export function everyoneRole(guildId: string): APIRole {
  return {
    id: guildId,
    name: '@everyone',
    color: 0,
    colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position: 0,
    permissions: PERMISSIONS.member,
    managed: false,
    mentionable: false,
    flags: 0 as RoleFlags,
  };
}

export function memberPayload(
  user: APIUser,
  joinedAt: number,
  permissions: string,
): APIInteractionGuildMember {
  return {
    user,
    roles: [],
    joined_at: new Date(joinedAt).toISOString(),
    deaf: false,
    mute: false,
    flags: 0 as GuildMemberFlags,
    nick: null,
    avatar: null,
    premium_since: null,
    pending: false,
    communication_disabled_until: null,
    permissions,
  };
}

export function channelPayload(channel: ChannelState): APIChannel {
  if (channel.type === ChannelType.DM) {
    return {
      id: channel.id,
      type: ChannelType.DM,
      name: null,
      last_message_id: null,
      recipients: channel.recipient ? [channel.recipient] : [],
      flags: 0 as ChannelFlags,
    } satisfies APIDMChannel;
  }
  return {
    id: channel.id,
    type: ChannelType.GuildText,
    name: channel.name ?? 'general',
    guild_id: channel.guildId ?? '',
    position: 0,
    permission_overwrites: [],
    parent_id: null,
    topic: null,
    nsfw: false,
    last_message_id: null,
    rate_limit_per_user: 0,
    default_thread_rate_limit_per_user: 0,
    flags: 0 as ChannelFlags,
  } satisfies APITextChannel;
}

/** GUILD_CREATE after READY: discord.js caches channels, roles and members from it. */
export function guildCreatePayload(
  guild: GuildState,
  channels: ChannelState[],
  bot: APIUser,
): GatewayGuildCreateDispatchData {
  const members = [bot, ...guild.members].map((user) => {
    const { permissions: _permissions, ...member } = memberPayload(user, guild.joinedAt, '0');
    return member;
  });
  return {
    id: guild.id,
    name: guild.name,
    icon: null,
    splash: null,
    discovery_splash: null,
    owner_id: guild.ownerId,
    afk_channel_id: null,
    afk_timeout: 300,
    verification_level: GuildVerificationLevel.None,
    default_message_notifications: GuildDefaultMessageNotifications.OnlyMentions,
    explicit_content_filter: GuildExplicitContentFilter.Disabled,
    roles: guild.roles,
    emojis: [],
    stickers: [],
    features: [],
    mfa_level: GuildMFALevel.None,
    application_id: null,
    system_channel_id: null,
    system_channel_flags: 0 as GuildSystemChannelFlags,
    rules_channel_id: null,
    vanity_url_code: null,
    description: null,
    banner: null,
    premium_tier: GuildPremiumTier.None,
    preferred_locale: Locale.EnglishUS,
    public_updates_channel_id: null,
    nsfw_level: GuildNSFWLevel.Default,
    premium_progress_bar_enabled: false,
    hub_type: null,
    safety_alerts_channel_id: null,
    incidents_data: null,
    region: 'deprecated',
    joined_at: new Date(guild.joinedAt).toISOString(),
    large: false,
    unavailable: false,
    member_count: members.length,
    voice_states: [],
    members,
    channels: channels.map(channelPayload) as GatewayGuildCreateDispatchData['channels'],
    threads: [],
    presences: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
  } as GatewayGuildCreateDispatchData;
}

export function messagePayload(message: MessageState, attachments: APIAttachment[]): APIMessage {
  return {
    id: message.id,
    channel_id: message.channelId,
    author: message.author,
    content: message.content,
    timestamp: new Date(message.at).toISOString(),
    edited_timestamp: message.editedAt === null ? null : new Date(message.editedAt).toISOString(),
    tts: false,
    mention_everyone: false,
    mentions: message.mentions,
    mention_roles: [],
    attachments,
    embeds: message.embeds,
    pinned: false,
    type: message.type,
    flags: message.flags,
    components: message.components as APIMessageTopLevelComponent[],
    ...(message.webhookId ? { webhook_id: message.webhookId } : {}),
    ...(message.applicationId ? { application_id: message.applicationId } : {}),
    ...(message.interactionMetadata ? { interaction_metadata: message.interactionMetadata } : {}),
  };
}

// --- interactions ---------------------------------------------------------------------------------------

/** Where an interaction happens, already resolved against the fake's guilds and channels. */
export interface InteractionPlace {
  context: InteractionContextType;
  owners: APIAuthorizingIntegrationOwnersMap;
  user: APIUser;
  channel: ChannelState;
  guild?: { id: string; joinedAt: number };
  appPermissions: string;
  memberPermissions: string;
  botPresent: boolean;
}

export interface InteractionBase {
  id: string;
  token: string;
  applicationId: string;
  place: InteractionPlace;
  attachmentSizeLimit: number;
  locale?: Locale;
}

function baseFields(base: InteractionBase) {
  const { place } = base;
  const channel = channelPayload(place.channel);
  const partialChannel = {
    ...channel,
    ...(place.channel.guildId ? { guild_id: place.channel.guildId } : {}),
  };
  const guild: APIPartialInteractionGuild | undefined = place.guild
    ? { id: place.guild.id, locale: Locale.EnglishUS, features: [] }
    : undefined;
  return {
    id: base.id,
    application_id: base.applicationId,
    token: base.token,
    version: 1 as const,
    app_permissions: place.appPermissions,
    locale: base.locale ?? Locale.EnglishUS,
    entitlements: [],
    authorizing_integration_owners: place.owners,
    context: place.context,
    attachment_size_limit: base.attachmentSizeLimit,
    channel: partialChannel,
    channel_id: place.channel.id,
    ...(place.guild && guild
      ? {
          guild_id: place.guild.id,
          guild,
          guild_locale: Locale.EnglishUS,
          member: memberPayload(place.user, place.guild.joinedAt, place.memberPermissions),
        }
      : { user: place.user }),
  };
}

/** A slash-command option value: type is inferred (string, integer/number, boolean, attachment). */
export type OptionValue =
  | string
  | number
  | boolean
  | APIAttachment
  | { type: ApplicationCommandOptionType; value: string | number | boolean };

export interface ChatInputInput {
  name: string;
  commandId: string;
  options?: Readonly<Record<string, OptionValue>>;
  subcommand?: string;
  subcommandGroup?: string;
  /** Set when the command was registered for a guild. */
  commandGuildId?: string;
}

function isAttachment(value: OptionValue): value is APIAttachment {
  return typeof value === 'object' && 'filename' in value && 'url' in value;
}

function basicOption(name: string, value: OptionValue): APIApplicationCommandInteractionDataBasicOption {
  if (isAttachment(value)) return { name, type: ApplicationCommandOptionType.Attachment, value: value.id };
  if (typeof value === 'object') return { name, ...value } as APIApplicationCommandInteractionDataBasicOption;
  if (typeof value === 'string') return { name, type: ApplicationCommandOptionType.String, value };
  if (typeof value === 'boolean') return { name, type: ApplicationCommandOptionType.Boolean, value };
  return {
    name,
    type: Number.isInteger(value)
      ? ApplicationCommandOptionType.Integer
      : ApplicationCommandOptionType.Number,
    value,
  };
}

export function chatInputInteraction(
  base: InteractionBase,
  input: ChatInputInput,
): APIChatInputApplicationCommandInteraction {
  const entries = Object.entries(input.options ?? {});
  const basic = entries.map(([name, value]) => basicOption(name, value));
  let options: APIApplicationCommandInteractionDataOption[] = basic;
  if (input.subcommand) {
    options = [{ name: input.subcommand, type: ApplicationCommandOptionType.Subcommand, options: basic }];
    if (input.subcommandGroup) {
      options = [
        {
          name: input.subcommandGroup,
          type: ApplicationCommandOptionType.SubcommandGroup,
          options: options as never,
        },
      ];
    }
  }
  const attachments = Object.fromEntries(
    entries.flatMap(([, value]) => (isAttachment(value) ? [[value.id, value] as const] : [])),
  );
  return {
    ...baseFields(base),
    type: InteractionType.ApplicationCommand,
    data: {
      id: input.commandId,
      name: input.name,
      type: ApplicationCommandType.ChatInput,
      options,
      ...(Object.keys(attachments).length > 0 ? { resolved: { attachments } } : {}),
      ...(input.commandGuildId ? { guild_id: input.commandGuildId } : {}),
    },
  } as APIChatInputApplicationCommandInteraction;
}

/** Message context menu: the target comes whole in resolved.messages, content and attachments included. */
export function messageCommandInteraction(
  base: InteractionBase,
  input: { name: string; commandId: string; target: APIMessage },
): APIMessageApplicationCommandInteraction {
  return {
    ...baseFields(base),
    type: InteractionType.ApplicationCommand,
    data: {
      id: input.commandId,
      name: input.name,
      type: ApplicationCommandType.Message,
      target_id: input.target.id,
      resolved: { messages: { [input.target.id]: input.target } },
    },
  } as APIMessageApplicationCommandInteraction;
}

export function userCommandInteraction(
  base: InteractionBase,
  input: { name: string; commandId: string; target: APIUser },
): APIUserApplicationCommandInteraction {
  return {
    ...baseFields(base),
    type: InteractionType.ApplicationCommand,
    data: {
      id: input.commandId,
      name: input.name,
      type: ApplicationCommandType.User,
      target_id: input.target.id,
      resolved: { users: { [input.target.id]: input.target } },
    },
  } as APIUserApplicationCommandInteraction;
}

export function buttonInteraction(
  base: InteractionBase,
  input: { customId: string; message: APIMessage },
): APIMessageComponentButtonInteraction {
  return {
    ...baseFields(base),
    type: InteractionType.MessageComponent,
    message: input.message,
    data: { custom_id: input.customId, component_type: ComponentType.Button },
  } as APIMessageComponentButtonInteraction;
}

export function selectInteraction(
  base: InteractionBase,
  input: { customId: string; message: APIMessage; values: string[] },
): APIMessageComponentSelectMenuInteraction {
  return {
    ...baseFields(base),
    type: InteractionType.MessageComponent,
    message: input.message,
    data: { custom_id: input.customId, component_type: ComponentType.StringSelect, values: input.values },
  } as APIMessageComponentSelectMenuInteraction;
}

export interface ModalSubmitInput {
  customId: string;
  /** Text inputs by custom_id, each wrapped in a Label as current modals are. */
  fields?: Readonly<Record<string, string>>;
  /** File-upload components by custom_id; the attachments come in resolved.attachments. */
  files?: Readonly<Record<string, readonly APIAttachment[]>>;
  /** The message whose component opened the modal, if any (makes type 6/7 callbacks valid). */
  message?: APIMessage;
}

export function modalSubmitInteraction(
  base: InteractionBase,
  input: ModalSubmitInput,
): APIModalSubmitInteraction {
  let id = 1;
  const label = (component: ModalSubmitComponent): ModalSubmitLabelComponent => ({
    type: ComponentType.Label,
    id: id++,
    component: { ...component, id: id++ },
  });
  const components: ModalSubmitLabelComponent[] = [
    ...Object.entries(input.fields ?? {}).map(([customId, value]) =>
      label({ type: ComponentType.TextInput, custom_id: customId, value, id: 0 }),
    ),
    ...Object.entries(input.files ?? {}).map(([customId, files]) =>
      label({ type: ComponentType.FileUpload, custom_id: customId, values: files.map((f) => f.id), id: 0 }),
    ),
  ];
  const attachments = Object.fromEntries(
    Object.values(input.files ?? {}).flatMap((files) => files.map((f) => [f.id, f] as const)),
  );
  return {
    ...baseFields(base),
    type: InteractionType.ModalSubmit,
    ...(input.message ? { message: input.message } : {}),
    data: {
      custom_id: input.customId,
      components,
      ...(Object.keys(attachments).length > 0 ? { resolved: { attachments } } : {}),
    },
  } as APIModalSubmitInteraction;
}
