// The memory guard on a private redis-server with a small maxmemory: above the high-water mark the
// bot refuses new jobs with the "busy" sentence (no job added, no quota spent), below it they go
// through; without the guard the same fullness makes BullMQ's own writes fail.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { BusyError, MemoryGuard, parseMemoryInfo } from '../../../src/bots/core/memory-guard.js';
import { renderError } from '../../../src/bots/core/render.js';
import { createBotServices } from '../../../src/bots/core/services.js';
import { failedView } from '../../../src/bots/core/view.js';
import { loadConfig } from '../../../src/shared/config.js';
import type { ClassifyJob } from '../../../src/shared/jobs.js';
import { UndoStack } from '../../../src/shared/lifecycle.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { openConnection } from '../../../src/shared/queues.js';
import { QuotaLimiter } from '../../../src/shared/quota.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';

const redis = useRedis();
let connection: Redis;
const prefix = testPrefix();
const clients: JobClient[] = [];

beforeAll(async () => {
  connection = await openConnection(redis.url);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await connection.config('SET', 'maxmemory', '0');
  const queue = new Queue('classify', { connection, prefix });
  await queue.obliterate({ force: true });
  await queue.close();
  await deletePrefix(connection, prefix);
});
afterAll(async () => {
  await connection.quit();
});

const job: ClassifyJob = { image: `${prefix}:blob:x`, origin: { platform: 'web', user: 'web:local' } };

async function usedMemory(): Promise<number> {
  return parseMemoryInfo(await connection.info('memory'))!.usedBytes;
}

/** Sets maxmemory to `headroom` bytes above what Redis uses now (a small private server). */
async function limitTo(headroom: number): Promise<number> {
  const max = (await usedMemory()) + headroom;
  await connection.config('SET', 'maxmemory', String(max));
  return max;
}

/** Writes filler under the prefix until used_memory passes `bytes` (or Redis refuses: full). */
async function fillTo(bytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  for (let i = 0; (await usedMemory()) < bytes; i++) {
    const full = await connection.set(`${prefix}:filler:${i}`, chunk).then(
      () => false,
      (e: unknown) => /OOM/.test(String(e)) || Promise.reject(e),
    );
    if (full) return;
  }
}

describe('MemoryGuard', () => {
  it('reads used_memory and maxmemory from INFO memory', async () => {
    expect(
      parseMemoryInfo('# Memory\r\nused_memory:1234\r\nused_memory_human:1.2K\r\nmaxmemory:0\r\n'),
    ).toEqual({
      usedBytes: 1234,
      maxBytes: 0,
    });
    expect(parseMemoryInfo('nothing here')).toBeUndefined();
    const max = await limitTo(8 * 1024 * 1024);
    expect((await new MemoryGuard({ connection }).reading())?.maxBytes).toBe(max);
  });

  it('refuses new jobs above the high-water mark with the busy sentence, and takes them again below it', async () => {
    const max = await limitTo(4 * 1024 * 1024);
    const guard = new MemoryGuard({ connection, highWater: 0.9, cacheMs: 0 });
    const quota = new QuotaLimiter({
      connection,
      prefix,
      budgets: { imagine: { concurrent: 2, perWindow: 30 }, light: { concurrent: 8, perWindow: 600 } },
    });
    const client = new JobClient({ connection, prefix, quota, admission: guard });
    clients.push(client);
    await client.submit('classify', job, { userId: 'web:local' });

    await fillTo(0.92 * max);
    const refused = await client.submit('classify', job, { userId: 'web:local' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BusyError);
    expect(refused).toMatchObject({
      code: 'unavailable',
      reason: 'busy',
      details: { retryAfterSeconds: 60, maxBytes: max },
    });
    const view = failedView(refused);
    expect(view.text).toBe('I am busy right now and cannot take new requests. Please try again in a minute.');
    expect(view.retryAfterSeconds).toBe(60);
    // Nothing was added and no quota spent: the first job only.
    const queue = new Queue('classify', { connection, prefix });
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    await queue.close();
    expect((await quota.usage('web:local', 'light')).inWindow).toBe(1);

    // Memory freed (finished jobs trimmed, blobs expired): jobs go through again.
    await deletePrefix(connection, `${prefix}:filler`);
    await client.submit('classify', job, { userId: 'web:local' });
    expect((await quota.usage('web:local', 'light')).inWindow).toBe(2);
  });

  it('is wired into the bot services: both job clients refuse at REDIS_MEMORY_HIGH_WATER', async () => {
    const undo = new UndoStack();
    const config = {
      ...loadConfig({ QUEUE_PREFIX: prefix, REDIS_MEMORY_HIGH_WATER: '50' }),
      redisUrl: redis.url,
    };
    const services = await createBotServices(config, { logger: silentLogger, undo, connection });
    try {
      const max = await limitTo(4 * 1024 * 1024);
      await services.jobs.submit('classify', job, { userId: 'web:local' });
      // 55% of maxmemory: under the default 90%, over this deployment's 50%.
      await fillTo(0.55 * max);
      await new Promise((r) => setTimeout(r, 1100)); // the guard's one-second reading
      for (const client of [services.jobs, services.indexJobs]) {
        await expect(client.submit('classify', job, { userId: 'web:local' })).rejects.toMatchObject({
          reason: 'busy',
        });
      }
    } finally {
      await undo.release();
    }
  });

  it('lets everything through without a maxmemory, or when Redis cannot be read', async () => {
    await connection.config('SET', 'maxmemory', '0');
    await expect(new MemoryGuard({ connection, cacheMs: 0 }).check()).resolves.toBeUndefined();
    const closed = await openConnection(redis.url);
    await closed.quit();
    await expect(new MemoryGuard({ connection: closed }).check()).resolves.toBeUndefined();
  });

  it('answers before Redis itself refuses: at maxmemory BullMQ cannot add the job at all', async () => {
    await fillTo((await usedMemory()) + 1024 * 1024);
    // Full: maxmemory below what is used (noeviction evicts nothing, it refuses writes).
    await connection.config('SET', 'maxmemory', String((await usedMemory()) - 256 * 1024));
    const unguarded = new JobClient({ connection, prefix });
    clients.push(unguarded);
    // noeviction at maxmemory: Redis answers OOM to the add, which JobClient reports as unreachable.
    const failed = await unguarded.submit('classify', job, { userId: 'web:local' }).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'unavailable' });
    expect(String((failed as Error).cause)).toMatch(/OOM/);
    expect(renderError(failed as BusyError)).toBe(
      'The image service is not reachable right now. Please try again in a minute.',
    );
  });
});
