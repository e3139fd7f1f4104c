// Acks first: the chat platforms give an interaction 3 s to be acknowledged (Discord's deferral,
// Slack's envelope ack) and the work after it the 15 minutes (Discord) or 30 minutes (Slack) of its
// token or response_url. Under a burst every ack is a REST call or a socket write whose CPU competes
// with the work (submits, downloads, replies) of the requests acked before it, and that work pushed
// the last acks of 1,000 requests at once towards the 3 s (docs/RELIABILITY.md). So one gate per
// bot process, shared by its adapters: an interaction that will be acked is `arrived()`; work after
// an ack waits in `settled()` while any arrived interaction is not yet `acked()`, for at most
// `maxWaitMs`, so that arrivals that never let up cannot hold work back for longer than that.
// When the last ack lands, the held work goes a few at a time, a turn of the event loop apart: in a
// burst the gate can empty while the gateway still has unread packets, and letting everything go
// at once made the interactions in them wait behind all of it (docs/RELIABILITY.md).

export class AckFirst<K extends object = object> {
  readonly #maxWaitMs: number;
  /** Arrived and not yet acked. Every path of an interaction ends in acked(), so nothing stays. */
  readonly #unacked = new Set<K>();
  /** Work waiting in settled(): called when #unacked empties, its wait runs out, or on close. */
  readonly #waiting = new Set<() => void>();
  readonly #wakePerTurn: number;
  #draining = false;
  #closed = false;

  /**
   * `maxWaitMs`: the longest work waits for other interactions' acks (0: it never waits).
   * `wakePerTurn`: held work let go per turn of the event loop once nothing awaits its ack.
   */
  constructor(maxWaitMs = 1000, wakePerTurn = 4) {
    if (!(maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be >= 0');
    if (!Number.isInteger(wakePerTurn) || wakePerTurn < 1)
      throw new RangeError('wakePerTurn must be an integer >= 1');
    this.#maxWaitMs = maxWaitMs;
    this.#wakePerTurn = wakePerTurn;
  }

  /** `key` arrived and will be acked: work waits for its ack. */
  arrived(key: K): void {
    if (this.#maxWaitMs > 0 && !this.#closed) this.#unacked.add(key);
  }

  /** `key` is acked, or will never be (refused, failed, done): idempotent. */
  acked(key: K): void {
    if (!this.#unacked.delete(key) || this.#unacked.size > 0) return;
    this.#drain();
  }

  /**
   * Lets held work go, oldest first, wakePerTurn at a time with a turn of the event loop between,
   * while no arrived interaction awaits its ack: one that arrives meanwhile stops it until its ack.
   */
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    const step = () => {
      let woken = 0;
      for (const wake of this.#waiting) {
        if (this.#unacked.size > 0 || woken === this.#wakePerTurn) break;
        wake();
        woken++;
      }
      if (this.#waiting.size > 0 && this.#unacked.size === 0) setImmediate(step);
      else this.#draining = false;
    };
    step();
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
