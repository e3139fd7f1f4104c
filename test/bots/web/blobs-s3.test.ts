// The playground with its blobs in S3 (s3rver on loopback): images are served from the bucket, and
// with presignedImages the browser is sent to a presigned URL and fetches the bytes from the store
// itself; a store without such URLs (Redis) and a missing image answer as before.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { Library } from '../../../src/bots/web/library.js';
import { blobUrl, createPlayground, type Playground } from '../../../src/bots/web/server.js';
import { S3BlobStore } from '../../../src/shared/blobs/s3-blob-store.js';
import { type BlobStore, RedisBlobStore } from '../../../src/shared/blobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';
import { useS3 } from '../../helpers/s3.js';

const redis = useRedis();
const s3 = useS3();
const prefix = testPrefix();
let connection: Redis;
let jobs: JobClient;
let libraryDir: string;
let bucket: S3BlobStore;
const playgrounds: Playground[] = [];

beforeAll(async () => {
  connection = await openConnection(redis.url);
  jobs = new JobClient({ connection, prefix });
  libraryDir = await mkdtemp(join(tmpdir(), 'vqclip-lib-'));
  bucket = new S3BlobStore({ s3: s3.config({ keyPrefix: 'web' }), prefix });
});
afterAll(async () => {
  for (const p of playgrounds) await p.close();
  await jobs.close();
  await bucket.close();
  await deletePrefix(connection, prefix);
  await connection.quit();
  await rm(libraryDir, { recursive: true, force: true });
});

function playground(blobs: BlobStore, presignedImages: boolean): Playground {
  const p = createPlayground({
    jobs,
    blobs,
    library: new Library(libraryDir),
    admin: false,
    presignedImages,
  });
  playgrounds.push(p);
  return p;
}

describe('playground images from S3', () => {
  it('relays the bytes by default, and redirects to a presigned URL with presignedImages', async () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    const key = await bucket.put(png, { contentType: 'image/png' });

    const relayed = await playground(bucket, false).app.request(blobUrl(key));
    expect(relayed.status).toBe(200);
    expect(new Uint8Array(await relayed.arrayBuffer())).toEqual(png);

    const redirected = await playground(bucket, true).app.request(`${blobUrl(key)}?step=3`);
    expect(redirected.status).toBe(302);
    expect(redirected.headers.get('cache-control')).toBe('no-store');
    const location = redirected.headers.get('location')!;
    expect(location.startsWith(`${s3.endpoint}/`)).toBe(true);
    expect(location).toContain('X-Amz-Expires=600');
    // What the browser then does: fetch it from the store, without this process.
    const direct = await fetch(location);
    expect(direct.headers.get('content-type')).toBe('image/png');
    expect(new Uint8Array(await direct.arrayBuffer())).toEqual(png);

    // A missing image is a 404 either way, never a redirect to nothing.
    await bucket.delete(key);
    expect((await playground(bucket, true).app.request(blobUrl(key))).status).toBe(404);
  });

  it('serves Redis blobs itself even with presignedImages (Redis has no such URLs)', async () => {
    const blobs = new RedisBlobStore({ connection, prefix });
    const key = await blobs.put(new Uint8Array([5, 6]), { contentType: 'image/webp' });
    const res = await playground(blobs, true).app.request(blobUrl(key));
    expect(res.status).toBe(200);
    expect([...new Uint8Array(await res.arrayBuffer())]).toEqual([5, 6]);
  });
});
