import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisBlobStore } from '../../src/shared/blobs.js';
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

function store(options: { ttlSeconds?: number; maxBytes?: number } = {}): RedisBlobStore {
  prefix = testPrefix();
  return new RedisBlobStore({ connection, prefix, ...options });
}

describe('RedisBlobStore', () => {
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

  it('replaces a named blob in place (one key, the newest bytes, the TTL renewed); no presigned URLs', async () => {
    const blobs = store();
    const a = await blobs.put(new Uint8Array([1]), {
      contentType: 'image/webp',
      name: 'preview:j1',
      ttlSeconds: 5,
    });
    const b = await blobs.put(new Uint8Array([2, 2]), {
      contentType: 'image/png',
      name: 'preview:j1',
      ttlSeconds: 60,
    });
    expect(b).toBe(a);
    expect(a).toBe(`${prefix}:blob:preview:j1`);
    expect(await blobs.get(a)).toEqual({ bytes: Buffer.from([2, 2]), contentType: 'image/png' });
    expect(await blobs.ttl(a)).toBeGreaterThan(50);
    const [, found] = await connection.scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 100);
    expect(found).toEqual([a]);
    await expect(blobs.put(new Uint8Array([1]), { contentType: 'x/y', name: 'a*b' })).rejects.toThrow(
      /blob name/,
    );
    expect(blobs.kind).toBe('redis');
    expect(await blobs.presignedUrl(a)).toBeUndefined();
  });

  it('refuses keys outside its namespace', async () => {
    const blobs = store();
    await connection.set(`${prefix}:secret`, 'x');
    await expect(blobs.get(`${prefix}:secret`)).rejects.toMatchObject({ code: 'bad_input' });
    await expect(blobs.delete('other:blob:1')).rejects.toMatchObject({ code: 'bad_input' });
    expect(await connection.get(`${prefix}:secret`)).toBe('x');
  });
});
