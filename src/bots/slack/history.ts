// conversations.history behind one gate per workspace: Slack allows some apps one call a minute, and
// a backfill, a /whatis lookup and a second channel's backfill all draw on that one allowance. Calls
// are spaced by the configured interval and a 429 pushes the next slot to its Retry-After; nobody
// retries early, so the gate never digs itself deeper into the limit.
import type { webApi } from '@slack/bolt';
import type { Logger } from '../../shared/logger.js';
import { retryAfterOf, type SlackClock } from './rate-limits.js';

type WebClient = webApi.WebClient;
export type HistoryPage = webApi.ConversationsHistoryResponse;

export interface HistoryArgs {
  channel: string;
  cursor?: string | undefined;
  latest?: string | undefined;
  inclusive?: boolean;
  limit: number;
}

export interface HistoryCallOptions {
  /** Longest wait for a slot this caller accepts; past it `HistoryBusyError`. @defaultValue Infinity */
  maxWaitMs?: number;
  signal?: AbortSignal;
  /** Told before each wait (backfill progress shows it). */
  onWait?: (ms: number) => void | Promise<void>;
}

/** The history allowance is spent for longer than the caller would wait. */
export class HistoryBusyError extends Error {
  constructor(readonly waitMs: number) {
    super(`conversations.history is rate limited for ${Math.ceil(waitMs / 1000)} s`);
    this.name = 'HistoryBusyError';
  }
}

export interface HistoryReaderOptions {
  client: WebClient;
  clock: SlackClock;
  /** Least time between two calls in one workspace. @defaultValue 60000 */
  intervalMs?: number;
  logger: Logger;
}

export class HistoryReader {
  readonly #client: WebClient;
  readonly #clock: SlackClock;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  /** When each workspace may call next, and the tail of its queue of callers. */
  readonly #next = new Map<string, number>();
  readonly #tail = new Map<string, Promise<unknown>>();

  constructor(options: HistoryReaderOptions) {
    this.#client = options.client;
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#logger = options.logger;
  }

  /** How long until the workspace may call again (0: now). */
  waitFor(team: string): number {
    return Math.max(0, (this.#next.get(team) ?? 0) - this.#clock.now());
  }

  /** One page, when the workspace's allowance permits; callers queue in order. */
  page(team: string, args: HistoryArgs, options: HistoryCallOptions = {}): Promise<HistoryPage> {
    const run = async (): Promise<HistoryPage> => {
      for (;;) {
        options.signal?.throwIfAborted();
        const wait = this.waitFor(team);
        if (wait > (options.maxWaitMs ?? Number.POSITIVE_INFINITY)) throw new HistoryBusyError(wait);
        if (wait > 0) {
          await options.onWait?.(wait);
          await this.#clock.sleep(wait, options.signal);
        }
        this.#next.set(team, this.#clock.now() + this.#intervalMs);
        try {
          return await this.#client.conversations.history({
            channel: args.channel,
            limit: args.limit,
            ...(args.cursor ? { cursor: args.cursor } : {}),
            ...(args.latest === undefined ? {} : { latest: args.latest }),
            ...(args.inclusive ? { inclusive: true } : {}),
          });
        } catch (error) {
          const retryAfter = retryAfterOf(error);
          if (retryAfter === undefined) throw error;
          this.#logger.info({ team, retryAfter }, 'conversations.history is rate limited; waiting');
          this.#next.set(team, this.#clock.now() + retryAfter * 1000);
        }
      }
    };
    // A caller with a deadline does not queue behind a backfill that is waiting out the limit.
    if (options.maxWaitMs !== undefined && (this.#tail.has(team) || this.waitFor(team) > options.maxWaitMs)) {
      return Promise.reject(new HistoryBusyError(Math.max(this.waitFor(team), 1)));
    }
    const previous = this.#tail.get(team) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(run);
    const tail = mine.catch(() => {});
    this.#tail.set(team, tail);
    void tail.then(() => {
      if (this.#tail.get(team) === tail) this.#tail.delete(team);
    });
    return mine;
  }
}
