// The imagine pipeline with every blob in S3 (s3rver on loopback, the real AWS SDK) and the queues
// in a private Redis: a bot-side JobClient submits, a worker in this process (tiny random models)
// reads the init image from the bucket, overwrites one preview object while it runs, deletes it at
// the end and writes final, timelapse and saved state there; a continue reads that state back.
// Redis holds no blob at any point.
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { S3BlobStore } from '../../../src/shared/blobs/s3-blob-store.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import type { ImagineJob } from '../../../src/shared/jobs.js';
import { keys } from '../../../src/shared/queues.js';
import { startWorker, type WorkerHandle } from '../../../src/worker/runtime/start-worker.js';
import { clearPrefix, testPrefix, useQueueConnections, useRedis } from '../../helpers/redis.js';
import { TEST_BUCKET, useS3 } from '../../helpers/s3.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';
import { noisePng } from '../../helpers/worker-process.js';

const redis = useRedis();
const connections = useQueueConnections(redis);
const s3 = useS3();
const tiny = useTinyWorker();

const prefix = testPrefix();
let botBlobs: S3BlobStore;
let workerBlobs: S3BlobStore;
let worker: WorkerHandle;
let client: JobClient;

beforeAll(async () => {
  // Two stores on one bucket, as a bot and a worker on different machines would have.
  botBlobs = new S3BlobStore({ s3: s3.config({ keyPrefix: 'pipeline' }), prefix });
  workerBlobs = new S3BlobStore({ s3: s3.config({ keyPrefix: 'pipeline' }), prefix });
  worker = await startWorker({
    connection: connections.consumer,
    prefix,
    models: tiny.models,
    db: tiny.db,
    blobs: workerBlobs,
    queues: ['imagine'],
  });
  client = new JobClient({ connection: connections.producer, prefix, throttleMs: 0, pollMs: 50 });
});

afterAll(async () => {
  await worker?.close({ graceMs: 0 });
  await client?.close();
  await botBlobs?.close();
  await workerBlobs?.close();
  await clearPrefix(connections.producer, prefix);
});

async function objects(): Promise<string[]> {
  const out = await botBlobs.client.send(
    new ListObjectsV2Command({ Bucket: TEST_BUCKET, Prefix: `pipeline/${keys.blobNamespace(prefix)}` }),
  );
  return (out.Contents ?? []).map((o) => o.Key!.slice('pipeline/'.length));
}

async function redisBlobKeys(): Promise<string[]> {
  return connections.producer.keys(`${keys.blobNamespace(prefix)}*`);
}

const origin = { platform: 'web', user: 'web:local' } as const;

describe('imagine with blobs in S3', () => {
  it('reads its init image from the bucket, keeps one preview object while it runs, stores its results there', async () => {
    const init = await botBlobs.put(await noisePng(64, 64, 3), { contentType: 'image/png', ttlSeconds: 600 });
    const job: ImagineJob = {
      prompt: 'a harbour in fog',
      // A preview every 10 steps (the worker's default): three of them.
      steps: 40,
      size: { width: 64, height: 64 },
      cutouts: 1,
      seed: 5,
      initImage: init,
      origin,
    };
    const { jobId } = await client.submit('imagine', job, { userId: 'web:local' });
    const previews = new Set<string>();
    const previewSteps = new Set<number>();
    const samples: string[][] = [];
    const following = client.follow(jobId, (status) => {
      if (status.state !== 'active' || status.progress?.previewBlob === undefined) return;
      previews.add(status.progress.previewBlob);
      previewSteps.add(status.progress.previewStep ?? -1);
    });
    // Sample the bucket while the job runs: the init image plus at most one preview.
    const sampling = (async () => {
      while (previews.size === 0 || (await client.status(jobId)).state === 'active') {
        samples.push(await objects());
        await new Promise((r) => setTimeout(r, 20));
        if ((await client.status(jobId)).state === 'completed') break;
      }
    })();
    const result = await client.result(jobId, { timeoutMs: 120_000 });
    following.stop();
    await sampling;

    expect(previews.size).toBe(1);
    expect(previewSteps.size).toBeGreaterThan(1);
    // Apart from the init image and the results, the bucket held at most one object: the preview.
    const results = new Set([init, result.finalBlob, result.timelapseBlob, result.latentBlob]);
    expect(samples.length).toBeGreaterThan(5);
    expect(Math.max(...samples.map((names) => names.filter((n) => !results.has(n)).length))).toBe(1);
    const [preview] = [...previews];
    expect(await botBlobs.get(preview!)).toBeUndefined();
    // Final, timelapse and state in the bucket; the preview gone; nothing in Redis.
    expect(new Set(await objects())).toEqual(
      new Set([init, result.finalBlob, result.timelapseBlob!, result.latentBlob!]),
    );
    expect(await redisBlobKeys()).toEqual([]);
    const final = (await botBlobs.get(result.finalBlob))!;
    expect(final.contentType).toBe('image/png');
    expect(await probeImage(final.bytes)).toMatchObject({ format: 'png', width: 64, height: 64 });
    // A browser or chat platform can fetch it straight from the store.
    const url = await botBlobs.presignedUrl(result.finalBlob, 300);
    const fetched = new Uint8Array(await (await fetch(url!)).arrayBuffer());
    expect(Buffer.compare(Buffer.from(fetched), final.bytes)).toBe(0);

    // Continue: the saved state is read back from the bucket.
    const { initImage: _, ...plain } = job;
    const cont = await client.submit(
      'imagine',
      { ...plain, steps: 3, from: { state: result.latentBlob!, mode: 'continue', job: jobId } },
      { userId: 'web:local' },
    );
    const continued = await client.result(cont.jobId, { timeoutMs: 120_000 });
    expect(continued.steps).toBe(43);
    expect(await redisBlobKeys()).toEqual([]);
  });

  it('fails a job whose input is not in the bucket as blob_missing, leaving nothing behind', async () => {
    const before = await objects();
    const { jobId } = await client.submit(
      'imagine',
      {
        prompt: 'x',
        steps: 2,
        size: { width: 64, height: 64 },
        cutouts: 1,
        initImage: `${keys.blobNamespace(prefix)}00000000-0000-4000-8000-000000000000`,
        origin,
      },
      { userId: 'web:local' },
    );
    await expect(client.result(jobId, { timeoutMs: 60_000 })).rejects.toMatchObject({ code: 'blob_missing' });
    expect(await objects()).toEqual(before);
  });
});
