// Where a job's message lives and how to reach it over REST alone: the interaction's webhook while its
// token lives (15 min), then a channel message (or the requester's DM where the bot cannot post).
// The address is plain JSON, saved with the in-flight entry, so a restarted bot rebuilds the target
// without the discord.js Interaction it came from.
import { DiscordAPIError, type RawFile, type REST, Routes } from 'discord.js';
import { z } from 'zod';

/** Discord's lifetime of an interaction token. */
export const INTERACTION_TOKEN_MS = 15 * 60_000;

/** Follow-ups an interaction may send where the app has no bot (user installs). */
export const USER_INSTALL_FOLLOW_UPS = 5;

export const replyAddressSchema = z.object({
  v: z.literal(1),
  applicationId: z.string(),
  /** The interaction webhook; dropped once the job moved to a channel message. */
  interaction: z.object({ token: z.string(), expiresAt: z.number() }).optional(),
  channelId: z.string(),
  /** The message drawn on: the interaction's reply, or after a move the channel (or DM) message. */
  messageId: z.string().optional(),
  /** Set once the message is a channel message edited with the bot's token. */
  moved: z.boolean().optional(),
  /** The interaction's reply, for links from a moved message. */
  originalId: z.string().optional(),
  /** The bot is in the place (guild install, its own DM) and may post there. */
  canPost: z.boolean(),
  /** The requester: where a job from a user-install context goes on (their DM). */
  userId: z.string(),
  guildId: z.string().optional(),
  /** An age-restricted (NSFW) channel. */
  ageRestricted: z.boolean().optional(),
  /** The interaction's attachment_size_limit. */
  sizeLimit: z.number().int().positive(),
  /** Follow-ups used so far (5 at most where the bot is not present). */
  followUps: z.number().int().min(0),
});
export type ReplyAddress = z.infer<typeof replyAddressSchema>;

/** A message body with its files, as REST takes it. */
export interface OutgoingMessage {
  body: Record<string, unknown>;
  files: RawFile[];
}

/** The URL Discord clients open a message at. */
export function jumpLink(address: Pick<ReplyAddress, 'guildId' | 'channelId'>, messageId: string): string {
  return `https://discord.com/channels/${address.guildId ?? '@me'}/${address.channelId}/${messageId}`;
}

/** The interaction token has expired or was never valid (50027 Invalid Webhook Token, 10015). */
export function isTokenGone(error: unknown): boolean {
  return (
    error instanceof DiscordAPIError && (error.code === 50027 || error.code === 10015 || error.status === 401)
  );
}

/** The message was deleted (10008 Unknown Message). */
export function isMessageGone(error: unknown): boolean {
  return error instanceof DiscordAPIError && error.code === 10008;
}

/** The follow-up limit of a user-install context is spent (40094). */
export function isFollowUpLimit(error: unknown): boolean {
  return error instanceof DiscordAPIError && error.code === 40094;
}

interface MessageLike {
  id: string;
  attachments?: { id: string; filename: string }[];
}

/**
 * REST calls on one address. Every body leaves with `allowed_mentions: { parse: [] }`: a prompt
 * that reads `@everyone` pings nobody, whatever escaping missed.
 */
export class ReplyTarget {
  constructor(
    readonly rest: REST,
    public address: ReplyAddress,
    readonly now: () => number,
  ) {}

  /** The interaction webhook is usable for at least `marginMs` more. */
  tokenAlive(marginMs = 0): boolean {
    const i = this.address.interaction;
    return i !== undefined && this.now() < i.expiresAt - marginMs;
  }

  /** Follow-ups left (unbounded where the bot is present). */
  get followUpsLeft(): number {
    return this.address.canPost
      ? Number.POSITIVE_INFINITY
      : Math.max(0, USER_INSTALL_FOLLOW_UPS - this.address.followUps);
  }

  async editOriginal(message: OutgoingMessage): Promise<MessageLike> {
    const i = this.#interaction();
    return (await this.rest.patch(Routes.webhookMessage(this.address.applicationId, i.token, '@original'), {
      body: withoutMentions(message.body),
      files: message.files,
      auth: false,
    })) as MessageLike;
  }

  async deleteOriginal(): Promise<void> {
    const i = this.#interaction();
    await this.rest.delete(Routes.webhookMessage(this.address.applicationId, i.token, '@original'), {
      auth: false,
    });
  }

  async followUp(message: OutgoingMessage): Promise<MessageLike> {
    const i = this.#interaction();
    const sent = (await this.rest.post(Routes.webhook(this.address.applicationId, i.token), {
      body: withoutMentions(message.body),
      files: message.files,
      auth: false,
    })) as MessageLike;
    this.address = { ...this.address, followUps: this.address.followUps + 1 };
    return sent;
  }

  async post(channelId: string, message: OutgoingMessage): Promise<MessageLike> {
    return (await this.rest.post(Routes.channelMessages(channelId), {
      body: withoutMentions(message.body),
      files: message.files,
    })) as MessageLike;
  }

  async edit(channelId: string, messageId: string, message: OutgoingMessage): Promise<MessageLike> {
    return (await this.rest.patch(Routes.channelMessage(channelId, messageId), {
      body: withoutMentions(message.body),
      files: message.files,
    })) as MessageLike;
  }

  /** Opens (or finds) the DM channel with a user. */
  async dmChannel(userId: string): Promise<string> {
    const channel = (await this.rest.post(Routes.userChannels(), { body: { recipient_id: userId } })) as {
      id: string;
    };
    return channel.id;
  }

  #interaction(): { token: string } {
    const i = this.address.interaction;
    if (!i) throw new Error('this reply has no interaction token any more');
    return i;
  }
}

function withoutMentions(body: Record<string, unknown>): Record<string, unknown> {
  return { ...body, allowed_mentions: { parse: [] } };
}
