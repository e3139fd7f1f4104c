// Channel image search, the Discord side: images of messages in channels a server opted in (via
// /settings) are indexed through the core (MESSAGE_CREATE), dropped on delete, bulk delete, or an
// edit that removes them, and an admin backfill walks a channel's history resumably (cursor in the
// database's channel state). Ids are stored, never CDN URLs: those are signed and expire.
import type { APIAttachment, APIMessage, Message, PartialMessage, REST } from 'discord.js';
import { Routes } from 'discord.js';
import type { ChannelScope, Origin } from '../../shared/jobs.js';
import type { Logger } from '../../shared/logger.js';
import type { ChatCore, RemoteImage } from '../core/chat.js';
import type { SettingsStore } from '../core/settings.js';

/** An attachment as both discord.js and the raw API describe it. */
interface AttachmentLike {
  id: string;
  url: string;
  name: string;
  size: number;
  contentType: string | null | undefined;
}

const IMAGE_NAME = /\.(png|jpe?g|webp|gif|avif)$/i;

/** The attachments of a message that are images (by type, or by name when Discord gave none). */
export function imageAttachments(attachments: Iterable<AttachmentLike>): AttachmentLike[] {
  return [...attachments].filter((a) =>
    a.contentType
      ? a.contentType.startsWith('image/') && a.contentType !== 'image/svg+xml'
      : IMAGE_NAME.test(a.name),
  );
}

export function fromApi(a: APIAttachment): AttachmentLike {
  return { id: a.id, url: a.url, name: a.filename, size: a.size, contentType: a.content_type };
}

export function remoteImage(a: AttachmentLike): RemoteImage {
  return { url: a.url, name: a.name, size: a.size };
}

export function messageLink(guildId: string, channelId: string, messageId: string): string {
  return `https://discord.com/channels/${guildId}/${channelId}/${messageId}`;
}

export interface ChannelIndexerOptions {
  core: ChatCore;
  settings: SettingsStore;
  rest: REST;
  logger: Logger;
  /** The gateway delivers attachments of others' messages (the privileged Message Content intent). */
  messageContent: boolean;
  /** The bot's own user id: its generated images are not indexed (their progress edits would churn). */
  botUserId: () => string | undefined;
  /** How long a channel's opt-in is trusted before reading it again. @defaultValue 30000 */
  cacheMs?: number;
  /** Pause between two history pages of a backfill. @defaultValue 1000 */
  backfillPauseMs?: number;
}

export interface BackfillProgress {
  messages: number;
  images: number;
  failed: number;
  done: boolean;
  resumed: boolean;
  stopped?: 'limit' | 'error';
}

const PAGE = 100;

export class ChannelIndexer {
  readonly #o: Required<ChannelIndexerOptions>;
  readonly #cache = new Map<string, { indexing: boolean; at: number }>();
  readonly #backfills = new Set<string>();

  constructor(options: ChannelIndexerOptions) {
    this.#o = { cacheMs: 30_000, backfillPauseMs: 1000, ...options };
  }

  get messageContent(): boolean {
    return this.#o.messageContent;
  }

  /** Whether a channel opted in (read through the channel-state job, cached briefly). */
  async isIndexed(scope: ChannelScope): Promise<boolean> {
    const key = `${scope.workspace}/${scope.channel}`;
    const cached = this.#cache.get(key);
    if (cached && Date.now() - cached.at < this.#o.cacheMs) return cached.indexing;
    const state = await this.#o.settings.channel(scope);
    this.#cache.set(key, { indexing: state.indexing, at: Date.now() });
    return state.indexing;
  }

  async setIndexed(scope: ChannelScope, indexing: boolean): Promise<void> {
    await this.#o.settings.setChannel(scope, { indexing });
    this.#cache.set(`${scope.workspace}/${scope.channel}`, { indexing, at: Date.now() });
  }

  async onCreate(message: Message): Promise<void> {
    const scope = scopeOf(message);
    if (!scope || message.author.id === this.#o.botUserId()) return;
    const images = imageAttachments(message.attachments.values());
    if (images.length === 0 || !(await this.isIndexed(scope))) return;
    await this.#index(scope, message.id, message.author.id, images);
  }

  async onUpdate(before: Message | PartialMessage, after: Message | PartialMessage): Promise<void> {
    const scope = scopeOf(after);
    if (!scope || after.author?.id === this.#o.botUserId()) return;
    if (!(await this.isIndexed(scope))) return;
    const now = imageAttachments(after.attachments.values());
    if (before.partial) {
      // The old message was not cached (sent before this process started): start its row set over.
      await this.#o.core.unindex(scope, after.id);
      if (now.length > 0) await this.#index(scope, after.id, after.author?.id ?? 'unknown', now);
      return;
    }
    const kept = new Set(now.map((a) => a.id));
    for (const gone of imageAttachments(before.attachments.values())) {
      if (!kept.has(gone.id)) {
        const count = await this.#o.core.unindex(scope, after.id, gone.id);
        this.#o.logger.debug({ ...scope, messageId: after.id, file: gone.id, count }, 'unindexed a file');
      }
    }
  }

  async onDelete(message: Message | PartialMessage): Promise<void> {
    const scope = scopeOf(message);
    if (!scope || !(await this.isIndexed(scope))) return;
    const count = await this.#o.core.unindex(scope, message.id);
    this.#o.logger.debug({ ...scope, messageId: message.id, count }, 'unindexed a message');
  }

  async onBulkDelete(messages: Iterable<Message | PartialMessage>): Promise<void> {
    for (const message of messages) await this.onDelete(message);
  }

  /**
   * Walks a channel's history from where the last run stopped (newest first), indexing images, and
   * saves the cursor after every page so an interrupted run resumes. Stops after `limit` messages.
   */
  async backfill(
    scope: ChannelScope,
    options: { limit: number; onProgress?: (p: BackfillProgress) => void },
  ): Promise<BackfillProgress> {
    const key = `${scope.workspace}/${scope.channel}`;
    if (this.#backfills.has(key)) throw new BackfillRunningError();
    this.#backfills.add(key);
    try {
      const state = await this.#o.settings.channel(scope);
      let cursor = state.backfillCursor ?? undefined;
      const progress: BackfillProgress = {
        messages: 0,
        images: 0,
        failed: 0,
        done: state.backfillDone,
        resumed: cursor !== undefined,
      };
      while (!progress.done && progress.messages < options.limit) {
        let page: APIMessage[];
        const want = Math.min(PAGE, options.limit - progress.messages);
        try {
          const query = new URLSearchParams({ limit: String(want) });
          if (cursor !== undefined) query.set('before', cursor);
          page = (await this.#o.rest.get(Routes.channelMessages(scope.channel), { query })) as APIMessage[];
        } catch (error) {
          this.#o.logger.warn({ err: error, ...scope }, 'backfill could not read the history');
          progress.stopped = 'error';
          return progress;
        }
        for (const message of page) {
          progress.messages++;
          if (message.author.id === this.#o.botUserId()) continue;
          const images = imageAttachments(message.attachments.map(fromApi));
          if (images.length === 0) continue;
          const { indexed, failed } = await this.#index(scope, message.id, message.author.id, images);
          progress.images += indexed;
          progress.failed += failed;
        }
        const oldest = page.at(-1)?.id;
        // A short page is the start of the channel.
        progress.done = page.length < want;
        if (oldest !== undefined) cursor = oldest;
        await this.#o.settings.setChannel(scope, {
          ...(cursor === undefined ? {} : { backfillCursor: cursor }),
          ...(progress.done ? { backfillDone: true } : {}),
        });
        options.onProgress?.({ ...progress });
        if (!progress.done && progress.messages < options.limit) await sleep(this.#o.backfillPauseMs);
      }
      if (!progress.done) progress.stopped = 'limit';
      return progress;
    } finally {
      this.#backfills.delete(key);
    }
  }

  async #index(
    scope: ChannelScope,
    messageId: string,
    userId: string,
    images: AttachmentLike[],
  ): Promise<{ indexed: number; failed: number }> {
    const origin: Origin = {
      platform: 'discord',
      workspace: scope.workspace,
      channel: scope.channel,
      user: userId,
      message: messageId,
    };
    const link = messageLink(scope.workspace, scope.channel, messageId);
    const { indexed, failed } = await this.#o.core.index(
      images.map((a) => ({ file: a.id, image: remoteImage(a), link })),
      scope,
      messageId,
      origin,
    );
    this.#o.logger.debug({ ...scope, messageId, indexed: indexed.length, failed }, 'indexed a message');
    return { indexed: indexed.length, failed };
  }
}

export class BackfillRunningError extends Error {
  constructor() {
    super('a backfill of this channel is already running');
  }
}

function scopeOf(message: Message | PartialMessage): ChannelScope | undefined {
  if (!message.guildId) return undefined;
  return { platform: 'discord', workspace: message.guildId, channel: message.channelId };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
