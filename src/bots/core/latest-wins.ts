// A throttle for chat edits: the latest value wins, at most one delivery per interval, deliveries
// never overlap. The run loop and follow() use it; platforms rate-limit message edits.
import { type Logger, silentLogger } from '../../shared/logger.js';

/**
 * Delivers the latest pushed value at most once per interval: a value pushed while waiting replaces
 * the one not yet delivered. Deliveries never overlap; a slow one delays the next.
 */
export class LatestWins<T> {
  readonly #intervalMs: number;
  readonly #deliver: (value: T) => void | Promise<void>;
  readonly #logger: Logger;
  readonly #now: () => number;
  #pending: { value: T } | undefined;
  #last = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #delivering = false;
  #idle: (() => void)[] = [];

  constructor(
    intervalMs: number,
    deliver: (value: T) => void | Promise<void>,
    logger: Logger = silentLogger,
    now: () => number = Date.now,
  ) {
    this.#intervalMs = intervalMs;
    this.#deliver = deliver;
    this.#logger = logger;
    this.#now = now;
  }

  push(value: T): void {
    this.#pending = { value };
    this.#schedule();
  }

  /** Resolves once every value pushed so far has been delivered (or dropped for a newer one). */
  flush(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Drops the pending value. */
  cancel(): void {
    this.#pending = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#notifyIdle();
  }

  #isIdle(): boolean {
    return this.#pending === undefined && !this.#delivering && this.#timer === undefined;
  }

  #schedule(): void {
    if (this.#delivering || this.#timer || !this.#pending) return;
    const wait = this.#last + this.#intervalMs - this.#now();
    if (wait <= 0) {
      void this.#deliverPending();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#deliverPending();
    }, wait);
  }

  async #deliverPending(): Promise<void> {
    const pending = this.#pending;
    if (!pending) return this.#notifyIdle();
    this.#pending = undefined;
    this.#delivering = true;
    this.#last = this.#now();
    try {
      await this.#deliver(pending.value);
    } catch (error) {
      this.#logger.warn({ err: error }, 'update callback failed');
    } finally {
      this.#delivering = false;
    }
    this.#schedule();
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const resolve of waiters) resolve();
  }
}
