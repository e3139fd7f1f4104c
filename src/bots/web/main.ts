// The playground as its own process (`tsx src/bots/web/main.ts`), for deployments where workers run
// elsewhere (docker-compose.yml): it needs REDIS_URL only; indexing, search and deleting a library
// image go through the queues to the workers, which hold the database. `npm start` runs the same
// server with a worker in process.
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../../shared/config.js';
import { startWithUndo } from '../../shared/lifecycle.js';
import { onShutdown, runMain } from '../../shared/shutdown.js';
import { createBotServices } from '../core/services.js';
import { Library } from './library.js';
import { startPlayground } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = pino({ name: 'bot:web', level: config.logLevel });
  logger.info({ config: redactedConfig(config) }, 'starting');
  const redisUrl = config.redisUrl;
  if (redisUrl === undefined) {
    throw new Error(
      'REDIS_URL is not set: the playground enqueues into the Redis its workers serve (npm start runs both)',
    );
  }
  const { undo } = await startWithUndo(logger, async (undo) => {
    const services = await createBotServices({ ...config, redisUrl }, { logger, undo });
    const playground = await startPlayground({
      jobs: services.jobs,
      indexJobs: services.indexJobs,
      blobs: services.blobs,
      library: new Library(join(config.dataDir, 'library')),
      admin: { connection: services.connection, prefix: config.queuePrefix },
      logger,
      port: config.port,
      host: config.host,
    });
    undo.push('playground', () => playground.close());
    logger.info({ url: playground.url }, 'playground listening');
  });
  onShutdown([() => undo.release()], logger);
}

runMain('playground', main);
