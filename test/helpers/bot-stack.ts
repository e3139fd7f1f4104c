// The bot side and a real worker on the tiny models in one test process, for adapter tests: a
// private redis-server, the tiny models and a migrated PGlite (useTinyWorker), a worker serving every
// queue under a fresh prefix per test, and the core's services (createBotServices) on their own
// connection, as a bot process would have. `restartBot()` gives a second set of services, as a bot
// process restarted mid-job would.
import type { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { type BotServices, createBotServices } from '../../src/bots/core/services.js';
import { openBlobStore } from '../../src/shared/blobs/open-blob-store.js';
import type { BlobStore } from '../../src/shared/blobs.js';
import { loadConfig } from '../../src/shared/config.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import type { Logger } from '../../src/shared/logger.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createConnection, waitUntilReady } from '../../src/shared/queues.js';
import type { QuotaLimits } from '../../src/shared/quota.js';
import type { LoadModelsOptions } from '../../src/worker/runtime/models.js';
import { startWorker, type WorkerHandle } from '../../src/worker/runtime/start-worker.js';
import { deletePrefix, testPrefix, useRedis } from './redis.js';
import { useTinyWorker } from './tiny-worker.js';

export interface BotStackOptions {
  /** Per-user imagine limits. @defaultValue { concurrent: 2, perWindow: 30 } */
  imagineQuota?: QuotaLimits;
  /** Least time between two progress edits. @defaultValue 200 */
  throttleMs?: number;
  /** Safety presentation default. @defaultValue 'spoiler' */
  safetyMode?: 'off' | 'spoiler' | 'block';
  logger?: Logger;
  /**
   * More environment for the stack's config, e.g. s3.ts's `env()` for blobs in s3rver: the worker
   * and the bot services then open the same store (openBlobStore). @defaultValue none
   */
  env?: Record<string, string>;
  /**
   * Wraps the worker's blob store, e.g. to hold the generation after a preview is stored (the worker
   * awaits each put) until the bot has shown it. @defaultValue none
   */
  wrapWorkerBlobs?: (blobs: BlobStore) => BlobStore;
}

export interface BotStack {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly services: BotServices;
  readonly worker: WorkerHandle;
  /** Stops the current services (the bot process dies) and returns new ones on a new connection. */
  restartBot(): Promise<BotServices>;
}

/**
 * Registers the private Redis and tiny models for the file (`models`: e.g. a small default vocabulary,
 * since CLIP's full one costs the tiny models ~11 s to embed); call `start()` inside a test for a
 * fresh prefix, worker and services (stopped after that test).
 */
export function useBotStack(models: LoadModelsOptions = {}): {
  start(options?: BotStackOptions): Promise<BotStack>;
} {
  const redis = useRedis();
  const tiny = useTinyWorker(models);
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
      const config = loadConfig({
        QUEUE_PREFIX: prefix,
        SAFETY_MODE: options.safetyMode ?? 'spoiler',
        ...options.env,
      });
      const opened =
        config.blobs.s3 === undefined && options.wrapWorkerBlobs === undefined
          ? undefined
          : await openBlobStore(config, { connection: workerConnection, logger });
      if (opened) base.push('worker blobs', () => opened.close());
      const workerBlobs = opened && options.wrapWorkerBlobs ? options.wrapWorkerBlobs(opened) : opened;
      const worker = await startWorker({
        connection: workerConnection,
        prefix,
        models: tiny.models,
        db: tiny.db,
        stalledIntervalMs: 5000,
        logger,
        ...(workerBlobs ? { blobs: workerBlobs } : {}),
      });
      base.push('worker', () => worker.close({ graceMs: 0 }));
      const quota = {
        ...config.quota,
        imagine: options.imagineQuota ?? config.quota.imagine,
      };
      const startServices = async (): Promise<{ services: BotServices; undo: UndoStack }> => {
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
