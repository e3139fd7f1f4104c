// Groups requests that arrive within a few milliseconds into one call, so that N classify or
// embed-image jobs taken by a worker at once share one session run instead of N. Generic: it knows
// nothing of images; the caller's `run` does one batch and answers each item separately.

export interface MicroBatcherOptions<I, O> {
  /**
   * Runs one batch and returns one entry per item, in order: the item's value, or an Error that fails
   * that item alone (a bad image must not fail its neighbours). Throwing fails every item of the batch.
   */
  run: (items: readonly I[]) => Promise<readonly (O | Error)[]>;
  /** Most items per batch; a full batch runs at once. 1 turns batching off. @defaultValue 16 */
  maxBatch?: number;
  /**
   * How long the first item of a batch waits for company before the batch runs. Items that arrive
   * while every slot is busy wait for a slot anyway and join the next batch. @defaultValue 5
   */
  maxWaitMs?: number;
  /** Batches running at once. @defaultValue 1 */
  concurrency?: number;
}

export const DefaultMicroBatcherOptions = {
  maxBatch: 16,
  maxWaitMs: 5,
  concurrency: 1,
} as const satisfies Partial<MicroBatcherOptions<unknown, unknown>>;

export interface MicroBatcherStats {
  /** Batches run. */
  batches: number;
  /** Items that went through a batch. */
  items: number;
  /** Size of the largest batch so far. */
  largest: number;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class MicroBatcherClosedError extends Error {
  constructor() {
    super('the batcher is closed');
    this.name = 'MicroBatcherClosedError';
  }
}

export class MicroBatcher<I, O> {
  readonly #run: MicroBatcherOptions<I, O>['run'];
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly concurrency: number;
  readonly stats: MicroBatcherStats = { batches: 0, items: 0, largest: 0 };
  #pending: Pending<I, O>[] = [];
  #timer: NodeJS.Timeout | undefined;
  // Set when the oldest pending item has waited maxWaitMs: the next free slot takes it at once.
  #due = false;
  #running = 0;
  #idle: (() => void)[] = [];
  #closed = false;

  constructor(options: MicroBatcherOptions<I, O>) {
    const o = { ...DefaultMicroBatcherOptions, ...options };
    if (!Number.isInteger(o.maxBatch) || o.maxBatch < 1)
      throw new RangeError('maxBatch must be an integer >= 1');
    if (!(o.maxWaitMs >= 0) || !Number.isFinite(o.maxWaitMs)) throw new RangeError('maxWaitMs must be >= 0');
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1)
      throw new RangeError('concurrency must be an integer >= 1');
    this.#run = o.run;
    this.maxBatch = o.maxBatch;
    this.maxWaitMs = o.maxWaitMs;
    this.concurrency = o.concurrency;
  }

  /** Items waiting for a batch. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Queues one item; resolves with its value once its batch has run. An item whose signal aborts
   * while it still waits leaves the queue and rejects with the signal's reason; once its batch has
   * started it runs to the end (a session run cannot be interrupted).
   */
  add(item: I, signal?: AbortSignal): Promise<O> {
    if (this.#closed) return Promise.reject(new MicroBatcherClosedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<O>((resolve, reject) => {
      const entry: Pending<I, O> = { item, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        entry.onAbort = () => {
          const i = this.#pending.indexOf(entry);
          if (i < 0) return;
          this.#pending.splice(i, 1);
          if (this.#pending.length === 0) this.#clearTimer();
          reject(signal.reason);
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.#pending.push(entry);
      if (this.#pending.length >= this.maxBatch) this.#drain();
      else this.#timer ??= setTimeout(() => this.#onTimer(), this.maxWaitMs);
    });
  }

  /** Stops taking items, runs the ones already queued, and resolves when every batch has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#due = true;
    this.#drain();
    if (this.#running === 0 && this.#pending.length === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #onTimer(): void {
    this.#timer = undefined;
    this.#due = true;
    this.#drain();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#due = false;
  }

  #drain(): void {
    while (
      this.#running < this.concurrency &&
      this.#pending.length > 0 &&
      (this.#due || this.#pending.length >= this.maxBatch)
    ) {
      const batch = this.#pending.splice(0, this.maxBatch);
      if (this.#pending.length === 0) this.#clearTimer();
      void this.#runBatch(batch);
    }
    if (this.#running === 0 && this.#pending.length === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  async #runBatch(batch: Pending<I, O>[]): Promise<void> {
    this.#running++;
    for (const p of batch) if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    this.stats.batches++;
    this.stats.items += batch.length;
    this.stats.largest = Math.max(this.stats.largest, batch.length);
    try {
      const results = await this.#run(batch.map((p) => p.item));
      if (results.length !== batch.length) {
        throw new Error(`batch run returned ${results.length} results for ${batch.length} items`);
      }
      batch.forEach((p, i) => {
        const r = results[i] as O | Error;
        if (r instanceof Error) p.reject(r);
        else p.resolve(r);
      });
    } catch (error) {
      for (const p of batch) p.reject(error);
    } finally {
      this.#running--;
      // Items that queued up while this batch ran have waited long enough.
      if (this.#pending.length > 0 && this.#timer === undefined) this.#due = true;
      this.#drain();
    }
  }
}
