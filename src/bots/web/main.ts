// The playground as its own process (`tsx src/bots/web/main.ts`), for deployments where workers run
// elsewhere (docker-compose.yml): it needs REDIS_URL only; indexing, search and deleting a library
// image go through the queues to the workers, which hold the database. `npm start` runs the same
// server with a worker in process.
import { join } from 'node:path';
import { pino } from 'pino';
import { BlobStore } from '../../shared/blobs.js';
import { loadConfig, redactedConfig } from '../../shared/config.js';
import { checkEvictionPolicy, openConnection } from '../../shared/queues.js';
import { QuotaLimiter } from '../../shared/quota.js';
import { onShutdown, runMain } from '../../shared/shutdown.js';
import { JobClient } from '../core/job-client.js';
import { Library } from './library.js';
import { startPlayground } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = pino({ name: 'bot:web', level: config.logLevel });
  logger.info({ config: redactedConfig(config) }, 'starting');
  if (config.redisUrl === undefined) {
    throw new Error(
      'REDIS_URL is not set: the playground enqueues into the Redis its workers serve (npm start runs both)',
    );
  }
  const undo: (() => Promise<unknown>)[] = [];
  const release = async () => {
    for (const step of undo.splice(0).reverse()) await step().catch(() => {});
  };
  try {
    const connection = await openConnection(config.redisUrl);
    connection.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
    undo.push(() => connection.quit());
    await checkEvictionPolicy(connection, logger);
    const jobs = new JobClient({
      connection,
      prefix: config.queuePrefix,
      quota: new QuotaLimiter({
        connection,
        prefix: config.queuePrefix,
        budgets: config.quota,
      }),
      logger,
    });
    const indexJobs = new JobClient({ connection, prefix: config.queuePrefix, logger });
    undo.push(() => Promise.all([jobs.close(), indexJobs.close()]));
    const playground = await startPlayground({
      jobs,
      indexJobs,
      blobs: new BlobStore({
        connection,
        prefix: config.queuePrefix,
        ttlSeconds: config.blobs.ttlSeconds,
        maxBytes: config.blobs.maxBytes,
      }),
      library: new Library(join(config.dataDir, 'library')),
      admin: { connection, prefix: config.queuePrefix },
      logger,
      port: config.port,
      host: config.host,
    });
    undo.push(() => playground.close());
    logger.info({ url: playground.url }, 'playground listening');

    onShutdown([release], logger);
  } catch (error) {
    await release();
    throw error;
  }
}

runMain('playground', main);
