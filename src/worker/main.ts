// Worker process entry (`node --import tsx src/worker/main.ts`): reads the environment (the only
// worker file that does), loads the models once, opens the database, serves the queues, and on
// SIGTERM/SIGINT finishes or hands back its jobs before exiting. Run as many as you like.
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { openDatabase } from '../shared/db/index.js';
import { ensureReadableDir, ensureWritableDir } from '../shared/dirs.js';
import { startWithUndo } from '../shared/lifecycle.js';
import { checkEvictionPolicy, createConnection, waitUntilReady } from '../shared/queues.js';
import { onShutdown, runMain } from '../shared/shutdown.js';
import { lockDirectory } from './runtime/dir-lock.js';
import { loadModels } from './runtime/models.js';
import { startWorker } from './runtime/start-worker.js';
import { modelSettings, workerSettings } from './runtime/worker-settings.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const env = config.worker;
  // Children are named per part (worker:imagine, worker:db); the root has no name so that a child's
  // name is not written twice.
  const root = pino({ level: config.logLevel });
  const logger = root.child({ name: 'worker:main' });
  logger.info({ config: redactedConfig(config) }, 'starting');
  if (config.redisUrl === undefined) {
    throw new Error(
      'REDIS_URL is not set: a worker needs the Redis its bots enqueue into (npm start spawns one)',
    );
  }

  const redisUrl = config.redisUrl;
  // Before anything slow: a bad folder is one line at start, not a stack trace from a later write.
  await ensureWritableDir(config.dataDir, 'DATA_DIR');
  await ensureReadableDir(
    config.modelsDir,
    'MODELS_DIR',
    'put model folders there (npm run models -- pull, or -- random --preset tiny)',
  );
  const { undo } = await startWithUndo(logger, async (resources) => {
    if (config.databaseUrl === undefined) {
      await resources.use(
        'data dir lock',
        () => lockDirectory(config.dataDir),
        (lock) => lock.release(),
      );
    }
    const connection = createConnection(redisUrl, 'worker');
    connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    resources.push('redis connection', () => connection.quit());
    await waitUntilReady(connection);
    await checkEvictionPolicy(connection, logger);

    const models = await loadModels(config.modelsDir, {
      ...modelSettings(config),
      logger: root.child({ name: 'worker:models' }),
    });
    resources.push('models', () => models.close());
    const db = await openDatabase(config, {
      embeddingDim: models.embeddingDim,
      embeddingModel: models.embeddingModel,
      logger: root.child({ name: 'worker:db' }),
    });
    resources.push('database', () => db.close());

    const handle = await startWorker({
      connection,
      ...workerSettings(config),
      models,
      db,
      logger: root,
    });
    resources.push('worker', () => handle.close());

    if (env.warmup && env.queues.includes('classify')) {
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
  });
  // Running jobs get the grace period, then are handed back; the rest closes in moments.
  onShutdown([() => undo.release()], logger, {
    timeoutMs: env.shutdownGraceMs + 20_000,
    onSignal: (_signal, first) => {
      if (first) logger.info({ graceMs: env.shutdownGraceMs }, 'finishing running jobs');
    },
  });
}

runMain('worker', main);
