// Which message events a gateway session receives, and how much of each, given the intents it
// identified with: GUILD_MESSAGES / DIRECT_MESSAGES decide whether MESSAGE_CREATE/UPDATE/DELETE arrive,
// MESSAGE_CONTENT whether content, attachments, embeds and components of others' messages are filled.
import { type APIMessage, GatewayDispatchEvents, GatewayIntentBits } from 'discord-api-types/v10';

export type MessageEventKind = 'create' | 'update' | 'delete';

const EVENT_NAMES = {
  create: GatewayDispatchEvents.MessageCreate,
  update: GatewayDispatchEvents.MessageUpdate,
  delete: GatewayDispatchEvents.MessageDelete,
} as const;

export interface MessageEventInput {
  kind: MessageEventKind;
  message: APIMessage;
  guildId?: string;
  /** MESSAGE_CREATE/UPDATE carry it; discord.js needs it to build a DM channel it has not cached. */
  channelType: number;
  /** Guild member fields of the author (without `user`), as MESSAGE_CREATE carries them. */
  member?: Record<string, unknown>;
  /** Own messages, DMs and messages mentioning the bot keep their content without MESSAGE_CONTENT. */
  contentExempt: boolean;
}

export function messageEventName(kind: MessageEventKind): string {
  return EVENT_NAMES[kind];
}

/** The `d` this session gets for the event, or undefined when its intents exclude it. */
export function messageEventFor(
  input: MessageEventInput,
  intents: number,
  enforceContentIntent: boolean,
): unknown | undefined {
  const needed = input.guildId ? GatewayIntentBits.GuildMessages : GatewayIntentBits.DirectMessages;
  if ((intents & needed) === 0) return undefined;
  const { message, guildId } = input;
  if (input.kind === 'delete')
    return { id: message.id, channel_id: message.channel_id, ...(guildId ? { guild_id: guildId } : {}) };
  const hidden =
    enforceContentIntent && !input.contentExempt && (intents & GatewayIntentBits.MessageContent) === 0;
  return {
    ...message,
    ...(hidden ? { content: '', embeds: [], attachments: [], components: [] } : {}),
    channel_type: input.channelType,
    ...(guildId ? { guild_id: guildId } : {}),
    ...(guildId && input.member ? { member: input.member } : {}),
  };
}
