import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/shared/logger.js';
import { checkEvictionPolicy, createConnection, openConnection } from '../../src/shared/queues.js';
import { useRedis } from '../helpers/redis.js';

const redis = useRedis();
let connection: Redis;
beforeAll(async () => {
  connection = await openConnection(redis.url);
});
afterAll(async () => {
  await connection.quit();
});

function collectingLogger(): Logger & { warnings: unknown[] } {
  const warnings: unknown[] = [];
  return { warnings, debug() {}, info() {}, error() {}, warn: (obj, msg) => warnings.push(msg ?? obj) };
}

describe('connections', () => {
  it('are configured as BullMQ requires', () => {
    const producer = createConnection(redis.url);
    const worker = createConnection(redis.url, 'worker');
    expect(producer.options.maxRetriesPerRequest).toBeNull();
    expect(producer.options.enableOfflineQueue).toBe(false);
    expect(worker.options.maxRetriesPerRequest).toBeNull();
    expect(worker.options.enableOfflineQueue).toBe(true);
    producer.disconnect();
    worker.disconnect();
  });

  it('checks the eviction policy and warns unless noeviction', async () => {
    const logger = collectingLogger();
    expect(await checkEvictionPolicy(connection, logger)).toBe('noeviction');
    expect(logger.warnings).toEqual([]);
    await connection.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      expect(await checkEvictionPolicy(connection, logger)).toBe('allkeys-lru');
      expect(logger.warnings).toEqual([expect.stringContaining('set maxmemory-policy noeviction')]);
    } finally {
      await connection.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });
});
