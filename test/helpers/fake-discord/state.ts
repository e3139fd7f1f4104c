// What the fake Discord remembers: guilds and channels, messages (the current state after every edit),
// attachment bytes, interactions with their acks and follow-ups, and registered commands. REST, the gateway
// and the test-facing API all read and write this one store.
import type {
  APIApplicationCommand,
  APIEmbed,
  APIInteraction,
  APIMessageInteractionMetadata,
  APIRole,
  APIUser,
  ChannelType,
  InteractionResponseType,
  InteractionType,
  MessageType,
} from 'discord-api-types/v10';

export interface ChannelState {
  id: string;
  type: ChannelType;
  name?: string;
  guildId?: string;
  /** DMs: the other person. */
  recipient?: APIUser;
  /** False for channels of guilds the bot is not in and DMs between users (user-install contexts). */
  botCanRead: boolean;
  /** DMs between users: the user whose private channel this is (the other side is `recipient`). */
  privateOf?: string;
}

export interface GuildState {
  id: string;
  name: string;
  ownerId: string;
  roles: APIRole[];
  channelIds: string[];
  members: APIUser[];
  joinedAt: number;
}

export interface AttachmentState {
  id: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
  /** The channel in the CDN path (`/attachments/<channel>/<id>/<name>`). */
  channelId: string;
  description?: string;
  title?: string;
  width?: number;
  height?: number;
}

export interface MessageState {
  id: string;
  channelId: string;
  guildId?: string;
  author: APIUser;
  content: string;
  embeds: APIEmbed[];
  components: unknown[];
  flags: number;
  attachmentIds: string[];
  at: number;
  editedAt: number | null;
  type: MessageType;
  webhookId?: string;
  applicationId?: string;
  interactionMetadata?: APIMessageInteractionMetadata;
  mentions: APIUser[];
  deleted: boolean;
}

export interface InteractionState {
  id: string;
  token: string;
  type: InteractionType;
  payload: APIInteraction;
  dispatchedAt: number;
  /** Whether a bot user of the app can see the channel (decides the 5 follow-up limit). */
  botPresent: boolean;
  sizeLimit: number;
  channelId: string;
  guildId?: string;
  ack?: { type: InteractionResponseType; at: number };
  /** The "@original" message: the response, or for components the message they are on. */
  originalId?: string;
  /** Ephemeral flag chosen by a deferred reply, inherited by the first follow-up that fills it. */
  deferredEphemeral?: boolean;
  sourceMessageId?: string;
  followUpIds: string[];
}

export type CommandState = APIApplicationCommand;

export class Store {
  readonly guilds = new Map<string, GuildState>();
  readonly channels = new Map<string, ChannelState>();
  readonly messages = new Map<string, MessageState>();
  readonly attachments = new Map<string, AttachmentState>();
  readonly interactions = new Map<string, InteractionState>();
  readonly interactionsByToken = new Map<string, InteractionState>();
  /** Registered commands: key '' for global, else the guild id. */
  readonly commands = new Map<string, CommandState[]>();

  addInteraction(state: InteractionState): void {
    this.interactions.set(state.id, state);
    this.interactionsByToken.set(state.token, state);
  }

  /** Live messages of a channel, oldest first. */
  channelMessages(channelId: string): MessageState[] {
    return [...this.messages.values()]
      .filter((m) => m.channelId === channelId && !m.deleted)
      .sort((a, b) => compareIds(a.id, b.id));
  }

  liveMessage(id: string): MessageState | undefined {
    const message = this.messages.get(id);
    return message && !message.deleted ? message : undefined;
  }
}

export function compareIds(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
