// A worker process's resources in the order they depend on each other: the DATA_DIR lock (PGlite
// serves one process), a worker-role Redis connection with its eviction check, the models, the
// database, the BullMQ workers, and the default vocabulary warmed in the background. Each release is
// registered on the caller's undo stack. Worker main and npm start's worker process both use it.
import { openBlobStore } from '../../shared/blobs/open-blob-store.js';
import type { Config } from '../../shared/config.js';
import { openDatabase } from '../../shared/db/index.js';
import type { UndoStack } from '../../shared/lifecycle.js';
import type { Logger } from '../../shared/logger.js';
import { Metrics } from '../../shared/metrics.js';
import { Health, redisCheck, startMetricsServer } from '../../shared/metrics-server.js';
import { checkEvictionPolicy, createConnection, waitUntilReady } from '../../shared/queues.js';
import { lockDirectory } from './dir-lock.js';
import { type LoadModelsOptions, loadModels } from './models.js';
import { startWorker, type WorkerHandle } from './start-worker.js';
import { modelSettings, workerSettings } from './worker-settings.js';

type RootLogger = Logger & { child(bindings: Record<string, unknown>): Logger };

export interface ComposeWorkerOptions {
  /** Names the parts' loggers (`worker:models`, `worker:db`, one per queue). */
  root: RootLogger;
  /** For this composition's own lines (connection errors, the warm-up). */
  logger: Logger;
  undo: UndoStack;
  /** Overrides of loadModels' options (tests: a small default vocabulary). */
  models?: Partial<LoadModelsOptions>;
  /** Called once the models are loaded, before the database opens (from here on a stop must be orderly). */
  onOpeningDatabase?: () => void;
  /**
   * Where this worker's metrics go. With config.metrics.workerPort set, /metrics and /healthz are
   * served from there (one is made when absent). @defaultValue none (or a new one with a port)
   */
  metrics?: Metrics;
}

/** What composeWorker started: the BullMQ workers and, with WORKER_METRICS_PORT, the listener. */
export type ComposedWorker = WorkerHandle & { readonly metricsUrl?: string };

export async function composeWorker(
  config: Config & { redisUrl: string },
  options: ComposeWorkerOptions,
): Promise<ComposedWorker> {
  const { root, logger, undo } = options;
  if (config.databaseUrl === undefined) {
    await undo.use(
      'data dir lock',
      () => lockDirectory(config.dataDir),
      (lock) => lock.release(),
    );
  }
  // Up before the slow parts, so a probe hears "models: loading" rather than nothing.
  const workerPort = config.metrics?.workerPort;
  const metrics = options.metrics ?? (workerPort === undefined ? undefined : new Metrics());
  const health = new Health()
    .pending('redis', 'connecting')
    .pending('models', 'loading')
    .pending('database', 'not open yet');
  let metricsUrl: string | undefined;
  if (metrics && workerPort !== undefined) {
    const server = await startMetricsServer({
      metrics,
      health,
      port: workerPort,
      host: config.metrics.host,
      portVariable: 'WORKER_METRICS_PORT',
      logger,
    });
    undo.push('metrics server', () => server.close());
    metricsUrl = server.url;
    logger.info({ url: `${server.url}/metrics` }, 'metrics and /healthz listening');
  }
  const connection = createConnection(config.redisUrl, 'worker');
  connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  undo.push('redis connection', () => connection.quit());
  await waitUntilReady(connection);
  await checkEvictionPolicy(connection, logger);
  health.set('redis', redisCheck(connection));
  if (metrics) {
    metrics.watchQueues(connection, config.queuePrefix, config.worker.queues);
    metrics.setConcurrency(
      Object.fromEntries(config.worker.queues.map((q) => [q, config.worker.concurrency[q]])),
    );
    undo.push('metrics', () => metrics.close());
  }
  // Before the models, so that a bad BLOB_STORE_URL or credentials stop the start at once.
  // Workers sweep expired S3 blobs (Redis expires its own); any number of sweepers is harmless.
  const blobs = await openBlobStore(config, {
    connection,
    logger: root.child({ name: 'worker:blobs' }),
    sweep: true,
  });
  undo.push('blob store', () => blobs.close());

  const models = await loadModels(config.modelsDir, {
    ...modelSettings(config),
    logger: root.child({ name: 'worker:models' }),
    ...options.models,
  });
  undo.push('models', () => models.close());
  health.set('models', () => {});
  options.onOpeningDatabase?.();
  const db = await openDatabase(config, {
    embeddingDim: models.embeddingDim,
    embeddingModel: models.embeddingModel,
    logger: root.child({ name: 'worker:db' }),
  });
  undo.push('database', () => db.close());
  health.set('database', () => db.driver.query('SELECT 1'));

  const handle = await startWorker({
    connection,
    ...workerSettings(config),
    models,
    db,
    blobs,
    logger: root,
    ...(metrics === undefined ? {} : { metrics }),
  });
  undo.push('worker', () => handle.close());

  if (config.worker.warmup && config.worker.queues.includes('classify')) {
    // In the background: jobs are served meanwhile, and the result is cached on disk for next time.
    const started = performance.now();
    models.classifier
      .warmup()
      .then((set) =>
        logger.info(
          {
            labels: set.labels.length,
            fromCache: set.fromCache,
            ms: Math.round(performance.now() - started),
          },
          'default vocabulary ready',
        ),
      )
      .catch((err: unknown) => logger.warn({ err }, 'default vocabulary warm-up failed'));
  }
  return metricsUrl === undefined ? handle : Object.assign(handle, { metricsUrl });
}
