// Worker process entry (`node --import tsx src/worker/main.ts`): reads the environment (the only
// worker file that does), loads the models once, opens the database, serves the queues, and on
// SIGTERM/SIGINT finishes or hands back its jobs before exiting. Run as many as you like.
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { ensureReadableDir, ensureWritableDir } from '../shared/dirs.js';
import { startWithUndo } from '../shared/lifecycle.js';
import { onShutdown, runMain } from '../shared/shutdown.js';
import { composeWorker } from './runtime/compose-worker.js';

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
  const { undo } = await startWithUndo(logger, (undo) =>
    composeWorker({ ...config, redisUrl }, { root, logger, undo }),
  );
  // Running jobs get the grace period, then are handed back; the rest closes in moments.
  onShutdown([() => undo.release()], logger, {
    timeoutMs: env.shutdownGraceMs + 20_000,
    onSignal: (_signal, first) => {
      if (first) logger.info({ graceMs: env.shutdownGraceMs }, 'finishing running jobs');
    },
  });
}

runMain('worker', main);
