// Worker tuning from WORKER_* environment variables, validated with zod like shared/config.ts (which
// holds what every process shares). main.ts passes process.env in; nothing else reads it.
import { z } from 'zod';
import type { Config } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import { type JobKind, jobKinds } from '../../shared/jobs.js';
import type { StartWorkerOptions } from './start-worker.js';

export interface WorkerEnv {
  queues: JobKind[];
  concurrency: Record<JobKind, number>;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  microBatch: number;
  batchWaitMs: number;
  imagineTimeBudgetMs: number;
  shutdownGraceMs: number;
  previewTtlSeconds: number;
  /** Compute (or load from the cache) the default vocabulary's label embeddings at start. */
  warmup: boolean;
}

const unsetIfEmpty = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const intVar = (def: number, min: number, max: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).max(max).default(def));

const schema = z.object({
  WORKER_QUEUES: z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .default(jobKinds.join(','))
      .transform((s) => [...new Set(s.split(',').map((q) => q.trim()))])
      .pipe(z.array(z.enum(jobKinds, { error: `each queue must be one of ${jobKinds.join(', ')}` })).min(1)),
  ),
  WORKER_IMAGINE_CONCURRENCY: intVar(1, 1, 64),
  WORKER_CLASSIFY_CONCURRENCY: intVar(16, 1, 1024),
  WORKER_EMBED_CONCURRENCY: intVar(16, 1, 1024),
  WORKER_SEARCH_CONCURRENCY: intVar(4, 1, 1024),
  WORKER_DELETE_CONCURRENCY: intVar(4, 1, 1024),
  WORKER_LOCK_DURATION_MS: intVar(30_000, 200, 3_600_000),
  WORKER_STALLED_INTERVAL_MS: intVar(30_000, 100, 3_600_000),
  WORKER_MAX_STALLED_COUNT: intVar(1, 0, 100),
  WORKER_MICRO_BATCH: intVar(16, 1, 256),
  WORKER_BATCH_WAIT_MS: intVar(5, 0, 1000),
  WORKER_IMAGINE_TIME_BUDGET_MS: intVar(20 * 60_000, 1000, 24 * 3_600_000),
  WORKER_SHUTDOWN_GRACE_MS: intVar(10_000, 0, 3_600_000),
  WORKER_PREVIEW_TTL_SECONDS: intVar(3600, 10, 7 * 86_400),
  WORKER_WARMUP: z.preprocess(
    unsetIfEmpty,
    z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
  ),
});

/** Reads the WORKER_* variables; a ConfigError lists every bad one at once. */
export function loadWorkerEnv(env: Readonly<Record<string, string | undefined>>): WorkerEnv {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({
        variable: String(i.path[0] ?? '(environment)'),
        message: i.message,
      })),
    );
  }
  const e = parsed.data;
  return {
    queues: e.WORKER_QUEUES,
    concurrency: {
      imagine: e.WORKER_IMAGINE_CONCURRENCY,
      classify: e.WORKER_CLASSIFY_CONCURRENCY,
      'embed-image': e.WORKER_EMBED_CONCURRENCY,
      search: e.WORKER_SEARCH_CONCURRENCY,
      'delete-image': e.WORKER_DELETE_CONCURRENCY,
    },
    lockDurationMs: e.WORKER_LOCK_DURATION_MS,
    stalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    maxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    microBatch: e.WORKER_MICRO_BATCH,
    batchWaitMs: e.WORKER_BATCH_WAIT_MS,
    imagineTimeBudgetMs: e.WORKER_IMAGINE_TIME_BUDGET_MS,
    shutdownGraceMs: e.WORKER_SHUTDOWN_GRACE_MS,
    previewTtlSeconds: e.WORKER_PREVIEW_TTL_SECONDS,
    warmup: e.WORKER_WARMUP,
  };
}

/**
 * The queue and tuning part of StartWorkerOptions from the shared config and WORKER_* settings, so
 * every process that starts a worker (worker main, `npm start`) passes the same values.
 */
export function workerSettings(config: Config, env: WorkerEnv) {
  return {
    prefix: config.queuePrefix,
    queues: env.queues,
    concurrency: env.concurrency,
    lockDurationMs: env.lockDurationMs,
    stalledIntervalMs: env.stalledIntervalMs,
    maxStalledCount: env.maxStalledCount,
    blobTtlSeconds: config.blobs.ttlSeconds,
    blobMaxBytes: config.blobs.maxBytes,
    previewTtlSeconds: env.previewTtlSeconds,
    imagineTimeBudgetMs: env.imagineTimeBudgetMs,
    shutdownGraceMs: env.shutdownGraceMs,
  } satisfies Partial<StartWorkerOptions>;
}
