// The one mapping from the shared configuration (its WORKER_* part included, validated in
// shared/config.ts) to loadModels' and startWorker's options, so that every process that starts a
// worker (worker main, `npm start`) passes the same values.
import { join } from 'node:path';
import type { Config } from '../../shared/config.js';
import type { LoadModelsOptions } from './models.js';
import type { StartWorkerOptions } from './start-worker.js';

/** loadModels' options from the configuration (the caller adds its logger). */
export function modelSettings(config: Config) {
  return {
    providers: config.ortProviders,
    intraOpThreads: config.ortIntraOpThreads,
    interOpThreads: config.ortInterOpThreads,
    allowSpinning: config.ortAllowSpinning,
    imagePrecision: config.clipImagePrecision,
    dallePrecision: config.dallePrecision,
    labelCacheDir: join(config.dataDir, 'label-cache'),
    microBatch: config.worker.microBatch,
    batchWaitMs: config.worker.batchWaitMs,
    ...(config.worker.stepMemoryMb === undefined
      ? {}
      : { stepMemoryBudgetBytes: config.worker.stepMemoryMb * 2 ** 20 }),
    // SAFETY_MODE is the adapters' presentation: workers check whenever SAFETY_CHECK is on.
    safety: config.safety.check
      ? {
          threshold: config.safety.threshold,
          ...(config.safety.promptsFile === undefined ? {} : { promptsFile: config.safety.promptsFile }),
        }
      : false,
  } satisfies LoadModelsOptions;
}

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
