// The database away for a moment. Postgres (DATABASE_URL; a real wire-protocol server, PGlite behind
// @electric-sql/pglite-socket, stopped and started again on its port): indexing jobs posted meanwhile
// fail as `unavailable`, are retried by BullMQ with backoff and all end up indexed; a search
// meanwhile fails in seconds with the image-index sentence. PGlite (in process, one statement at a
// time): a long statement holding it makes a search fail at its deadline instead of hanging, and an
// image indexed meanwhile is written once it is free.
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobRef } from '../../src/bots/core/job-status.js';
import { renderError } from '../../src/bots/core/render.js';
import { type BotServices, createBotServices } from '../../src/bots/core/services.js';
import { loadConfig } from '../../src/shared/config.js';
import { type Database, openDatabase } from '../../src/shared/db/index.js';
import { asCodedError, type CodedError } from '../../src/shared/errors.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createConnection, waitUntilReady } from '../../src/shared/queues.js';
import { MemoryBlobs } from '../../src/worker/processors/blobs.js';
import { runEmbedImage } from '../../src/worker/processors/embed-image.js';
import { runSearch } from '../../src/worker/processors/search.js';
import { startWorker, type WorkerHandle } from '../../src/worker/runtime/start-worker.js';
import { testPrefix, useRedis } from '../helpers/redis.js';
import { useTinyWorker } from '../helpers/tiny-worker.js';
import { noisePng, seedDataDir, tempDir } from '../helpers/worker-process.js';

const redis = useRedis();
const tiny = useTinyWorker({
  classifier: { defaultLabels: ['cat', 'dog'], defaultTemplates: ['a photo of a {}.'] },
});
const scope = { platform: 'slack', workspace: 'T1', channel: 'C1' } as const;

async function rejection(promise: Promise<unknown>): Promise<CodedError> {
  try {
    await promise;
  } catch (error) {
    return asCodedError(error);
  }
  throw new Error('expected a rejection');
}

describe('Postgres away for a moment', () => {
  let pglite: PGlite;
  let server: PGLiteSocketServer;
  let port: number;
  let db: Database;
  const undo = new UndoStack(silentLogger);

  const serve = async (p: number) => {
    server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: p, maxConnections: 16 });
    await server.start();
    return Number(server.getServerConn().split(':').at(-1));
  };

  let pgliteDir: { path: string; remove: () => Promise<void> } | undefined;

  beforeAll(async () => {
    // The server's database from the migrated template (saves PGlite's initdb, 5+ s).
    pgliteDir = await tempDir('outage-pg');
    await seedDataDir(pgliteDir.path, tiny.models.embeddingDim);
    pglite = await PGlite.create({ dataDir: join(pgliteDir.path, 'pglite'), extensions: { vector } });
    port = await serve(0);
    db = await openDatabase(
      { databaseUrl: `postgres://postgres:postgres@127.0.0.1:${port}/postgres` },
      { embeddingDim: tiny.models.embeddingDim, embeddingModel: tiny.models.embeddingModel },
    );
  });
  afterAll(async () => {
    await undo.release();
    await db?.close();
    await server?.stop();
    await pglite?.close();
    await pgliteDir?.remove();
  });

  async function stack(): Promise<{ services: BotServices; worker: WorkerHandle }> {
    const prefix = testPrefix();
    const connection: Redis = createConnection(redis.url, 'worker');
    connection.on('error', () => {});
    undo.push('worker connection', () => connection.quit());
    await waitUntilReady(connection);
    const worker = await startWorker({
      connection,
      prefix,
      models: tiny.models,
      db,
      queues: ['embed-image', 'search'],
      logger: silentLogger,
    });
    undo.push('worker', () => worker.close({ graceMs: 0 }));
    const services = await createBotServices(
      { ...loadConfig({ QUEUE_PREFIX: prefix }), redisUrl: redis.url },
      { logger: silentLogger, undo },
    );
    return { services, worker };
  }

  it('retries indexing with backoff until it is back, and fails searches meanwhile with a sentence', async () => {
    const { services } = await stack();
    const images = await Promise.all(
      [1, 2, 3, 4, 5].map(async (seed) =>
        services.blobs.put(await noisePng(24, 24, seed), { contentType: 'image/png' }),
      ),
    );
    await server.stop();
    const down = performance.now();
    const submitted: JobRef<'embed-image'>[] = [];
    for (const [i, image] of images.entries()) {
      const { jobId } = await services.indexJobs.submit(
        'embed-image',
        { image, ...scope, message: `m${i}`, file: `f${i}` },
        { userId: 'slack:T1' },
      );
      submitted.push(jobId);
    }
    // A search while it is away: the job's own retries, then the sentence, within seconds.
    const searchError = await rejection(
      services.jobs.run(
        'search',
        { query: 'a cat', k: 3, ...scope },
        { userId: 'slack:U1', timeoutMs: 30_000 },
      ),
    );
    const searchSeconds = (performance.now() - down) / 1000;
    expect(searchError.code).toBe('unavailable');
    expect(searchError.details).toMatchObject({ service: 'database' });
    expect(renderError(searchError)).toBe(
      'The image index is not reachable right now. Please try again in a minute.',
    );
    expect(searchSeconds).toBeLessThan(20);
    // Back after a few seconds, on the same address.
    await new Promise((r) => setTimeout(r, Math.max(0, 4_000 - (performance.now() - down))));
    await serve(port);

    const results = await Promise.all(
      submitted.map((id) => services.indexJobs.result(id, { timeoutMs: 60_000 })),
    );
    expect(results.map((r) => r.duplicate)).toEqual([false, false, false, false, false]);
    expect(await db.countImages(scope)).toBe(5);
    // They were retried (not lucky): every job needed more than one attempt.
    const { Queue } = await import('bullmq');
    const queue = new Queue('embed-image', { connection: services.connection, prefix: services.prefix });
    const attempts = await Promise.all(
      submitted.map(async (id) => (await queue.getJob(id.slice('embed-image:'.length)))?.attemptsMade ?? 0),
    );
    await queue.close();
    expect(Math.min(...attempts)).toBeGreaterThan(1);
    // And searches answer again.
    const found = await services.jobs.run(
      'search',
      { query: 'a cat', k: 3, ...scope },
      { userId: 'slack:U1' },
    );
    expect(found.hits.length).toBeGreaterThan(0);
  }, 90_000);
});

describe('PGlite busy with a long statement', () => {
  afterEach(async () => {
    await tiny.db.driver.exec('DELETE FROM images');
  });

  it('fails a search at its deadline instead of hanging, and indexes an image posted meanwhile', async () => {
    const blobs = new MemoryBlobs();
    const image = await blobs.put(await noisePng(24, 24, 9), { contentType: 'image/png' });
    // PGlite has one session: a transaction open for 3 s (a long import, a migration) holds every
    // other statement. (A single long statement would block the event loop itself: PGlite's WASM
    // runs on this thread, so no deadline in this process could fire before it ends.)
    const busy = tiny.db.driver.transaction(async (tx) => {
      await tx.query('SELECT 1');
      await new Promise((r) => setTimeout(r, 3_000));
    });
    const t0 = performance.now();
    const searchError = await rejection(
      runSearch(tiny.models, { query: 'a cat', k: 3, ...scope }, { db: tiny.db, dbDeadlineMs: 500 }),
    );
    const waited = performance.now() - t0;
    expect(searchError.code).toBe('unavailable');
    expect(renderError(searchError)).toMatch(/image index is not reachable/);
    expect(waited).toBeLessThan(2_500);
    const indexed = await runEmbedImage(
      tiny.models,
      { image, ...scope, message: 'm1', file: 'f1' },
      { blobs, db: tiny.db },
    );
    await busy;
    expect(performance.now() - t0).toBeGreaterThan(2_900);
    expect(indexed.duplicate).toBe(false);
    expect(await tiny.db.countImages(scope)).toBe(1);
  }, 30_000);
});
