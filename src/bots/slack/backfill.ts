// Backfilling a channel's history into the image index, when the bot joins it or on
// `/imagesearch backfill`: page by page through the rate-limited history gate, the cursor saved in
// the database's channel state after each page, so an interrupted backfill resumes where it stopped
// (a page redone after a crash re-embeds nothing: the worker deduplicates by content per channel).
import type { ChannelScope } from '../../shared/jobs.js';
import { type BackfillProgress, backfillMessage, type MessageBody } from './blocks.js';
import type { SlackContext } from './context.js';
import type { ChannelIndexer } from './indexing.js';
import { slackErrorOf } from './slack-errors.js';

export class Backfills {
  readonly #ctx: SlackContext;
  readonly #indexer: ChannelIndexer;
  readonly #running = new Map<string, Promise<void>>();

  constructor(ctx: SlackContext, indexer: ChannelIndexer) {
    this.#ctx = ctx;
    this.#indexer = indexer;
  }

  /** `/imagesearch backfill`: starts or resumes one, and says what happened. */
  async request(scope: ChannelScope): Promise<string> {
    if (this.#running.has(key(scope))) return "This channel's history is being indexed already.";
    const state = await this.#ctx.services.settings.channel(scope);
    if (state.backfillDone)
      return "This channel's history is indexed already; new images are indexed as they are posted.";
    void this.start(scope);
    return state.backfillCursor
      ? "Resuming the index of this channel's history where it stopped; a message in the channel shows how far it got."
      : "Indexing this channel's history; a message in the channel shows how far it got.";
  }

  /** Starts a backfill unless one runs for the channel; resolves when it ends or stops. */
  start(scope: ChannelScope): Promise<void> {
    const k = key(scope);
    const existing = this.#running.get(k);
    if (existing) return existing;
    const run = this.#run(scope)
      .catch(async (error: unknown) => {
        if (this.#ctx.closing.aborted) return;
        // Slack refused (not in the channel, a scope missing): retrying at every start would not help.
        if (slackErrorOf(error) !== undefined)
          await this.#ctx.ledger.setBackfilling(scope.workspace, scope.channel, false).catch(() => {});
        this.#ctx.logger.warn({ err: error, ...scope }, 'backfill stopped');
      })
      .finally(() => this.#running.delete(k));
    this.#running.set(k, run);
    return run;
  }

  /** Backfills a previous process left unfinished. */
  async resumeAll(): Promise<void> {
    for (const { team, channel } of await this.#ctx.ledger.backfilling()) {
      if (team !== this.#ctx.identity.teamId) continue;
      void this.start({ platform: 'slack', workspace: team, channel });
    }
  }

  /** Resolves once every running backfill has stopped (they stop when ctx.closing aborts). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#running.values()]);
  }

  async #run(scope: ChannelScope): Promise<void> {
    const ctx = this.#ctx;
    const { workspace: team, channel } = scope;
    const signal = ctx.closing;
    const state = await ctx.services.settings.channel(scope);
    if (state.backfillDone) return;
    await ctx.ledger.setBackfilling(team, channel, true);
    let cursor = state.backfillCursor ?? undefined;
    const progress: BackfillProgress = { messages: 0, images: 0, failed: 0, done: false };
    const note = new ProgressNote(ctx, channel, team);
    await note.show(backfillMessage(progress));
    for (;;) {
      signal.throwIfAborted();
      const page = await ctx.history.page(
        team,
        { channel, cursor, limit: ctx.historyPageSize },
        {
          signal,
          onWait: (ms) => note.show(backfillMessage({ ...progress, waitingSeconds: ms / 1000 })),
        },
      );
      for (const message of page.messages ?? []) {
        signal.throwIfAborted();
        progress.messages++;
        const { indexed, failed } = await this.#indexer.indexMessage(team, channel, message);
        progress.images += indexed;
        progress.failed += failed;
      }
      const next = page.response_metadata?.next_cursor;
      const done = page.has_more !== true || !next;
      // Saved only after the page's images are in: a stop before this redoes the page, never skips it.
      await ctx.services.settings.setChannel(
        scope,
        done ? { backfillCursor: null, backfillDone: true } : { backfillCursor: next },
      );
      if (done) break;
      cursor = next;
      await note.show(backfillMessage(progress));
    }
    progress.done = true;
    await ctx.ledger.setBackfilling(team, channel, false);
    await note.show(backfillMessage(progress));
  }
}

const key = (scope: ChannelScope) => `${scope.workspace}:${scope.channel}`;

/** The one channel message a backfill keeps up to date (an edit per page at most: no flood). */
class ProgressNote {
  #ts: string | undefined;
  #last = '';

  constructor(
    readonly ctx: SlackContext,
    readonly channel: string,
    readonly team: string,
  ) {}

  async show(body: MessageBody): Promise<void> {
    if (body.text === this.#last) return;
    try {
      if (this.#ts === undefined) {
        const posted = await this.ctx.client.chat.postMessage({ channel: this.channel, ...body });
        this.#ts = posted.ts;
      } else {
        this.ctx.budget.force(this.team);
        await this.ctx.client.chat.update({ channel: this.channel, ts: this.#ts, ...body });
      }
      this.#last = body.text;
    } catch (error) {
      // The note is a courtesy; the backfill goes on without it.
      this.ctx.logger.debug({ err: error, channel: this.channel }, 'could not show backfill progress');
    }
  }
}
