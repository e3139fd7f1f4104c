// Channel image search, fed by events: images shared in channels the bot is in are embedded and
// indexed (message events with files, and file_shared), and the index follows deletes and edits
// (message_deleted, file_deleted, message_changed dropping a file). The bot's own uploads are left
// out: previews come and go, and results are the bot's, not the channel's.
import type { App } from '@slack/bolt';
import type { ChannelScope } from '../../shared/jobs.js';
import type { Backfills } from './backfill.js';
import type { SlackContext } from './context.js';
import type { LedgerMessage } from './file-ledger.js';
import { filesOf, isImageFile, ledgerFile, type SlackFileObject } from './files.js';
import { permalinkFor } from './permalinks.js';

/** A message as events and history deliver it: what indexing reads. */
export interface IndexableMessage {
  ts?: string | undefined;
  thread_ts?: string | undefined;
  user?: string | undefined;
  bot_id?: string | undefined;
  files?: unknown;
}

const scopeOf = (team: string, channel: string): ChannelScope => ({
  platform: 'slack',
  workspace: team,
  channel,
});

/** How long a channel's indexing switch is trusted before asking the database again. */
const ENABLED_TTL_MS = 60_000;

export class ChannelIndexer {
  readonly #ctx: SlackContext;
  readonly #enabled = new Map<string, { on: boolean; at: number }>();

  constructor(ctx: SlackContext) {
    this.#ctx = ctx;
  }

  /** Slack channels are indexed unless an admin turned it off (channel state `indexing: false`). */
  async enabled(scope: ChannelScope): Promise<boolean> {
    const key = `${scope.workspace}:${scope.channel}`;
    const cached = this.#enabled.get(key);
    if (cached && Date.now() - cached.at < ENABLED_TTL_MS) return cached.on;
    const state = await this.#ctx.services.settings.channel(scope);
    const on = !state.known || state.indexing;
    this.#enabled.set(key, { on, at: Date.now() });
    return on;
  }

  isOwn(message: IndexableMessage): boolean {
    const { identity } = this.#ctx;
    return (
      message.user === identity.botUserId ||
      (identity.botId !== undefined && message.bot_id === identity.botId)
    );
  }

  /** Indexes a message's images; returns how many were embedded and how many could not be read. */
  async indexMessage(
    team: string,
    channel: string,
    message: IndexableMessage,
  ): Promise<{ indexed: number; failed: number }> {
    const ts = message.ts;
    const images = filesOf(message).filter(isImageFile);
    if (ts === undefined || images.length === 0 || this.isOwn(message)) return { indexed: 0, failed: 0 };
    const threadTs =
      message.thread_ts !== undefined && message.thread_ts !== ts ? message.thread_ts : undefined;
    const record: LedgerMessage = {
      channel,
      ts,
      threadTs,
      user: message.user,
      files: images.map(ledgerFile),
    };
    await this.#ctx.ledger.record(team, record);
    const scope = scopeOf(team, channel);
    if (!(await this.enabled(scope))) return { indexed: 0, failed: 0 };
    const link = permalinkFor(this.#ctx.identity.url, { channel, ts, ...(threadTs ? { threadTs } : {}) });
    const ready = await Promise.all(images.map((f) => this.#complete(f)));
    const { indexed, failed } = await this.#ctx.core.index(
      ready.map((file) => ({ file: file.id, image: this.#ctx.files.remoteImage(file), link })),
      scope,
      ts,
      { platform: 'slack', workspace: team, channel, user: message.user ?? 'unknown', message: ts },
    );
    return { indexed: indexed.length, failed };
  }

  /** Payload files can lack the link (file_shared carries only an id): files.info fills them in. */
  async #complete(file: SlackFileObject & { id: string }): Promise<SlackFileObject & { id: string }> {
    if ((file.url_private_download ?? file.url_private) !== undefined && file.size !== undefined) return file;
    return this.#ctx.files.info(file.id);
  }

  async messageDeleted(team: string, channel: string, ts: string): Promise<void> {
    await this.#ctx.ledger.forgetMessage(team, channel, ts);
    await this.#ctx.core.unindex(scopeOf(team, channel), ts);
  }

  async fileRemoved(team: string, channel: string, ts: string, file: string): Promise<void> {
    await this.#ctx.ledger.forgetFile(team, file, { channel, ts });
    await this.#ctx.core.unindex(scopeOf(team, channel), ts, file);
  }

  /** file_deleted names only the file: the ledger knows which messages held it. */
  async fileDeleted(team: string, file: string): Promise<void> {
    const places = await this.#ctx.ledger.placesOf(team, file);
    for (const place of places) await this.#ctx.core.unindex(scopeOf(team, place.channel), place.ts, file);
    await this.#ctx.ledger.forgetFile(team, file);
  }
}

type MessageEvent = IndexableMessage & {
  subtype?: string;
  channel?: string;
  channel_type?: string;
  deleted_ts?: string;
  message?: IndexableMessage;
  previous_message?: IndexableMessage;
};

/** The Events API subscriptions the adapter listens to (slack-manifest.yml's bot_events). */
export const BOT_EVENTS = [
  'app_home_opened',
  'file_deleted',
  'file_shared',
  'member_joined_channel',
  'message.channels',
  'message.groups',
] as const;

/** Channels and private channels; DMs are conversations with the bot, not a shared library. */
const INDEXED_CHANNEL_TYPES = new Set(['channel', 'group']);

export function registerIndexing(
  app: App,
  ctx: SlackContext,
  indexer: ChannelIndexer,
  backfills: Backfills,
): void {
  app.event('message', async ({ event, body }) => {
    const e = event as unknown as MessageEvent;
    const team = (body as { team_id?: string }).team_id ?? ctx.identity.teamId;
    const channel = e.channel;
    if (channel === undefined || !INDEXED_CHANNEL_TYPES.has(e.channel_type ?? 'channel')) return;
    switch (e.subtype) {
      case undefined:
      case 'file_share':
      case 'thread_broadcast':
        if (filesOf(e).length > 0)
          ctx.background('index a message', () => indexer.indexMessage(team, channel, e));
        return;
      case 'message_deleted': {
        const ts = e.deleted_ts ?? e.previous_message?.ts;
        if (ts !== undefined && filesOf(e.previous_message).length > 0)
          ctx.background('unindex a message', () => indexer.messageDeleted(team, channel, ts));
        return;
      }
      case 'message_changed': {
        const ts = e.message?.ts ?? e.previous_message?.ts;
        const now = new Set(
          filesOf(e.message)
            .filter((f) => f.mode !== 'tombstone')
            .map((f) => f.id),
        );
        const gone = filesOf(e.previous_message).filter((f) => f.mode !== 'tombstone' && !now.has(f.id));
        if (ts === undefined || gone.length === 0) return;
        ctx.background('unindex edited files', async () => {
          for (const f of gone) await indexer.fileRemoved(team, channel, ts, f.id);
        });
        return;
      }
    }
  });

  app.event('file_shared', async ({ event, body }) => {
    const team = (body as { team_id?: string }).team_id ?? ctx.identity.teamId;
    ctx.files.shared(event.file_id);
    if (event.user_id === ctx.identity.botUserId) return;
    const channel = event.channel_id;
    ctx.background('index a shared file', async () => {
      const file = await ctx.files.info(event.file_id);
      const share = file.shares?.public?.[channel]?.[0] ?? file.shares?.private?.[channel]?.[0];
      if (share?.ts === undefined || !isImageFile(file)) return;
      // The message event usually came first; the ledger then knows this file in that message.
      const known = await ctx.ledger.message(team, channel, share.ts);
      if (known?.files.some((f) => f.id === file.id)) return;
      await indexer.indexMessage(team, channel, { ts: share.ts, user: event.user_id, files: [file] });
    });
  });

  app.event('file_deleted', async ({ event, body }) => {
    const team = (body as { team_id?: string }).team_id ?? ctx.identity.teamId;
    ctx.background('unindex a deleted file', () => indexer.fileDeleted(team, event.file_id));
  });

  app.event('member_joined_channel', async ({ event, body }) => {
    if (event.user !== ctx.identity.botUserId) return;
    const team = (body as { team_id?: string }).team_id ?? ctx.identity.teamId;
    ctx.background('start a backfill', () => backfills.start(scopeOf(team, event.channel)));
  });
}
