// Slack's rate limits as the adapter meets them: a per-workspace budget for chat.update (Tier 3 is
// about 50 a minute for the whole workspace, and every running job edits its message), waits on
// Retry-After, and the clock all of it runs on (injectable: tests move minutes without waiting).

/** Time for everything rate-limit shaped: budgets, Retry-After, the history interval. */
export interface SlackClock {
  now(): number;
  /** Resolves after `ms` of this clock's time; rejects with the signal's reason when it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: SlackClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export interface UpdateBudgetOptions {
  /** Edits per minute per workspace, all jobs together; well inside Tier 3's ~50. @defaultValue 30 */
  perMinute?: number;
  /** Edits that may go at once after a quiet spell. @defaultValue 5 */
  burst?: number;
  clock?: SlackClock;
}

export const DefaultUpdateBudgetOptions = {
  perMinute: 30,
  burst: 5,
} as const satisfies Partial<UpdateBudgetOptions>;

/**
 * A token bucket per workspace. Progress edits take a token or are skipped (latest wins: the next
 * one carries newer news). Edits that must land (the result, a failure) wait in line for a token
 * (`take`), first come first served, and progress is skipped while any of them waits: with many
 * jobs ending together they go out at the budget's rate instead of past Slack's limit (49 finals at
 * once drew 429s and some were given up). A 429 empties the bucket until Retry-After has passed.
 * `force` counts an edit that went anyway (a courtesy note), leaving the bucket in debt.
 */
export class UpdateBudget {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #clock: SlackClock;
  readonly #buckets = new Map<string, { tokens: number; at: number; blockedUntil: number }>();
  /** Per workspace: the last must-land edit in line, and how many wait. */
  readonly #lines = new Map<string, { tail: Promise<void>; waiting: number }>();

  constructor(options: UpdateBudgetOptions = {}) {
    const perMinute = options.perMinute ?? DefaultUpdateBudgetOptions.perMinute;
    const burst = options.burst ?? DefaultUpdateBudgetOptions.burst;
    if (!(perMinute > 0) || !(burst >= 1)) throw new RangeError('perMinute must be > 0 and burst >= 1');
    this.#perMs = perMinute / 60_000;
    this.#burst = burst;
    this.#clock = options.clock ?? systemClock;
  }

  #bucket(workspace: string) {
    const now = this.#clock.now();
    let b = this.#buckets.get(workspace);
    if (!b) {
      b = { tokens: this.#burst, at: now, blockedUntil: 0 };
      this.#buckets.set(workspace, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    return { b, now };
  }

  /** Takes a token for a progress edit; false: skip this one (also while a must-land edit waits). */
  tryTake(workspace: string): boolean {
    if ((this.#lines.get(workspace)?.waiting ?? 0) > 0) return false;
    const { b, now } = this.#bucket(workspace);
    if (now < b.blockedUntil || b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Waits in the workspace's line until a token is there (and any Retry-After has passed), then
   * takes it: for edits that must land. Rejects with the signal's reason when it aborts.
   */
  take(workspace: string, signal?: AbortSignal): Promise<void> {
    const line = this.#lines.get(workspace) ?? { tail: Promise.resolve(), waiting: 0 };
    this.#lines.set(workspace, line);
    line.waiting++;
    const mine = line.tail.then(async () => {
      for (;;) {
        const { b, now } = this.#bucket(workspace);
        const wait = Math.max(
          b.blockedUntil - now,
          b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) / this.#perMs),
        );
        if (wait <= 0) {
          b.tokens -= 1;
          return;
        }
        await this.#clock.sleep(wait, signal);
      }
    });
    const done = mine.finally(() => {
      line.waiting--;
      if (line.waiting === 0 && this.#lines.get(workspace) === line) this.#lines.delete(workspace);
    });
    line.tail = done.catch(() => {});
    return done;
  }

  /** Counts an edit that goes whatever the budget says. */
  force(workspace: string): void {
    this.#bucket(workspace).b.tokens -= 1;
  }

  /** Slack answered 429: nothing optional until Retry-After has passed. */
  blocked(workspace: string, retryAfterSeconds: number): void {
    const { b, now } = this.#bucket(workspace);
    b.blockedUntil = Math.max(b.blockedUntil, now + retryAfterSeconds * 1000);
    b.tokens = Math.min(b.tokens, 0);
  }

  /** Tokens left (for tests and logs). */
  available(workspace: string): number {
    return this.#bucket(workspace).b.tokens;
  }
}

/** The Retry-After of a Web API rate-limit rejection (seconds), or undefined for other errors. */
export function retryAfterOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; retryAfter?: unknown } | null;
  if (e?.code !== 'slack_webapi_rate_limited_error') return undefined;
  return typeof e.retryAfter === 'number' && Number.isFinite(e.retryAfter) ? Math.max(1, e.retryAfter) : 60;
}

export interface RetryAfterOptions {
  clock: SlackClock;
  /** Longest single wait accepted; a longer Retry-After rethrows. @defaultValue Infinity */
  maxWaitMs?: number;
  /** @defaultValue 3 */
  attempts?: number;
  signal?: AbortSignal;
  /** Told of each wait (log it, block a budget). */
  onRateLimited?: (retryAfterSeconds: number) => void;
}

/**
 * Runs a Web API call, waiting out Retry-After and trying again on 429 (the WebClient is built with
 * rejectRateLimitedCalls, so nothing else waits behind our back). Other errors pass through.
 */
export async function withRetryAfter<T>(call: () => Promise<T>, options: RetryAfterOptions): Promise<T> {
  const attempts = options.attempts ?? 3;
  const maxWaitMs = options.maxWaitMs ?? Number.POSITIVE_INFINITY;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const retryAfter = retryAfterOf(error);
      if (retryAfter === undefined || attempt >= attempts || retryAfter * 1000 > maxWaitMs) throw error;
      options.onRateLimited?.(retryAfter);
      await options.clock.sleep(retryAfter * 1000, options.signal);
    }
  }
}
