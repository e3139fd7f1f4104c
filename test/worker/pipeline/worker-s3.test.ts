// A worker process (src/worker/main.ts, tiny random models) configured with BLOB_STORE_URL and the AWS
// variables against s3rver on loopback: composeWorker opens the S3 store, an imagine job's input and
// results travel through the bucket, the worker's sweeper deletes expired objects, and a bucket that
// does not exist stops the worker at start-up with a sentence that says so.
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { S3BlobStore } from '../../../src/shared/blobs/s3-blob-store.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import { keys, openConnection } from '../../../src/shared/queues.js';
import { clearPrefix, testPrefix, useRedis } from '../../helpers/redis.js';
import { TEST_BUCKET, useS3 } from '../../helpers/s3.js';
import { tinyModelsDir } from '../../helpers/tiny-worker.js';
import {
  noisePng,
  pgliteTemplate,
  spawnWorker,
  TINY_EMBEDDING_DIM,
  tempDir,
  type WorkerProcess,
} from '../../helpers/worker-process.js';

const redis = useRedis();
const s3 = useS3();
const prefix = testPrefix();
let connection: Redis;
let client: JobClient;
let blobs: S3BlobStore;
let worker: WorkerProcess;
let modelsDir: string;
let dataRoot: string;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const models = await tinyModelsDir();
  const data = await tempDir('data');
  cleanups.push(models.remove, data.remove);
  modelsDir = models.path;
  dataRoot = data.path;
  worker = await spawnWorker({
    redisUrl: redis.url,
    prefix,
    modelsDir,
    dataDir: join(dataRoot, 'a'),
    dataTemplate: await pgliteTemplate(TINY_EMBEDDING_DIM),
    env: { ...s3.env('proc'), WORKER_QUEUES: 'imagine', BLOB_SWEEP_INTERVAL_SECONDS: '1' },
  });
  cleanups.push(() => worker.stop());
  connection = await openConnection(redis.url);
  cleanups.push(() => connection.quit());
  client = new JobClient({ connection, prefix, throttleMs: 0, pollMs: 100 });
  cleanups.push(() => client.close());
  blobs = new S3BlobStore({ s3: s3.config({ keyPrefix: 'proc' }), prefix });
  cleanups.push(() => blobs.close());
  cleanups.push(() => clearPrefix(connection, prefix));
}, 120_000);

afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

async function objects(): Promise<string[]> {
  const out = await blobs.client.send(
    new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: `proc/${keys.blobNamespace(prefix)}` }),
  );
  return (out.Contents ?? []).map((o) => o.Key!.slice('proc/'.length));
}

describe('a worker process with BLOB_STORE_URL=s3://', () => {
  it('opens the bucket, reads inputs from it and writes results to it', async () => {
    const opened = await worker.waitForLog((l) => l.msg === 'blobs are stored in S3');
    expect(opened).toMatchObject({ bucket: TEST_BUCKET, keyPrefix: 'proc', sweep: true });
    const init = await blobs.put(await noisePng(64, 64, 9), { contentType: 'image/png' });
    const { jobId } = await client.submit(
      'imagine',
      {
        prompt: 'a red door',
        steps: 3,
        size: { width: 64, height: 64 },
        cutouts: 1,
        initImage: init,
        origin: { platform: 'cli', user: 'me' },
      },
      { userId: 'me' },
    );
    const result = await client.result(jobId, { timeoutMs: 120_000 });
    expect(await probeImage((await blobs.get(result.finalBlob))!.bytes)).toMatchObject({
      width: 64,
      height: 64,
    });
    expect(await objects()).toEqual(expect.arrayContaining([init, result.finalBlob, result.latentBlob!]));
    expect(await connection.keys(`${keys.blobNamespace(prefix)}*`)).toEqual([]);
  });

  it("deletes expired objects with the worker's sweeper", async () => {
    const key = await blobs.put(new Uint8Array([1, 2]), { contentType: 'x/y', ttlSeconds: 1 });
    expect(await objects()).toContain(key);
    const deadline = Date.now() + 15_000;
    while ((await objects()).includes(key) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect(await objects()).not.toContain(key);
  });

  it('will not start against a bucket that does not exist, and says so', async () => {
    const failed = await spawnWorker({
      redisUrl: redis.url,
      prefix: testPrefix(),
      modelsDir,
      dataDir: join(dataRoot, 'b'),
      dataTemplate: await pgliteTemplate(TINY_EMBEDDING_DIM),
      env: { ...s3.env('x'), BLOB_STORE_URL: 's3://no-such-bucket/x' },
      readyTimeoutMs: 60_000,
    }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(String((failed as Error).message)).toMatch(/bucket "no-such-bucket" does not exist/);
  });
});
