// useBotStack (test/helpers/bot-stack.ts) with a small default vocabulary: "What is this?" has no
// labels option, and CLIP's full vocabulary (>1000 labels x 80 templates) costs the tiny models
// ~11 s of one core. Same parts otherwise; it can go once useBotStack takes model options.
import type { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { createBotServices } from '../../../src/bots/core/services.js';
import { loadConfig } from '../../../src/shared/config.js';
import { UndoStack } from '../../../src/shared/lifecycle.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { createConnection, waitUntilReady } from '../../../src/shared/queues.js';
import { startWorker } from '../../../src/worker/runtime/start-worker.js';
import type { BotStack, BotStackOptions } from '../../helpers/bot-stack.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';

const VOCABULARY = ['cat', 'dog', 'bird', 'car', 'tree', 'house', 'person', 'boat', 'flower', 'mountain'];

export function useDiscordStack(): { start(options?: BotStackOptions): Promise<BotStack> } {
  const redis = useRedis();
  const tiny = useTinyWorker({
    classifier: { defaultLabels: VOCABULARY, defaultTemplates: ['a photo of a {}.', 'a picture of a {}.'] },
  });
  const undos: UndoStack[] = [];
  afterEach(async () => {
    for (const undo of undos.splice(0).reverse()) await undo.release();
  });
  return {
    async start(options: BotStackOptions = {}) {
      const prefix = testPrefix();
      const logger = options.logger ?? silentLogger;
      const base = new UndoStack(logger);
      undos.push(base);
      const workerConnection: Redis = createConnection(redis.url, 'worker');
      workerConnection.on('error', () => {});
      base.push('worker connection', () => workerConnection.quit());
      await waitUntilReady(workerConnection);
      base.push('keys', () => deletePrefix(workerConnection, prefix));
      const worker = await startWorker({
        connection: workerConnection,
        prefix,
        models: tiny.models,
        db: tiny.db,
        stalledIntervalMs: 5000,
        logger,
      });
      base.push('worker', () => worker.close({ graceMs: 0 }));
      const config = loadConfig({ QUEUE_PREFIX: prefix, SAFETY_MODE: options.safetyMode ?? 'spoiler' });
      const quota = { ...config.quota, imagine: options.imagineQuota ?? config.quota.imagine };
      const startServices = async () => {
        const undo = new UndoStack(logger);
        undos.push(undo);
        const services = await createBotServices(
          { ...config, quota, redisUrl: redis.url },
          { logger, undo, throttleMs: options.throttleMs ?? 200 },
        );
        return { services, undo };
      };
      let current = await startServices();
      return {
        redisUrl: redis.url,
        prefix,
        worker,
        get services() {
          return current.services;
        },
        async restartBot() {
          await current.undo.release();
          current = await startServices();
          return current.services;
        },
      };
    },
  };
}
