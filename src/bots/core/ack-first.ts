// Acks first: the chat platforms give an interaction 3 s to be acknowledged (Discord's deferral,
// Slack's envelope ack) and the work after it the 15 minutes (Discord) or 30 minutes (Slack) of its
// token or response_url. Under a burst every ack is a REST call or a socket write whose CPU competes
// with the work (submits, downloads, replies) of the requests acked before it, and that work pushed
// the last acks of 1,000 requests at once towards the 3 s (docs/RELIABILITY.md). So one gate per
// bot process, shared by its adapters: an interaction that will be acked is `arrived()`; work after
// an ack waits in `settled()` while any arrived interaction is not yet `acked()`, for at most
// `maxWaitMs`, so that arrivals that never let up cannot hold work back for longer than that.

export class AckFirst<K extends object = object> {
  readonly #maxWaitMs: number;
  /** Arrived and not yet acked. Every path of an interaction ends in acked(), so nothing stays. */
  readonly #unacked = new Set<K>();
  /** Work waiting in settled(): called when #unacked empties, its wait runs out, or on close. */
  readonly #waiting = new Set<() => void>();
  #closed = false;

  /** `maxWaitMs`: the longest work waits for other interactions' acks (0: it never waits). */
  constructor(maxWaitMs = 1000) {
    if (!(maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be >= 0');
    this.#maxWaitMs = maxWaitMs;
  }

  /** `key` arrived and will be acked: work waits for its ack. */
  arrived(key: K): void {
    if (this.#maxWaitMs > 0 && !this.#closed) this.#unacked.add(key);
  }

  /** `key` is acked, or will never be (refused, failed, done): idempotent. */
  acked(key: K): void {
    if (!this.#unacked.delete(key) || this.#unacked.size > 0) return;
    for (const wake of [...this.#waiting]) wake();
  }

  /** Resolves when no arrived interaction waits for its ack, or after maxWaitMs, or on close. */
  settled(): Promise<void> {
    if (this.#unacked.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, this.#maxWaitMs);
      timer.unref();
      this.#waiting.add(wake);
    });
  }

  /** Interactions that arrived and are not acked yet, and work waiting for them. */
  get unacked(): number {
    return this.#unacked.size;
  }
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Stops gating (the process is closing): waiting work goes on, nothing waits again. */
  close(): void {
    this.#closed = true;
    this.#unacked.clear();
    for (const wake of [...this.#waiting]) wake();
  }
}
