// Slots for the work interactions do after their ack. Every interaction is deferred as soon as it
// arrives (Discord allows 3 s); what comes after (submits, downloads, replies) runs in one of a
// bounded number of slots. Without them, a burst's later interactions were deferred only after the
// CPU had gone through the work of all the earlier ones: 1,000 requests at once left 714 of 750
// Discord commands unacked (docs/RELIABILITY.md). p-limit keeps the queue; a slot is held from
// admit() until release(), which the router calls when the interaction's handler returns, or until
// its lease runs out: a handler that waits (a what-is waiting for its labels from a worker) gives
// its slot up then, so waiting never holds the others back (with 16 slots and no worker up, 16
// what-is would otherwise have stopped every other interaction). Before a slot, work waits for the
// process's other acks (core/ack-first.ts): admit() and release() tell the gate this one is acked.
import pLimit, { type LimitFunction } from 'p-limit';
import { AckFirst } from '../core/ack-first.js';

export class WorkSlots<K extends object> {
  readonly #limit: LimitFunction;
  readonly #leaseMs: number;
  readonly #acks: AckFirst;
  readonly #held = new WeakMap<K, () => void>();
  #closed = false;

  /**
   * `leaseMs`: the longest a slot is held; the CPU work of a request is tens of milliseconds.
   * `acks`: the process's gate (a private one that never waits when none is given).
   */
  constructor(concurrency: number, leaseMs = 1000, acks: AckFirst = new AckFirst(0)) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError('work concurrency must be an integer >= 1');
    if (!(leaseMs > 0)) throw new RangeError('leaseMs must be > 0');
    this.#limit = pLimit(concurrency);
    this.#leaseMs = leaseMs;
    this.#acks = acks;
  }

  /** `key` is acked; resolves once it holds a slot (at once if it holds one already). */
  admit(key: K): Promise<void> {
    this.#acks.acked(key);
    if (this.#held.has(key)) return Promise.resolve();
    return this.#acks.settled().then(() => (this.#closed ? new Promise<void>(() => {}) : this.#slot(key)));
  }

  /** Frees the slot `key` holds, if any, for the next in line. */
  release(key: K): void {
    this.#acks.acked(key);
    const release = this.#held.get(key);
    this.#held.delete(key);
    release?.();
  }

  /** Interactions working now, and waiting for a slot. */
  get active(): number {
    return this.#limit.activeCount;
  }
  get waiting(): number {
    return this.#limit.pendingCount;
  }

  /** Drops the waiting ones (the adapter is closing): they are never admitted. */
  clear(): void {
    this.#closed = true;
    this.#limit.clearQueue();
  }

  #slot(key: K): Promise<void> {
    return new Promise<void>((admitted) => {
      void this.#limit(
        () =>
          new Promise<void>((release) => {
            const lease = setTimeout(() => {
              if (this.#held.get(key) === done) this.#held.delete(key);
              release();
            }, this.#leaseMs);
            lease.unref();
            const done = () => {
              clearTimeout(lease);
              release();
            };
            this.#held.set(key, done);
            admitted();
          }),
      );
    });
  }
}
