// A person's recent jobs, kept in Redis beside the in-flight index: the in-flight index forgets a
// job once its result is posted, but a home tab or `/queue` also lists what finished lately. Only
// job references and reply addresses are kept; state and prompt are read from the job itself.
import type { Redis } from 'ioredis';
import type { Platform } from '../../shared/jobs.js';
import type { JobRef } from './job-status.js';

export interface RecentJob {
  jobId: JobRef;
  /** The adapter's address of the reply (JSON-safe), as in the in-flight index. */
  reply: Record<string, unknown>;
  /** Epoch ms. */
  at: number;
}

export interface RecentJobsOptions {
  connection: Redis;
  prefix: string;
  /** Jobs kept per person. @defaultValue 20 */
  keep?: number;
  /** A person's list expires this long after their last job (jobs themselves live a day). @defaultValue 172800 */
  ttlSeconds?: number;
}

export class RecentJobs {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #keep: number;
  readonly #ttl: number;

  constructor(options: RecentJobsOptions) {
    this.#connection = options.connection;
    this.#prefix = options.prefix;
    this.#keep = options.keep ?? 20;
    this.#ttl = options.ttlSeconds ?? 2 * 86_400;
  }

  #key(platform: Platform, workspace: string | undefined, user: string): string {
    return `${this.#prefix}:bot:recent:${platform}:${workspace ?? '-'}:${user}`;
  }

  /** Records a job (newest first); recording it again moves it to the top with the new address. */
  async add(platform: Platform, workspace: string | undefined, user: string, job: RecentJob): Promise<void> {
    const key = this.#key(platform, workspace, user);
    const current = await this.#connection.lrange(key, 0, -1);
    const multi = this.#connection.multi();
    for (const raw of current) if (parse(raw)?.jobId === job.jobId) multi.lrem(key, 0, raw);
    await multi
      .lpush(key, JSON.stringify(job))
      .ltrim(key, 0, this.#keep - 1)
      .expire(key, this.#ttl)
      .exec();
  }

  async list(
    platform: Platform,
    workspace: string | undefined,
    user: string,
    limit = 10,
  ): Promise<RecentJob[]> {
    const raw = await this.#connection.lrange(this.#key(platform, workspace, user), 0, limit - 1);
    return raw.map(parse).filter((j): j is RecentJob => j !== undefined);
  }
}

function parse(raw: string): RecentJob | undefined {
  try {
    const v = JSON.parse(raw) as Partial<RecentJob>;
    if (typeof v.jobId !== 'string' || typeof v.at !== 'number') return undefined;
    return { jobId: v.jobId, reply: v.reply ?? {}, at: v.at };
  } catch {
    return undefined;
  }
}
