// The S3 blob store against a real S3-protocol server (s3rver on loopback) through the real AWS SDK:
// round trips, named blobs replacing each other, expiry by metadata and the sweeper, presigned URLs
// fetched over plain HTTP, deletion, and clear errors for a missing bucket, bad credentials and a
// dead endpoint.
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/app/redis-server.js';
import { S3BlobError, S3BlobStore, type S3BlobStoreOptions } from '../../src/shared/blobs/s3-blob-store.js';
import { testPrefix } from '../helpers/redis.js';
import { TEST_BUCKET, useS3 } from '../helpers/s3.js';

const s3 = useS3();
const opened: S3BlobStore[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
});

function store(options: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  const s = new S3BlobStore({ s3: s3.config(), prefix: testPrefix(), ...options });
  opened.push(s);
  return s;
}

async function objectsUnder(blobs: S3BlobStore, prefix: string): Promise<string[]> {
  const out = await blobs.client.send(new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

describe('S3BlobStore', () => {
  it('round-trips bytes with their content type under <keyPrefix>/<key>', async () => {
    const blobs = store();
    await blobs.check();
    const bytes = new Uint8Array(3000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) % 256;
    const view = new Uint8Array(bytes.buffer, 10, 2000);
    const key = await blobs.put(view, { contentType: 'image/png' });
    expect(blobs.owns(key)).toBe(true);
    const blob = await blobs.get(key);
    expect(blob?.contentType).toBe('image/png');
    expect(Buffer.compare(blob!.bytes, Buffer.from(view))).toBe(0);
    expect(await objectsUnder(blobs, 'blobs/')).toContain(`blobs/${key}`);
    expect(await blobs.get(`${key.slice(0, -4)}0000`)).toBeUndefined();
  });

  it('replaces a named blob in place: one object, the newest bytes', async () => {
    const blobs = store();
    const a = await blobs.put(new Uint8Array([1, 1]), { contentType: 'image/webp', name: 'preview:job-1' });
    const b = await blobs.put(new Uint8Array([2, 2, 2]), {
      contentType: 'image/webp',
      name: 'preview:job-1',
    });
    expect(b).toBe(a);
    expect([...(await blobs.get(a))!.bytes]).toEqual([2, 2, 2]);
    const namespace = a.slice(0, a.indexOf(':blob:') + ':blob:'.length);
    expect(await objectsUnder(blobs, `blobs/${namespace}`)).toEqual([`blobs/${a}`]);
  });

  it('expires by its metadata; the sweeper deletes expired objects and keeps live ones', async () => {
    let now = Date.now();
    const blobs = store({ now: () => now, ttlSeconds: 600 });
    const short = await blobs.put(new Uint8Array([1]), { contentType: 'x/y', ttlSeconds: 30 });
    const long = await blobs.put(new Uint8Array([2]), { contentType: 'x/y' });
    const ttl = await blobs.ttl(long);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);
    expect(await blobs.ttl(short)).toBeLessThanOrEqual(30);
    now += 31_000;
    // Expired: gone for readers at once, whether or not the sweeper has run.
    expect(await blobs.get(short)).toBeUndefined();
    expect(await blobs.ttl(short)).toBeUndefined();
    expect(await blobs.get(long)).toBeDefined();
    expect(await blobs.sweep()).toEqual({ checked: 2, deleted: 1 });
    const namespace = long.slice(0, long.indexOf(':blob:') + ':blob:'.length);
    expect(await objectsUnder(blobs, `blobs/${namespace}`)).toEqual([`blobs/${long}`]);
    now += 600_000;
    expect(await blobs.sweep()).toEqual({ checked: 1, deleted: 1 });
    expect(await objectsUnder(blobs, `blobs/${namespace}`)).toEqual([]);
  });

  it('sweeps on its own every sweepIntervalSeconds', async () => {
    const blobs = store({ s3: s3.config({ sweepIntervalSeconds: 1 }) });
    const key = await blobs.put(new Uint8Array([1]), { contentType: 'x/y', ttlSeconds: 1 });
    const namespace = key.slice(0, key.indexOf(':blob:') + ':blob:'.length);
    const deadline = Date.now() + 10_000;
    while ((await objectsUnder(blobs, `blobs/${namespace}`)).length > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(await objectsUnder(blobs, `blobs/${namespace}`)).toEqual([]);
  });

  it('presigns GET URLs that fetch the bytes without credentials, until they expire', async () => {
    const blobs = store();
    const key = await blobs.put(new Uint8Array([7, 8, 9]), { contentType: 'image/png' });
    const url = await blobs.presignedUrl(key, 60);
    expect(url).toMatch(new RegExp(`^${s3.endpoint}/${TEST_BUCKET}/blobs/`));
    expect(url).toContain('X-Amz-Signature=');
    const res = await fetch(url!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect([...new Uint8Array(await res.arrayBuffer())]).toEqual([7, 8, 9]);
    // (s3rver checks a presigned URL's key id and expiry, not its SigV4 signature, so a tampered
    // signature cannot be tested here; S3 and MinIO refuse it.)
    const brief = await blobs.presignedUrl(key, 1);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await fetch(brief!)).status).toBe(403);
    // No URL for a blob that is gone.
    await blobs.delete(key);
    expect(await blobs.presignedUrl(key)).toBeUndefined();
  });

  it('deletes, saying whether the blob existed; refuses keys outside its namespace and oversized blobs', async () => {
    const blobs = store({ maxBytes: 1024 });
    const key = await blobs.put(new Uint8Array([9]), { contentType: 'x/y' });
    expect(await blobs.delete(key)).toBe(true);
    expect(await blobs.get(key)).toBeUndefined();
    expect(await blobs.delete(key)).toBe(false);
    await expect(blobs.get('other:blob:1')).rejects.toMatchObject({ code: 'bad_input' });
    await expect(blobs.put(new Uint8Array(1025), { contentType: 'x/y' })).rejects.toMatchObject({
      code: 'blob_too_large',
    });
    await expect(blobs.put(new Uint8Array(1), { contentType: 'x/y', name: 'a/b' })).rejects.toThrow(
      /blob name/,
    );
  });

  it('says clearly when the bucket does not exist', async () => {
    const blobs = store({ s3: s3.config({ bucket: 'no-such-bucket' }) });
    const check = await blobs.check().catch((e: unknown) => e);
    expect(check).toBeInstanceOf(S3BlobError);
    expect(check).toMatchObject({ code: 'config_invalid', reason: 'no_such_bucket' });
    expect((check as Error).message).toMatch(/bucket "no-such-bucket" does not exist/);
    await expect(blobs.put(new Uint8Array([1]), { contentType: 'x/y' })).rejects.toMatchObject({
      reason: 'no_such_bucket',
    });
  });

  it('says clearly when the credentials are wrong', async () => {
    // An unknown access key. (s3rver does not verify SigV4 signatures, so a wrong secret with a known
    // key passes there; S3 and MinIO answer SignatureDoesNotMatch, which is mapped the same way.)
    for (const creds of [{ accessKeyId: 'NOBODY', secretAccessKey: 'S3RVER' }]) {
      const blobs = store({ s3: s3.config(creds) });
      const put = await blobs.put(new Uint8Array([1]), { contentType: 'x/y' }).catch((e: unknown) => e);
      expect(put).toMatchObject({ code: 'config_invalid', reason: 'bad_credentials' });
      expect((put as Error).message).toMatch(/refused the credentials .*AWS_ACCESS_KEY_ID/);
      await expect(blobs.check()).rejects.toMatchObject({ reason: 'bad_credentials' });
    }
  });

  it('says that a dead endpoint does not answer (unavailable: retried)', async () => {
    const port = await freePort();
    const blobs = store({ s3: s3.config({ endpoint: `http://127.0.0.1:${port}` }) });
    const error = await blobs.get(`${testPrefix()}:blob:x`).catch((e: unknown) => e);
    // A key of another prefix is refused before any request.
    expect(error).toMatchObject({ code: 'bad_input' });
    const put = await blobs.put(new Uint8Array([1]), { contentType: 'x/y' }).catch((e: unknown) => e);
    expect(put).toMatchObject({ code: 'unavailable', reason: 'unreachable' });
    expect((put as Error).message).toMatch(/did not answer/);
  });
});
