// Admission by Redis memory: before a job is enqueued, the bot compares Redis's used_memory with its
// maxmemory and refuses new jobs above a high-water mark ("busy, try again in a minute"). Redis runs
// noeviction (BullMQ needs it), so at maxmemory it refuses writes, and then queues, progress and
// results stop for everyone; refusing new work a little earlier keeps room for the running jobs to
// finish and for their results to be written. Without a maxmemory (0) there is nothing to compare
// against and the guard lets everything through.
import type { Redis } from 'ioredis';
import { ReasonedError } from '../../shared/errors.js';
import { type Logger, silentLogger } from '../../shared/logger.js';

export interface MemoryGuardOptions {
  /** A producer connection; the caller owns it. */
  connection: Redis;
  /** Share of maxmemory above which new jobs are refused (config.redisMemoryHighWater). @defaultValue 0.9 */
  highWater?: number;
  /** How long one INFO reading serves (a burst of submits costs one round trip). @defaultValue 1000 */
  cacheMs?: number;
  /** What a refusal tells the person to wait, in seconds. @defaultValue 60 */
  retryAfterSeconds?: number;
  logger?: Logger;
}

export const DefaultMemoryGuardOptions = {
  highWater: 0.9,
  cacheMs: 1000,
  retryAfterSeconds: 60,
} as const satisfies Partial<MemoryGuardOptions>;

export interface MemoryReading {
  usedBytes: number;
  /** 0: no maxmemory set. */
  maxBytes: number;
}

/** Redis is too full to take new jobs; code `unavailable` (retried later), reason `busy`. */
export class BusyError extends ReasonedError<'busy', 'unavailable'> {
  constructor(reading: MemoryReading, highWater: number, retryAfterSeconds: number) {
    const percent = Math.round((100 * reading.usedBytes) / reading.maxBytes);
    super(
      'unavailable',
      'busy',
      `Redis uses ${percent}% of its maxmemory (high-water mark ${Math.round(highWater * 100)}%): new jobs wait`,
      { details: { usedBytes: reading.usedBytes, maxBytes: reading.maxBytes, retryAfterSeconds } },
    );
    this.name = 'BusyError';
  }
}

/** Parses `used_memory` and `maxmemory` out of INFO memory; undefined when they are missing. */
export function parseMemoryInfo(info: string): MemoryReading | undefined {
  const used = /^used_memory:(\d+)\r?$/m.exec(info)?.[1];
  const max = /^maxmemory:(\d+)\r?$/m.exec(info)?.[1];
  if (used === undefined || max === undefined) return undefined;
  return { usedBytes: Number(used), maxBytes: Number(max) };
}

export class MemoryGuard {
  readonly highWater: number;
  readonly #connection: Redis;
  readonly #cacheMs: number;
  readonly #retryAfterSeconds: number;
  readonly #logger: Logger;
  #cached: { at: number; reading: Promise<MemoryReading | undefined> } | undefined;
  #warnedUnlimited = false;

  constructor(options: MemoryGuardOptions) {
    const o = { ...DefaultMemoryGuardOptions, ...options };
    if (!(o.highWater > 0 && o.highWater < 1)) throw new RangeError('highWater must be between 0 and 1');
    if (!(o.cacheMs >= 0)) throw new RangeError('cacheMs must be >= 0');
    this.highWater = o.highWater;
    this.#connection = o.connection;
    this.#cacheMs = o.cacheMs;
    this.#retryAfterSeconds = o.retryAfterSeconds;
    this.#logger = o.logger ?? silentLogger;
  }

  /** Redis's memory now (or at most cacheMs ago); undefined when it cannot be read. */
  reading(): Promise<MemoryReading | undefined> {
    const now = performance.now();
    if (this.#cached && now - this.#cached.at < this.#cacheMs) return this.#cached.reading;
    const reading = this.#connection
      .info('memory')
      .then(parseMemoryInfo)
      // Redis unreachable: the enqueue that follows fails with its own `unavailable`; not the guard's call.
      .catch(() => undefined);
    this.#cached = { at: now, reading };
    return reading;
  }

  /** Throws BusyError above the high-water mark; resolves otherwise (also when memory cannot be read). */
  async check(): Promise<void> {
    const reading = await this.reading();
    if (reading === undefined) return;
    if (reading.maxBytes === 0) {
      if (!this.#warnedUnlimited) {
        this.#warnedUnlimited = true;
        this.#logger.warn(
          'Redis has no maxmemory: the memory guard cannot refuse jobs before Redis runs out; set maxmemory',
        );
      }
      return;
    }
    if (reading.usedBytes > this.highWater * reading.maxBytes) {
      const error = new BusyError(reading, this.highWater, this.#retryAfterSeconds);
      this.#logger.warn({ usedBytes: reading.usedBytes, maxBytes: reading.maxBytes }, error.message);
      throw error;
    }
  }
}
