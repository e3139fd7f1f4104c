// A private redis-server per test file (no mocks: BullMQ is Lua scripts), on a free port, without
// persistence and with noeviction like production. Files running in parallel each get their own.
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { type PrivateRedis, spawnRedis } from '../../src/app/redis-server.js';
import { jobKinds } from '../../src/shared/jobs.js';
import { openConnection } from '../../src/shared/queues.js';

/** The same private server `npm start` uses (free port, no persistence, noeviction). */
export type RedisServer = PrivateRedis;
export const startRedis = (): Promise<RedisServer> => spawnRedis();

/**
 * Registers beforeAll/afterAll for one private server in the calling test file. Read `.url` inside
 * tests or hooks (it is set once beforeAll has run).
 */
export function useRedis(): { readonly url: string } {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get url() {
      if (!server) throw new Error('redis not started yet: use the url inside a test or hook');
      return server.url;
    },
  };
}

/**
 * A prefix unique to one test, so queues and keys of different tests never meet. 37 characters (a
 * UUID without dashes), so it is also a valid QUEUE_PREFIX (at most 40) for worker processes.
 */
export function testPrefix(): string {
  return `test-${randomUUID().replaceAll('-', '')}`;
}

/** Deletes every key under a prefix (after obliterating queues, for blobs, quotas and markers). */
export async function deletePrefix(connection: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await connection.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (found.length > 0) await connection.unlink(...found);
  } while (cursor !== '0');
}

/** Obliterates every job queue under a prefix, then deletes its other keys (blobs, quotas, markers). */
export async function clearPrefix(connection: Redis, prefix: string): Promise<void> {
  for (const kind of jobKinds) {
    const queue = new Queue(kind, { connection, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  await deletePrefix(connection, prefix);
}

/**
 * A producer and a worker-role connection to the file's private Redis, opened beforeAll and closed
 * afterAll: what queue tests with in-process BullMQ workers share.
 */
export function useQueueConnections(redis: { readonly url: string }): {
  readonly producer: Redis;
  readonly consumer: Redis;
} {
  let producer: Redis | undefined;
  let consumer: Redis | undefined;
  beforeAll(async () => {
    producer = await openConnection(redis.url);
    consumer = await openConnection(redis.url, 'worker');
  });
  afterAll(async () => {
    await producer?.quit();
    await consumer?.quit();
  });
  return {
    get producer() {
      if (!producer) throw new Error('connections not open yet: use them inside a test or hook');
      return producer;
    },
    get consumer() {
      if (!consumer) throw new Error('connections not open yet: use them inside a test or hook');
      return consumer;
    },
  };
}
