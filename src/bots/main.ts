// The bot side as its own process (`npm run bot`), for deployments whose workers run elsewhere (GPU
// machines, docker-compose): every configured chat adapter (Discord when DISCORD_TOKEN is set, Slack
// when SLACK_BOT_TOKEN is set) and the playground, on one set of bot services. It needs REDIS_URL
// only: indexing, search and settings go through the queues to the workers, which hold the database.
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { startWithUndo } from '../shared/lifecycle.js';
import { onShutdown, runMain } from '../shared/shutdown.js';
import { startChatAdapters } from './adapters.js';
import { createBotServices } from './core/services.js';
import { startBotObservability } from './observability.js';
import { assertPlaygroundExposure } from './web/auth.js';
import { Library } from './web/library.js';
import { startPlayground } from './web/server.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const root = pino({ level: config.logLevel });
  const logger = root.child({ name: 'bot:main' });
  logger.info({ config: redactedConfig(config) }, 'starting');
  // Before connecting anything: a page open to the network without a password does not start.
  assertPlaygroundExposure(config.host, config.playgroundPassword);
  const redisUrl = config.redisUrl;
  if (redisUrl === undefined) {
    throw new Error(
      'REDIS_URL is not set: the bots enqueue into the Redis their workers serve (npm start runs both)',
    );
  }
  const { undo } = await startWithUndo(logger, async (undo) => {
    const services = await createBotServices(
      { ...config, redisUrl },
      { logger: root.child({ name: 'bot:core' }), undo },
    );
    // Before the adapters, so their first API calls are counted.
    const observability = await startBotObservability(config, services, { undo, logger });
    const adapters = await startChatAdapters({
      config,
      services,
      logger: root,
      undo,
      metrics: observability?.metrics,
    });
    for (const adapter of adapters) logger.info({ platform: adapter.platform }, adapter.description);
    if (adapters.length === 0)
      logger.info('no chat tokens set (DISCORD_TOKEN, SLACK_BOT_TOKEN): playground only');
    const playground = await startPlayground({
      jobs: services.jobs,
      indexJobs: services.indexJobs,
      blobs: services.blobs,
      presignedImages: config.blobs.s3?.presignedUrls === true,
      library: new Library(join(config.dataDir, 'library')),
      admin: { connection: services.connection, prefix: config.queuePrefix },
      logger: root.child({ name: 'bot:web' }),
      port: config.port,
      host: config.host,
      password: config.playgroundPassword,
    });
    undo.push('playground', () => playground.close());
    logger.info({ url: playground.url }, 'playground listening');
  });
  onShutdown([() => undo.release()], logger);
}

runMain('bot', main);
