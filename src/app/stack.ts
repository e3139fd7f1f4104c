// The whole system in one process, for `npm start` and the end-to-end tests: Redis (given or a
// private redis-server), PGlite in DATA_DIR (or Postgres), models (tiny random ones written on first
// run), a worker serving every queue in process, and the playground. A composition root: it is the
// one place that wires the bot side and the worker side together, so it lives outside both.
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { createBotServices } from '../bots/core/services.js';
import { Library } from '../bots/web/library.js';
import { type RunningPlayground, startPlayground } from '../bots/web/server.js';
import type { Config } from '../shared/config.js';
import { type Database, openDatabase } from '../shared/db/index.js';
import { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import { checkEvictionPolicy, createConnection, openConnection, waitUntilReady } from '../shared/queues.js';
import { type DirLock, lockDirectory } from '../worker/runtime/dir-lock.js';
import { type LoadModelsOptions, loadModels, type WorkerModels } from '../worker/runtime/models.js';
import { startWorker, type WorkerHandle } from '../worker/runtime/start-worker.js';
import { modelSettings, workerSettings } from '../worker/runtime/worker-settings.js';
import { ensureModels, hasRandomWeights } from './models-setup.js';
import { type PrivateRedis, spawnRedis } from './redis-server.js';

type ChildLogger = Logger & { child?: (bindings: Record<string, unknown>) => Logger };

export interface StackOptions {
  /** Everything, worker tuning included (config.worker). */
  config: Config;
  logger: ChildLogger;
  /** Writes tiny random models when MODELS_DIR holds none. @defaultValue true */
  writeModels?: boolean;
  /** Overrides of loadModels' options (tests use a small default vocabulary). */
  models?: Partial<LoadModelsOptions>;
  /** Lines for the person at the terminal (start-up steps); absent: none. */
  say?: (line: string) => void;
}

export interface Stack {
  /** The playground's address. */
  readonly url: string;
  readonly redisUrl: string;
  /** Whether redis-server was spawned by us (and is stopped by close()). */
  readonly privateRedis: boolean;
  /** Whether this start wrote the tiny random models. */
  readonly wroteModels: boolean;
  /** Whether the models are random weights (banner). */
  readonly randomWeights: boolean;
  readonly worker: WorkerHandle;
  readonly db: Database;
  /** Stops everything in reverse order of start; safe to call twice. */
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const { config, logger } = options;
  const env = config.worker;
  const say = options.say ?? (() => {});
  const child = (name: string): Logger => logger.child?.({ name }) ?? logger;
  // Each acquired resource registers its release; a failure half-way releases what exists.
  const undo = new UndoStack(logger);
  const release = () => undo.release();

  try {
    if (config.databaseUrl === undefined) {
      // PGlite serves one process: a second `npm start` or worker on this DATA_DIR must refuse.
      const lock: DirLock = await lockDirectory(config.dataDir);
      undo.push('lock', () => lock.release());
    }

    let redis: PrivateRedis | undefined;
    let redisUrl = config.redisUrl;
    if (redisUrl === undefined) {
      say('starting a private redis-server (set REDIS_URL to use your own)…');
      redis = await spawnRedis();
      undo.push('redis-server', () => redis!.stop());
      redisUrl = redis.url;
    }

    const { wrote } = options.writeModels === false ? { wrote: false } : await ensureModels(config.modelsDir);
    if (wrote) say(`wrote tiny random-weight models to ${config.modelsDir}`);
    const randomWeights = hasRandomWeights(config.modelsDir);

    const workerConnection: Redis = createConnection(redisUrl, 'worker');
    workerConnection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    undo.push('worker connection', () => workerConnection.quit());
    await waitUntilReady(workerConnection);
    await checkEvictionPolicy(workerConnection, logger);
    const producer = await openConnection(redisUrl);
    producer.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    undo.push('producer connection', () => producer.quit());

    say(`loading models from ${config.modelsDir}…`);
    const models: WorkerModels = await loadModels(config.modelsDir, {
      ...modelSettings(config),
      logger: child('worker:models'),
      ...options.models,
    });
    undo.push('models', () => models.close());

    const db = await openDatabase(config, {
      embeddingDim: models.embeddingDim,
      embeddingModel: models.embeddingModel,
      logger: child('db'),
    });
    undo.push('database', () => db.close());

    const worker = await startWorker({
      connection: workerConnection,
      ...workerSettings(config),
      models,
      db,
      logger,
    });
    // With a private Redis nobody else could pick a handed-back job up: stop running jobs at once.
    undo.push('worker', () => worker.close(redis ? { graceMs: 0 } : {}));

    if (env.warmup && env.queues.includes('classify')) {
      // In the background: the page works meanwhile; the embeddings are cached on disk for next time.
      models.classifier
        .warmup()
        .then((set) =>
          logger.info({ labels: set.labels.length, fromCache: set.fromCache }, 'default vocabulary ready'),
        )
        .catch((err: unknown) => logger.warn({ err }, 'default vocabulary warm-up failed'));
    }

    const services = await createBotServices(
      { ...config, redisUrl },
      { logger: child('bot:web'), undo, connection: producer },
    );

    const playground: RunningPlayground = await startPlayground({
      jobs: services.jobs,
      indexJobs: services.indexJobs,
      blobs: services.blobs,
      library: new Library(join(config.dataDir, 'library')),
      admin: { connection: producer, prefix: config.queuePrefix },
      randomWeights,
      logger: child('bot:web'),
      port: config.port,
      host: config.host,
    });
    undo.push('playground', () => playground.close());

    return {
      url: playground.url,
      redisUrl,
      privateRedis: redis !== undefined,
      wroteModels: wrote,
      randomWeights,
      worker,
      db,
      close: release,
    };
  } catch (error) {
    await release();
    throw error;
  }
}
