// The services every bot process wires the same way: one Redis connection (eviction policy checked),
// the JobClients (user jobs under quota, indexing without), the quota limiter, blobs, the in-flight
// index and the run loop. Mains call createBotServices once and pass the parts to their adapters.
import type { Redis } from 'ioredis';
import { openBlobStore } from '../../shared/blobs/open-blob-store.js';
import type { BlobStore } from '../../shared/blobs.js';
import type { Config } from '../../shared/config.js';
import type { UndoStack } from '../../shared/lifecycle.js';
import type { Logger } from '../../shared/logger.js';
import { checkEvictionPolicy, openConnection } from '../../shared/queues.js';
import { QuotaLimiter } from '../../shared/quota.js';
import { AckFirst } from './ack-first.js';
import { InflightIndex } from './inflight.js';
import { JobClient } from './job-client.js';
import { MemoryGuard } from './memory-guard.js';
import { JobRunner } from './reply.js';
import { SettingsStore } from './settings.js';

export interface BotServices {
  readonly connection: Redis;
  readonly prefix: string;
  /** User-requested jobs, counted against quotas. */
  readonly jobs: JobClient;
  /** Indexing and deleting channel images: not a person's request, so no quota. */
  readonly indexJobs: JobClient;
  readonly quota: QuotaLimiter;
  readonly blobs: BlobStore;
  readonly inflight: InflightIndex;
  readonly runner: JobRunner;
  readonly settings: SettingsStore;
  /** The process's acks-first gate, shared by its adapters (ack-first.ts). */
  readonly acks: AckFirst;
}

export type BotServicesConfig = Pick<Config, 'queuePrefix' | 'quota' | 'blobs'> & {
  redisUrl: string;
  /** New jobs are refused above this share of Redis's maxmemory. @defaultValue 0.9 */
  redisMemoryHighWater?: number;
  safety?: Pick<Config['safety'], 'mode'>;
};

export interface BotServicesOptions {
  logger: Logger;
  /** Releases are registered here (connection last). */
  undo: UndoStack;
  /** An open connection to use instead of opening one (npm start shares its producer). */
  connection?: Redis;
  /** Least time between two progress edits of one job. @defaultValue the runner's (3000) */
  throttleMs?: number;
}

export async function createBotServices(
  config: BotServicesConfig,
  options: BotServicesOptions,
): Promise<BotServices> {
  const { logger, undo } = options;
  let connection = options.connection;
  if (!connection) {
    const opened = await openConnection(config.redisUrl);
    opened.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    undo.push('redis connection', () => opened.quit());
    await checkEvictionPolicy(opened, logger);
    connection = opened;
  }
  const prefix = config.queuePrefix;
  const quota = new QuotaLimiter({ connection, prefix, budgets: config.quota });
  // Both clients: indexing jobs carry images too, and every job needs room in Redis to finish.
  const admission = new MemoryGuard({
    connection,
    logger,
    ...(config.redisMemoryHighWater === undefined ? {} : { highWater: config.redisMemoryHighWater }),
  });
  const jobs = new JobClient({ connection, prefix, quota, admission, logger });
  const indexJobs = new JobClient({ connection, prefix, admission, logger });
  undo.push('job clients', () => Promise.all([jobs.close(), indexJobs.close()]));
  // Redis beside the queues, or the S3 bucket of BLOB_STORE_URL (its sweeper runs in workers).
  const blobs = await openBlobStore(config, { connection, logger });
  undo.push('blob store', () => blobs.close());
  const inflight = new InflightIndex({ connection, prefix });
  const runner = new JobRunner({
    jobs,
    inflight,
    logger,
    ...(options.throttleMs === undefined ? {} : { throttleMs: options.throttleMs }),
  });
  undo.push('runner', () => runner.close());
  const settings = new SettingsStore({
    connection,
    prefix,
    jobs: indexJobs,
    defaultSafetyMode: config.safety?.mode ?? 'spoiler',
  });
  const acks = new AckFirst();
  undo.push('acks-first gate', () => acks.close());
  return { connection, prefix, jobs, indexJobs, quota, blobs, inflight, runner, settings, acks };
}
