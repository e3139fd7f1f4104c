// The one mapping from the shared configuration (its WORKER_* part included, validated in
// shared/config.ts) to startWorker's queue and tuning options, so that every process that starts a
// worker (worker main, `npm start`) passes the same values.
import type { Config } from '../../shared/config.js';
import type { StartWorkerOptions } from './start-worker.js';

export function workerSettings(config: Config) {
  const w = config.worker;
  return {
    prefix: config.queuePrefix,
    queues: w.queues,
    concurrency: w.concurrency,
    lockDurationMs: w.lockDurationMs,
    stalledIntervalMs: w.stalledIntervalMs,
    maxStalledCount: w.maxStalledCount,
    blobTtlSeconds: config.blobs.ttlSeconds,
    blobMaxBytes: config.blobs.maxBytes,
    previewTtlSeconds: w.previewTtlSeconds,
    imagineTimeBudgetMs: w.imagineTimeBudgetMs,
    shutdownGraceMs: w.shutdownGraceMs,
  } satisfies Partial<StartWorkerOptions>;
}
