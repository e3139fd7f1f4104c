// Cancel that crosses processes: a bot (any process) sets a marker key and publishes on one channel;
// the worker running the job holds an AbortSignal per job that fires on the message, on the marker
// found when the job starts, or on a periodic check of the markers (pub/sub loses messages across
// reconnects). BullMQ's own worker.cancelJob only reaches the worker process that calls it.
import type { Redis } from 'ioredis';
import { CancelledError } from './errors.js';
import { type Logger, silentLogger } from './logger.js';
import { keys } from './queues.js';

/** What is published on the cancel channel. */
interface CancelMessage {
  queue: string;
  jobId: string;
}

/**
 * Marks a job cancelled and tells the workers. The marker outlives the message: a worker that picks
 * the job up later, or missed the message, still sees it.
 */
export async function requestCancel(
  connection: Redis,
  prefix: string,
  job: CancelMessage,
  ttlSeconds = 86_400,
): Promise<void> {
  const message: CancelMessage = { queue: job.queue, jobId: job.jobId };
  await connection
    .multi()
    .set(keys.cancel(prefix, job.queue, job.jobId), String(Date.now()), 'EX', ttlSeconds)
    .publish(keys.cancelChannel(prefix), JSON.stringify(message))
    .exec();
}

export async function isCancelRequested(
  connection: Redis,
  prefix: string,
  job: CancelMessage,
): Promise<boolean> {
  return (await connection.exists(keys.cancel(prefix, job.queue, job.jobId))) === 1;
}

export interface CancelWatcherOptions {
  /** Duplicated for the subscription (a subscribed connection can run nothing else). */
  connection: Redis;
  prefix: string;
  /**
   * How often the markers of running jobs are read, as a backstop for lost messages.
   * @defaultValue 1000
   */
  pollMs?: number;
  logger?: Logger;
}

export const DefaultCancelWatcherOptions = {
  pollMs: 1000,
} as const satisfies Partial<CancelWatcherOptions>;

export interface CancelHandle {
  /** Aborts with a CancelledError as reason when the job is cancelled (or the parent signal aborts). */
  readonly signal: AbortSignal;
  /** Stop watching (call in `finally` when the job ends). */
  dispose(): void;
}

/** One per worker process: `watch()` each job as it starts, dispose the handle when it ends. */
export class CancelWatcher {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #pollMs: number;
  readonly #logger: Logger;
  readonly #watched = new Map<string, Set<AbortController>>();
  #subscriber: Redis | undefined;
  #starting: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: CancelWatcherOptions) {
    const opts = { ...DefaultCancelWatcherOptions, ...options };
    this.#connection = opts.connection;
    this.#prefix = opts.prefix;
    this.#pollMs = opts.pollMs;
    this.#logger = opts.logger ?? silentLogger;
  }

  /** Subscribes; watch() calls it too, so calling it first only moves the cost to start-up. */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('CancelWatcher is closed'));
    this.#starting ??= this.#subscribe();
    return this.#starting;
  }

  /**
   * Starts watching a job. Resolves after the marker has been checked once, so a job cancelled while
   * it waited is aborted before its first step.
   */
  async watch(queue: string, jobId: string, parent?: AbortSignal): Promise<CancelHandle> {
    await this.start();
    const key = keys.cancel(this.#prefix, queue, jobId);
    const controller = new AbortController();
    // Registered before the marker is read: a message published in between is not lost.
    const set = this.#watched.get(key) ?? new Set();
    set.add(controller);
    this.#watched.set(key, set);
    const onParentAbort = () => controller.abort(parent?.reason);
    if (parent?.aborted) onParentAbort();
    else parent?.addEventListener('abort', onParentAbort, { once: true });
    const dispose = () => {
      parent?.removeEventListener('abort', onParentAbort);
      const current = this.#watched.get(key);
      current?.delete(controller);
      if (current?.size === 0) this.#watched.delete(key);
    };
    try {
      if ((await this.#connection.exists(key)) === 1) this.#abort(key);
    } catch (error) {
      // The periodic check reads it again; failing the job for a Redis blip would be worse.
      this.#logger.warn({ err: error, queue, jobId }, 'could not read cancel marker');
    }
    return { signal: controller.signal, dispose };
  }

  /** Jobs watched now (for tests and status pages). */
  get watching(): number {
    return this.#watched.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#starting?.catch(() => {});
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    if (subscriber) await subscriber.quit().catch(() => subscriber.disconnect());
  }

  async #subscribe(): Promise<void> {
    // The offline queue lets the subscription wait for a connection instead of failing at once.
    const subscriber = this.#connection.duplicate({ enableOfflineQueue: true });
    subscriber.on('error', (error) => this.#logger.warn({ err: error }, 'cancel subscriber error'));
    subscriber.on('message', (_channel: string, raw: string) => this.#onMessage(raw));
    this.#subscriber = subscriber;
    await subscriber.subscribe(keys.cancelChannel(this.#prefix));
    this.#timer = setInterval(() => void this.#poll(), this.#pollMs);
    this.#timer.unref();
  }

  #onMessage(raw: string): void {
    try {
      const message = JSON.parse(raw) as Partial<CancelMessage>;
      if (typeof message.queue !== 'string' || typeof message.jobId !== 'string') return;
      this.#abort(keys.cancel(this.#prefix, message.queue, message.jobId));
    } catch {
      this.#logger.warn({ raw }, 'ignored malformed cancel message');
    }
  }

  async #poll(): Promise<void> {
    const watchedKeys = [...this.#watched.keys()];
    if (watchedKeys.length === 0) return;
    try {
      const values = await this.#connection.mget(...watchedKeys);
      values.forEach((value, i) => {
        if (value !== null) this.#abort(watchedKeys[i]!);
      });
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not poll cancel markers');
    }
  }

  #abort(key: string): void {
    for (const controller of this.#watched.get(key) ?? []) {
      if (!controller.signal.aborted) controller.abort(new CancelledError());
    }
  }
}

/** `p`, or the signal's reason as soon as it aborts (the shared work behind `p` carries on). */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
