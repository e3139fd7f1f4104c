import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/shared/blobs.js';
import { openConnection } from '../../src/shared/queues.js';
import { deletePrefix, testPrefix, useRedis } from '../helpers/redis.js';

const redis = useRedis();
let connection: Redis;
let prefix: string;
beforeAll(async () => {
  connection = await openConnection(redis.url);
});
afterEach(async () => {
  await deletePrefix(connection, prefix);
});
afterAll(async () => {
  await connection.quit();
});

function store(options: { ttlSeconds?: number; maxBytes?: number } = {}): BlobStore {
  prefix = testPrefix();
  return new BlobStore({ connection, prefix, ...options });
}

describe('BlobStore', () => {
  it('round-trips bytes (all 256 values) with their content type', async () => {
    const blobs = store();
    const bytes = new Uint8Array(1000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) % 256;
    // A view into a larger buffer: only the view's bytes must be stored.
    const view = new Uint8Array(bytes.buffer, 10, 500);
    const key = await blobs.put(view, { contentType: 'image/png' });
    expect(key.startsWith(`${prefix}:blob:`)).toBe(true);
    const blob = await blobs.get(key);
    expect(blob?.contentType).toBe('image/png');
    expect(Buffer.compare(blob!.bytes, Buffer.from(view))).toBe(0);
    expect(blob!.bytes.length).toBe(500);
  });

  it('sets the default TTL or the one given', async () => {
    const blobs = store({ ttlSeconds: 600 });
    const a = await blobs.put(new Uint8Array([1]), { contentType: 'application/octet-stream' });
    const b = await blobs.put(new Uint8Array([2]), { contentType: 'image/webp', ttlSeconds: 30 });
    const ttlA = await blobs.ttl(a);
    const ttlB = await blobs.ttl(b);
    expect(ttlA).toBeGreaterThan(590);
    expect(ttlA).toBeLessThanOrEqual(600);
    expect(ttlB).toBeGreaterThan(20);
    expect(ttlB).toBeLessThanOrEqual(30);
  });

  it('expires blobs', async () => {
    const blobs = store();
    const key = await blobs.put(new Uint8Array([1, 2, 3]), { contentType: 'x/y', ttlSeconds: 1 });
    expect(await blobs.get(key)).toBeDefined();
    await connection.pexpire(key, 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(await blobs.get(key)).toBeUndefined();
    expect(await blobs.ttl(key)).toBeUndefined();
  });

  it('deletes', async () => {
    const blobs = store();
    const key = await blobs.put(new Uint8Array([9]), { contentType: 'x/y' });
    expect(await blobs.delete(key)).toBe(true);
    expect(await blobs.get(key)).toBeUndefined();
    expect(await blobs.delete(key)).toBe(false);
  });

  it('refuses blobs over the size limit and stores nothing', async () => {
    const blobs = store({ maxBytes: 1024 });
    await expect(blobs.put(new Uint8Array(1025), { contentType: 'x/y' })).rejects.toMatchObject({
      code: 'blob_too_large',
      details: { bytes: 1025, maxBytes: 1024 },
    });
    await blobs.put(new Uint8Array(1024), { contentType: 'x/y' });
    const [, found] = await connection.scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 100);
    expect(found.length).toBe(1);
  });

  it('refuses keys outside its namespace', async () => {
    const blobs = store();
    await connection.set(`${prefix}:secret`, 'x');
    await expect(blobs.get(`${prefix}:secret`)).rejects.toMatchObject({ code: 'bad_input' });
    await expect(blobs.delete('other:blob:1')).rejects.toMatchObject({ code: 'bad_input' });
    expect(await connection.get(`${prefix}:secret`)).toBe('x');
  });
});
