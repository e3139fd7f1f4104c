// openBlobStore: the configuration picks the backend (Redis by default, S3 for BLOB_STORE_URL=s3://),
// and a bucket that is missing stops the opening with the store's own sentence.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBlobStore } from '../../src/shared/blobs/open-blob-store.js';
import { loadConfig } from '../../src/shared/config.js';
import { openConnection } from '../../src/shared/queues.js';
import { deletePrefix, testPrefix, useRedis } from '../helpers/redis.js';
import { useS3 } from '../helpers/s3.js';

const redis = useRedis();
const s3 = useS3();
let connection: Redis;
const prefix = testPrefix();
beforeAll(async () => {
  connection = await openConnection(redis.url);
});
afterAll(async () => {
  await deletePrefix(connection, prefix);
  await connection.quit();
});

describe('openBlobStore', () => {
  it('opens Redis blobs without BLOB_STORE_URL, and an S3 bucket with one', async () => {
    const plain = await openBlobStore(loadConfig({ QUEUE_PREFIX: prefix }), { connection });
    expect(plain.kind).toBe('redis');
    const key = await plain.put(new Uint8Array([1]), { contentType: 'x/y' });
    expect(await connection.exists(key)).toBe(1);

    const config = loadConfig({ QUEUE_PREFIX: prefix, ...s3.env('open-test') });
    const bucket = await openBlobStore(config, { connection });
    try {
      expect(bucket.kind).toBe('s3');
      const inS3 = await bucket.put(new Uint8Array([2]), { contentType: 'x/y' });
      expect(await connection.exists(inS3)).toBe(0);
      expect([...(await bucket.get(inS3))!.bytes]).toEqual([2]);
    } finally {
      await bucket.close();
    }
  });

  it('refuses to open a bucket that does not exist, saying so', async () => {
    const config = loadConfig({
      QUEUE_PREFIX: prefix,
      ...s3.env('x'),
      BLOB_STORE_URL: 's3://not-made-yet/x',
    });
    await expect(openBlobStore(config, { connection })).rejects.toThrow(
      /bucket "not-made-yet" does not exist .*create it, or fix BLOB_STORE_URL/,
    );
  });
});
