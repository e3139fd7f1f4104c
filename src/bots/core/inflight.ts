// The jobs a bot is following, kept in Redis rather than in the bot process: a restarted (or
// another) bot process lists them and re-attaches, and `/queue` lists a person's jobs from it. One
// hash per platform; each entry holds the job's origin and the adapter's address of its reply.
import type { Redis } from 'ioredis';
import type { Origin, Platform } from '../../shared/jobs.js';
import type { JobRef } from './job-status.js';

export interface InflightEntry {
  jobId: JobRef;
  origin: Origin;
  /**
   * Where the reply lives, in the adapter's own terms (JSON-safe): a Discord channel and message id
   * and interaction token, a Slack channel and ts. What re-attaching needs to go on editing it.
   */
  reply: Record<string, unknown>;
  /** Epoch ms. */
  startedAt: number;
}

export interface InflightFilter {
  user?: string;
  workspace?: string;
  channel?: string;
}

export interface InflightIndexOptions {
  connection: Redis;
  prefix: string;
  /** Entries older than this are dropped when listed (a job cannot run that long). @defaultValue 172800000 (2 days) */
  maxAgeMs?: number;
}

export class InflightIndex {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #maxAgeMs: number;

  constructor(options: InflightIndexOptions) {
    this.#connection = options.connection;
    this.#prefix = options.prefix;
    this.#maxAgeMs = options.maxAgeMs ?? 2 * 86_400_000;
  }

  #key(platform: Platform): string {
    return `${this.#prefix}:bot:inflight:${platform}`;
  }

  async add(entry: InflightEntry): Promise<void> {
    await this.#connection.hset(this.#key(entry.origin.platform), entry.jobId, JSON.stringify(entry));
  }

  /** Changes where the reply lives (e.g. a Discord job moved from its interaction to a channel message). */
  async updateReply(platform: Platform, jobId: JobRef, reply: Record<string, unknown>): Promise<void> {
    const entry = await this.get(platform, jobId);
    if (entry) await this.add({ ...entry, reply });
  }

  async get(platform: Platform, jobId: JobRef): Promise<InflightEntry | undefined> {
    const raw = await this.#connection.hget(this.#key(platform), jobId);
    return raw === null ? undefined : parseEntry(raw);
  }

  async remove(platform: Platform, jobId: JobRef): Promise<void> {
    await this.#connection.hdel(this.#key(platform), jobId);
  }

  /** A platform's entries (oldest first), optionally of one user, workspace or channel. */
  async list(platform: Platform, filter: InflightFilter = {}): Promise<InflightEntry[]> {
    const all = await this.#connection.hgetall(this.#key(platform));
    const now = Date.now();
    const out: InflightEntry[] = [];
    const stale: string[] = [];
    for (const [field, raw] of Object.entries(all)) {
      const entry = parseEntry(raw);
      if (!entry || now - entry.startedAt > this.#maxAgeMs) {
        stale.push(field);
        continue;
      }
      if (filter.user !== undefined && entry.origin.user !== filter.user) continue;
      if (filter.workspace !== undefined && entry.origin.workspace !== filter.workspace) continue;
      if (filter.channel !== undefined && entry.origin.channel !== filter.channel) continue;
      out.push(entry);
    }
    if (stale.length > 0) await this.#connection.hdel(this.#key(platform), ...stale);
    return out.sort((a, b) => a.startedAt - b.startedAt);
  }
}

function parseEntry(raw: string): InflightEntry | undefined {
  try {
    const parsed = JSON.parse(raw) as Partial<InflightEntry>;
    if (typeof parsed.jobId !== 'string' || typeof parsed.startedAt !== 'number' || !parsed.origin)
      return undefined;
    return { reply: {}, ...parsed } as InflightEntry;
  } catch {
    return undefined;
  }
}
