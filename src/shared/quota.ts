// Per-user limits checked before a job is enqueued: jobs in flight (waiting or running) and jobs
// submitted per rolling window, counted per budget: a generation is minutes of compute, so imagine
// has its own (small) budget, and the light jobs (classify, search, indexing, deletes) share a larger
// one that never spends it. The decision is one Lua script, so two bot processes submitting for the
// same user at once cannot both take the last slot.
import type { Redis } from 'ioredis';
import type { QuotaReason } from './errors.js';
import { keys } from './queues.js';

export const quotaBudgets = ['imagine', 'light'] as const;
export type QuotaBudget = (typeof quotaBudgets)[number];

/** The budget a queue spends: imagine its own, every other queue the light one. */
export function budgetOf(queue: string): QuotaBudget {
  return queue === 'imagine' ? 'imagine' : 'light';
}

export interface QuotaLimits {
  /** Jobs in flight per user; 0 disables the check. */
  concurrent: number;
  /** Jobs per window per user; 0 disables the check. */
  perWindow: number;
}

export interface QuotaOptions {
  connection: Redis;
  prefix: string;
  /** Limits per budget, each counted on its own (config.quota); a budget left out is unlimited. */
  budgets: Partial<Record<QuotaBudget, QuotaLimits>>;
  /** @defaultValue 3600 */
  windowSeconds?: number;
  /**
   * Longest a job can hold an in-flight slot, a backstop against leases nobody clears.
   * @defaultValue 21600 (6 h)
   */
  leaseSeconds?: number;
  /**
   * A slot whose job hash does not exist yet is kept this long: the lease is taken before the job is
   * added, and another process pruning in between must not free it.
   * @defaultValue 60
   */
  graceSeconds?: number;
}

export const DefaultQuotaOptions = {
  windowSeconds: 3600,
  leaseSeconds: 6 * 3600,
  graceSeconds: 60,
} as const satisfies Partial<QuotaOptions>;

export type QuotaDecision =
  | { allowed: true }
  | {
      allowed: false;
      budget: QuotaBudget;
      reason: QuotaReason;
      limit: number;
      retryAfterSeconds?: number;
    };

// KEYS: in-flight zset (member -> lease expiry ms), window zset (member -> submit time ms).
// ARGV: windowMs, maxConcurrent, maxPerWindow, member, leaseMs.
// Time comes from Redis so that bot machines with skewed clocks agree.
const acquireScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local windowMs = tonumber(ARGV[1])
local maxConcurrent = tonumber(ARGV[2])
local maxPerWindow = tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - windowMs)
if maxConcurrent > 0 and redis.call('ZCARD', KEYS[1]) >= maxConcurrent then
  return {1, -1}
end
if maxPerWindow > 0 and redis.call('ZCARD', KEYS[2]) >= maxPerWindow then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(oldest[2]) + windowMs - now}
end
if maxConcurrent > 0 then
  redis.call('ZADD', KEYS[1], now + leaseMs, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], leaseMs)
end
if maxPerWindow > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], windowMs)
end
return {0, 0}
`;

/** The job a slot is for: BullMQ queue name and job id. */
export interface QuotaJob {
  queue: string;
  jobId: string;
}

/**
 * In-flight slots are leases named `${queue}:${jobId}`. They need no explicit release when a job
 * ends: before each decision, leases whose job has finished, vanished or was cancelled are pruned by
 * looking at the job's BullMQ hash and cancel marker, so a bot that crashed mid-follow never leaks a
 * user's slot. Pruning is safe outside the script because "finished" never goes back.
 */
export class QuotaLimiter {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #budgets: Record<QuotaBudget, QuotaLimits>;
  readonly #opts: Required<Omit<QuotaOptions, 'connection' | 'prefix' | 'budgets'>>;

  constructor(options: QuotaOptions) {
    const opts = { ...DefaultQuotaOptions, ...options };
    const check = (name: string, v: number) => {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be >= 0`);
    };
    for (const name of ['windowSeconds', 'leaseSeconds', 'graceSeconds'] as const) check(name, opts[name]);
    const budgets = {} as Record<QuotaBudget, QuotaLimits>;
    for (const budget of quotaBudgets) {
      const limits = options.budgets[budget] ?? { concurrent: 0, perWindow: 0 };
      check(`${budget}.concurrent`, limits.concurrent);
      check(`${budget}.perWindow`, limits.perWindow);
      budgets[budget] = { concurrent: limits.concurrent, perWindow: limits.perWindow };
    }
    this.#connection = opts.connection;
    this.#prefix = opts.prefix;
    this.#budgets = budgets;
    this.#opts = {
      windowSeconds: opts.windowSeconds,
      leaseSeconds: opts.leaseSeconds,
      graceSeconds: opts.graceSeconds,
    };
  }

  /** Whether any budget has a limit. */
  get enabled(): boolean {
    return quotaBudgets.some((b) => this.#budgets[b].concurrent > 0 || this.#budgets[b].perWindow > 0);
  }

  /** The limits of a budget (both 0 when it has none). */
  limits(budget: QuotaBudget): QuotaLimits {
    return { ...this.#budgets[budget] };
  }

  /**
   * Takes a slot for the job in its queue's budget if the user is within both of its limits. `user`
   * should be platform-qualified (`discord:1234`): ids collide across platforms. Call it before
   * adding the job.
   */
  async acquire(user: string, job: QuotaJob): Promise<QuotaDecision> {
    const budget = budgetOf(job.queue);
    const limits = this.#budgets[budget];
    if (limits.concurrent <= 0 && limits.perWindow <= 0) return { allowed: true };
    await this.#prune(user, budget);
    const [status, retryMs] = (await this.#connection.eval(
      acquireScript,
      2,
      keys.quotaActive(this.#prefix, budget, user),
      keys.quotaWindow(this.#prefix, budget, user),
      Math.round(this.#opts.windowSeconds * 1000),
      limits.concurrent,
      limits.perWindow,
      member(job),
      Math.round(this.#opts.leaseSeconds * 1000),
    )) as [number, number];
    if (status === 0) return { allowed: true };
    if (status === 1) return { allowed: false, budget, reason: 'concurrent', limit: limits.concurrent };
    return {
      allowed: false,
      budget,
      reason: 'hourly',
      limit: limits.perWindow,
      retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)),
    };
  }

  /**
   * Gives a slot back early. `refund` also forgets the submission in the window count: for a job
   * that was never enqueued.
   */
  async release(user: string, job: QuotaJob, { refund = false }: { refund?: boolean } = {}): Promise<void> {
    const budget = budgetOf(job.queue);
    const multi = this.#connection.multi().zrem(keys.quotaActive(this.#prefix, budget, user), member(job));
    if (refund) multi.zrem(keys.quotaWindow(this.#prefix, budget, user), member(job));
    await multi.exec();
  }

  /** Current usage of one budget, for status messages. */
  async usage(user: string, budget: QuotaBudget): Promise<{ inFlight: number; inWindow: number }> {
    await this.#prune(user, budget);
    const [sec, micro] = await this.#connection.time();
    const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    const [inFlight, inWindow] = await Promise.all([
      this.#connection.zcount(keys.quotaActive(this.#prefix, budget, user), now, '+inf'),
      this.#connection.zcount(
        keys.quotaWindow(this.#prefix, budget, user),
        now - this.#opts.windowSeconds * 1000,
        '+inf',
      ),
    ]);
    return { inFlight, inWindow };
  }

  async #prune(user: string, budget: QuotaBudget): Promise<void> {
    if (this.#budgets[budget].concurrent <= 0) return;
    const activeKey = keys.quotaActive(this.#prefix, budget, user);
    const leases = await this.#connection.zrange(activeKey, 0, '-1', 'WITHSCORES');
    if (leases.length === 0) return;
    const [sec, micro] = await this.#connection.time();
    const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    const pipeline = this.#connection.pipeline();
    const members: { name: string; reservedAt: number }[] = [];
    for (let i = 0; i + 1 < leases.length; i += 2) {
      const name = leases[i]!;
      const split = name.indexOf(':');
      const queue = name.slice(0, split);
      const jobId = name.slice(split + 1);
      const jobKey = keys.bullJob(this.#prefix, queue, jobId);
      members.push({ name, reservedAt: Number(leases[i + 1]) - this.#opts.leaseSeconds * 1000 });
      pipeline
        .hget(jobKey, 'finishedOn')
        .exists(jobKey)
        .exists(keys.cancel(this.#prefix, queue, jobId));
    }
    const replies = (await pipeline.exec()) ?? [];
    const stale: string[] = [];
    members.forEach(({ name, reservedAt }, i) => {
      const finishedOn = replies[3 * i]?.[1];
      const exists = replies[3 * i + 1]?.[1] === 1;
      const cancelled = replies[3 * i + 2]?.[1] === 1;
      const pastGrace = now - reservedAt > this.#opts.graceSeconds * 1000;
      if (finishedOn || cancelled || (!exists && pastGrace)) stale.push(name);
    });
    if (stale.length > 0) await this.#connection.zrem(activeKey, ...stale);
  }
}

function member(job: QuotaJob): string {
  if (job.queue.includes(':')) throw new RangeError('queue names cannot contain ":"');
  return `${job.queue}:${job.jobId}`;
}
