// The BullMQ side of a worker process: one BullMQ Worker per queue it serves, each job run through
// the same processor functions the CLI calls in process, with cross-process cancel, coded errors
// (bad input fails at once, transient failures retry with backoff), progress, and a shutdown that
// finishes running jobs or, past a grace period, hands them back to the queue for another worker.
import { type Job, type Processor, WaitingError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type BlobStore, RedisBlobStore } from '../../shared/blobs.js';
import { CancelWatcher } from '../../shared/cancel.js';
import type { Database } from '../../shared/db/index.js';
import { asCodedError, InternalError, UnavailableError } from '../../shared/errors.js';
import { type JobKind, jobKinds, toJobError } from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { runChannelState } from '../processors/channel-state.js';
import { runClassify } from '../processors/classify.js';
import { runDeleteImage } from '../processors/delete-image.js';
import { runEmbedImage } from '../processors/embed-image.js';
import { runImagine } from '../processors/imagine.js';
import { runSearch } from '../processors/search.js';
import { type RankingOptions, rankingOptions } from '../search/rank.js';
import type { WorkerModels } from './models.js';

export interface StartWorkerOptions {
  /** A worker-role connection (createConnection(url, 'worker')); BullMQ duplicates it. Caller-owned. */
  connection: Redis;
  /** config.queuePrefix */
  prefix: string;
  models: WorkerModels;
  /** Required for embed-image, search and delete-image; imagine records its generations in it when given. */
  db?: Database;
  /** Queues this process serves. @defaultValue every kind */
  queues?: readonly JobKind[];
  /**
   * Jobs run at once per queue. Imagine: one per device (a step already uses every core). Classify
   * and embed-image: enough for a micro-batch to fill (they share the image tower's batches).
   * @defaultValue { imagine: 1, classify: 16, 'embed-image': 16, search: 4, 'delete-image': 4 }
   */
  concurrency?: Partial<Record<JobKind, number>>;
  /**
   * How long a job's lock lasts without renewal (renewed every half of it while the job runs); a
   * crashed worker's job is taken over this long after the crash. @defaultValue 30000
   */
  lockDurationMs?: number;
  /** How often this worker looks for jobs whose lock expired. @defaultValue 30000 */
  stalledIntervalMs?: number;
  /** Times a job may stall before it fails (a job that kills its worker must not kill them all). @defaultValue 1 */
  maxStalledCount?: number;
  /**
   * Where inputs are read and results written (openBlobStore: Redis or S3); caller-owned. When absent,
   * Redis blobs on `connection` with blobTtlSeconds and blobMaxBytes. @defaultValue a RedisBlobStore
   */
  blobs?: BlobStore;
  /** Blob TTL for results (config.blobs.ttlSeconds). @defaultValue 86400 */
  blobTtlSeconds?: number;
  /** Largest blob stored (config.blobs.maxBytes). @defaultValue 26214400 */
  blobMaxBytes?: number;
  /** TTL of preview images. @defaultValue 3600 */
  previewTtlSeconds?: number;
  /** Wall-clock budget of one imagine run; it then stops early with a full result. @defaultValue 1200000 (20 min) */
  imagineTimeBudgetMs?: number;
  /** How long close() lets running jobs finish before handing them back to the queue. @defaultValue 10000 */
  shutdownGraceMs?: number;
  /** Near-duplicate folding, margins and the low-confidence line of searches. @defaultValue DefaultRankingOptions */
  searchRanking?: RankingOptions;
  /** Names loggers per queue (`worker:imagine`) when it has pino's `child`. */
  logger?: Logger & { child?: (bindings: Record<string, unknown>) => Logger };
  /** Job waits, durations, failures by code and busy time go here (shared/metrics.ts). @defaultValue none */
  metrics?: Metrics;
}

export const DefaultStartWorkerOptions = {
  queues: jobKinds,
  concurrency: {
    imagine: 1,
    classify: 16,
    'embed-image': 16,
    search: 4,
    'delete-image': 4,
    'channel-state': 4,
  },
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
  blobTtlSeconds: 86_400,
  blobMaxBytes: 25 * 1024 * 1024,
  previewTtlSeconds: 3600,
  imagineTimeBudgetMs: 20 * 60_000,
  shutdownGraceMs: 10_000,
} as const satisfies Partial<StartWorkerOptions>;

export interface WorkerStats {
  /** Jobs finished per queue, by outcome. */
  completed: Record<JobKind, number>;
  failed: Record<JobKind, number>;
  /** Jobs given back to the queue at shutdown. */
  handedBack: number;
}

export interface WorkerHandle {
  readonly queues: readonly JobKind[];
  readonly stats: WorkerStats;
  /**
   * Stops taking jobs and waits for the running ones; after `graceMs` the rest are aborted and moved
   * back to the queue, where another worker starts them again. Models, database and connection stay
   * open: the caller owns them.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

/** Starts serving the queues; resolves once every BullMQ worker is connected. */
export async function startWorker(options: StartWorkerOptions): Promise<WorkerHandle> {
  const o = { ...DefaultStartWorkerOptions, ...options };
  const concurrency = { ...DefaultStartWorkerOptions.concurrency, ...options.concurrency };
  const queues = [...new Set(o.queues)];
  const child = options.logger?.child?.bind(options.logger);
  const loggerFor = (name: string): Logger =>
    child ? child({ name: `worker:${name}` }) : (options.logger ?? silentLogger);
  const rootLogger = loggerFor('runtime');
  const needsDb = queues.filter(
    (q) => q === 'embed-image' || q === 'search' || q === 'delete-image' || q === 'channel-state',
  );
  if (needsDb.length > 0 && !options.db) {
    throw new InternalError(`queues ${needsDb.join(', ')} need a database`);
  }
  // Checked here, so that bad values fail the start rather than every search.
  const ranking = rankingOptions(options.searchRanking);
  for (const q of queues) {
    const n = concurrency[q];
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`concurrency of ${q} must be an integer >= 1`);
  }

  const blobs =
    options.blobs ??
    new RedisBlobStore({
      connection: o.connection,
      prefix: o.prefix,
      ttlSeconds: o.blobTtlSeconds,
      maxBytes: o.blobMaxBytes,
    });
  const cancels = new CancelWatcher({
    connection: o.connection,
    prefix: o.prefix,
    logger: loggerFor('cancel'),
  });
  await cancels.start();
  // Aborted when the grace period of a shutdown is over: running jobs then hand themselves back.
  const shutdown = new AbortController();
  const stats: WorkerStats = {
    completed: Object.fromEntries(jobKinds.map((k) => [k, 0])) as Record<JobKind, number>,
    failed: Object.fromEntries(jobKinds.map((k) => [k, 0])) as Record<JobKind, number>,
    handedBack: 0,
  };

  const run = (kind: JobKind, job: Job, signal: AbortSignal, logger: Logger): Promise<unknown> => {
    const { models, db } = o;
    switch (kind) {
      case 'imagine':
        return runImagine(models, job.data, {
          blobs,
          signal,
          ...(db === undefined ? {} : { db }),
          jobId: `imagine:${job.id}`,
          timeBudgetMs: o.imagineTimeBudgetMs,
          previewTtlSeconds: o.previewTtlSeconds,
          logger,
          // Every step: a bot shows at most one update per second anyway (JobClient throttles), and
          // the last step reported is what a cancel is measured against.
          onProgress: (progress) => job.updateProgress(progress),
        });
      case 'classify':
        return runClassify(models, job.data, { blobs, signal });
      case 'embed-image':
        return runEmbedImage(models, job.data, { blobs, signal, db: db! });
      case 'search':
        return runSearch(models, job.data, { blobs, signal, db: db!, ranking });
      case 'delete-image':
        return runDeleteImage(job.data, { signal, db: db! });
      case 'channel-state':
        return runChannelState(job.data, { signal, db: db! });
    }
  };

  const processorFor = (kind: JobKind): Processor => {
    const logger = loggerFor(kind);
    return async (job, token, bullSignal) => {
      const id = job.id!;
      const started = performance.now();
      const cancel = await cancels.watch(kind, id, bullSignal);
      const measured = options.metrics?.jobStarted(kind, {
        timestamp: job.timestamp,
        processedOn: job.processedOn,
        attemptsStarted: job.attemptsStarted,
        delay: job.opts.delay,
      });
      const signal = AbortSignal.any([cancel.signal, shutdown.signal]);
      logger.debug({ jobId: id, attempt: job.attemptsStarted }, 'job started');
      try {
        const result = await run(kind, job, signal, logger);
        stats.completed[kind]++;
        measured?.('completed');
        logger.info({ jobId: id, ms: Math.round(performance.now() - started) }, 'job completed');
        return result;
      } catch (error) {
        if (shutdown.signal.aborted && !cancel.signal.aborted && token) {
          // Not the job's fault: give it back untouched (no attempt spent) for another worker.
          const handedBack = await job.moveToWait(token).then(
            () => true,
            (err: unknown) => {
              // Lock lost meanwhile: fail the attempt as 'unavailable' below, which is retried.
              logger.warn({ jobId: id, err }, 'could not hand the job back');
              return false;
            },
          );
          if (handedBack) {
            stats.handedBack++;
            measured?.('handed_back');
            logger.warn({ jobId: id }, 'shutting down: job handed back to the queue');
            throw new WaitingError();
          }
        }
        const coded = asCodedError(error);
        stats.failed[kind]++;
        measured?.('failed', coded.code);
        const fields = { jobId: id, code: coded.code, ms: Math.round(performance.now() - started) };
        if (coded.code === 'internal') logger.error({ ...fields, err: error }, 'job failed');
        else logger.info({ ...fields, message: coded.message }, 'job failed');
        throw toJobError(coded);
      } finally {
        cancel.dispose();
        // Anything that ended the attempt otherwise (a throw while handing back) is a failure.
        measured?.('failed', 'internal');
      }
    };
  };

  const workers = queues.map((kind) => {
    const worker = new Worker(kind, processorFor(kind), {
      connection: o.connection,
      prefix: o.prefix,
      concurrency: concurrency[kind],
      lockDuration: o.lockDurationMs,
      stalledInterval: o.stalledIntervalMs,
      maxStalledCount: o.maxStalledCount,
      autorun: false,
    });
    const logger = loggerFor(kind);
    worker.on('error', (err) => logger.warn({ err }, 'worker error'));
    worker.on('stalled', (jobId) =>
      logger.warn({ jobId }, 'job stalled: its worker stopped renewing the lock'),
    );
    return worker;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  for (const w of workers)
    void w.run().catch((err: unknown) => rootLogger.error({ err }, 'worker loop failed'));
  rootLogger.info({ queues, concurrency, pid: process.pid }, 'worker ready');

  let closing: Promise<void> | undefined;
  return {
    queues,
    stats,
    close(closeOptions = {}) {
      closing ??= (async () => {
        const graceMs = closeOptions.graceMs ?? o.shutdownGraceMs;
        const timer = setTimeout(
          () => shutdown.abort(new UnavailableError('the worker is shutting down')),
          graceMs,
        );
        try {
          await Promise.all(workers.map((w) => w.close()));
        } finally {
          clearTimeout(timer);
          await cancels.close();
        }
        rootLogger.info({ stats }, 'worker closed');
      })();
      return closing;
    },
  };
}
