// Every job kind through real queues to a real worker process (node + tsx, tiny random models, its own
// PGlite), with the JobClient the bots use: results checked against the same models run here,
// micro-batching counted from the worker's logs, bad input failing with coded errors while the
// worker keeps serving, cancel from this process, queue positions and quotas.
import { join } from 'node:path';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient, type JobRef, type JobStatus } from '../../../src/bots/core/job-client.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import type { CodedError } from '../../../src/shared/errors.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import { type ImagineJob, type JobKind, jobKinds } from '../../../src/shared/jobs.js';
import { defaultJobOptions, openConnection } from '../../../src/shared/queues.js';
import { QuotaLimiter } from '../../../src/shared/quota.js';
import { Classifier } from '../../../src/worker/classify/classifier.js';
import { decodeState } from '../../../src/worker/generate/state.js';
import { testPrefix, useRedis } from '../../helpers/redis.js';
import { tinyModelsDir } from '../../helpers/tiny-worker.js';
import {
  noisePng,
  pgliteTemplate,
  pixelBombPng,
  spawnWorker,
  tempDir,
  truncatedPng,
  type WorkerProcess,
} from '../../helpers/worker-process.js';

const redis = useRedis();
const prefix = testPrefix();
let connection: Redis;
let client: JobClient;
let blobs: RedisBlobStore;
let worker: WorkerProcess;
let reference: Classifier;
const queues = new Map<JobKind, Queue>();
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const modelsDir = await tinyModelsDir();
  const dataDir = await tempDir('data');
  cleanups.push(modelsDir.remove, dataDir.remove);
  reference = await Classifier.load(join(modelsDir.path, 'clip'));
  cleanups.push(() => reference.close());
  worker = await spawnWorker({
    redisUrl: redis.url,
    prefix,
    modelsDir: modelsDir.path,
    dataDir: join(dataDir.path, 'data'),
    dataTemplate: await pgliteTemplate(reference.encoders.dim),
    // Generous, so that jobs enqueued together batch together even on a loaded machine.
    env: { WORKER_BATCH_WAIT_MS: '50' },
  });
  cleanups.push(() => worker.stop());
  connection = await openConnection(redis.url);
  cleanups.push(() => connection.quit());
  client = new JobClient({ connection, prefix, throttleMs: 0, pollMs: 100 });
  cleanups.push(() => client.close());
  blobs = new RedisBlobStore({ connection, prefix });
  for (const kind of jobKinds) queues.set(kind, new Queue(kind, { connection, prefix }));
  cleanups.push(() => Promise.all([...queues.values()].map((q) => q.close())));
});

afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

const putPng = async (bytes: Uint8Array) => blobs.put(bytes, { contentType: 'image/png' });
const origin = { platform: 'web', user: 'tester' } as const;
const imagine = (over: Partial<ImagineJob> = {}): ImagineJob => ({
  prompt: 'a lighthouse in a storm',
  steps: 3,
  size: { width: 64, height: 64 },
  cutouts: 1,
  seed: 3,
  origin,
  ...over,
});

/** Adds job data as an adapter of another version (or an attacker) might: no client-side validation. */
async function addRaw(kind: JobKind, data: unknown): Promise<JobRef> {
  const job = await queues.get(kind)!.add(kind, data, defaultJobOptions[kind]);
  return `${kind}:${job.id}`;
}

async function failure(jobId: JobRef): Promise<CodedError> {
  try {
    await client.result(jobId, { timeoutMs: 60_000 });
  } catch (error) {
    return error as CodedError;
  }
  throw new Error(`${jobId} completed`);
}

/** Resolves with the first status of a followed job that matches. */
function statusWhere<K extends JobKind>(
  jobId: JobRef<K>,
  predicate: (s: JobStatus<K>) => boolean,
): Promise<JobStatus<K>> {
  return new Promise((resolve) => {
    const following = client.follow(jobId, (s) => {
      if (predicate(s)) {
        following.stop();
        resolve(s);
      }
    });
  });
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

describe('round trip through the queues to a worker process', () => {
  it('classify: the same probabilities as the model run here, summing to 1', async () => {
    const bytes = await noisePng(48, 40, 21);
    const labels = ['cat', 'dog', 'lighthouse', 'bicycle'];
    const { jobId } = await client.submit(
      'classify',
      { image: await putPng(bytes), labels, topK: 4 },
      { userId: 'u1' },
    );
    const result = await client.result(jobId, { timeoutMs: 60_000 });
    const expected = await reference.classify(bytes, { labels, topK: 4 });
    expect(result.labels.map((l) => l.label)).toEqual(expected.predictions.map((p) => p.label));
    result.labels.forEach((l, i) => {
      expect(l.prob).toBeCloseTo(expected.predictions[i]!.probability, 5);
    });
    expect(result.labels.reduce((s, l) => s + l.prob, 0)).toBeCloseTo(1, 6);
  });

  it('embed-image then search: only the asking channel, in cosine order, scores as computed here', async () => {
    const a = { platform: 'slack', workspace: 'T1', channel: 'C-a' } as const;
    const b = { platform: 'slack', workspace: 'T1', channel: 'C-b' } as const;
    const images = await Promise.all([31, 32, 33].map((s) => noisePng(40, 40, s)));
    const ids: string[] = [];
    for (const [i, bytes] of images.entries()) {
      const { jobId } = await client.submit(
        'embed-image',
        { image: await putPng(bytes), ...a, message: `m${i}`, file: `f${i}` },
        { userId: 'u2' },
      );
      const r = await client.result(jobId, { timeoutMs: 60_000 });
      expect(r.duplicate).toBe(false);
      ids.push(r.imageId);
    }
    const inB = await client.result(
      (
        await client.submit(
          'embed-image',
          { image: await putPng(images[0]!), ...b, message: 'x', file: 'y' },
          { userId: 'u2' },
        )
      ).jobId,
    );
    const dup = await client.result(
      (
        await client.submit(
          'embed-image',
          { image: await putPng(images[2]!), ...a, message: 'm9', file: 'f9' },
          { userId: 'u2' },
        )
      ).jobId,
    );
    expect(dup).toEqual({ imageId: ids[2], duplicate: true, reindexed: false, flagged: false });

    const query = 'three noisy squares';
    const { jobId } = await client.submit('search', { query, ...a, k: 10 }, { userId: 'u2' });
    const { hits } = await client.result(jobId, { timeoutMs: 60_000 });
    const q = await reference.embedTexts([query]);
    const embeds = await reference.embedImages(images);
    const d = reference.encoders.dim;
    const expected = ids
      .map((id, i) => ({ id, score: dot(q, embeds.subarray(i * d, (i + 1) * d)) }))
      .sort((x, y) => y.score - x.score);
    expect(hits.map((h) => h.imageId)).toEqual(expected.map((e) => e.id));
    expect(hits.map((h) => h.imageId)).not.toContain(inB.imageId);
    hits.forEach((h, i) => {
      expect(h.score).toBeCloseTo(expected[i]!.score, 4);
    });
  });

  it('delete-image: only the channel of an image deletes it, twice is fine, search forgets it', async () => {
    const a = { platform: 'discord', workspace: 'G1', channel: 'del-a' } as const;
    const b = { ...a, channel: 'del-b' };
    const images = await Promise.all([61, 62].map((s) => noisePng(40, 40, s)));
    const ids: string[] = [];
    for (const [i, bytes] of images.entries()) {
      const { jobId } = await client.submit(
        'embed-image',
        { image: await putPng(bytes), ...a, message: `d${i}`, file: `g${i}` },
        { userId: 'u8' },
      );
      ids.push((await client.result(jobId, { timeoutMs: 60_000 })).imageId);
    }
    const search = async () => {
      const { jobId } = await client.submit('search', { query: 'noise', ...a, k: 10 }, { userId: 'u8' });
      return (await client.result(jobId, { timeoutMs: 60_000 })).hits.map((h) => h.imageId).sort();
    };
    const remove = (scope: { platform: 'discord'; workspace: string; channel: string }, imageId: string) =>
      client.deleteImage({ imageId, ...scope }, { userId: 'u8', timeoutMs: 60_000 });

    // Another channel (or workspace) knowing the id cannot delete it.
    expect(await remove(b, ids[0]!)).toEqual({ deleted: false, count: 0 });
    expect(await remove({ ...a, workspace: 'G2' }, ids[0]!)).toEqual({ deleted: false, count: 0 });
    expect(await search()).toEqual([...ids].sort());
    expect(await remove(a, ids[0]!)).toEqual({ deleted: true, count: 1 });
    expect(await remove(a, ids[0]!)).toEqual({ deleted: false, count: 0 });
    expect(await search()).toEqual([ids[1]]);
    // An id that never existed is not an error either.
    expect(await remove(a, '00000000-0000-4000-8000-000000000000')).toEqual({ deleted: false, count: 0 });
  });

  it('imagine: progress while running, then a PNG of the asked size and a state to continue from', async () => {
    const { jobId } = await client.submit('imagine', imagine(), { userId: 'u3' });
    const updates: JobStatus<'imagine'>[] = [];
    const following = client.follow(jobId, (s) => {
      updates.push(s);
    });
    const final = await following.done;
    expect(final.state).toBe('completed');
    const steps = updates.flatMap((u) => (u.state === 'active' && u.progress ? [u.progress.step] : []));
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((s, i) => s >= 1 && s <= 3 && (i === 0 || s >= steps[i - 1]!))).toBe(true);
    const result = await client.result(jobId);
    expect(result).toMatchObject({ seed: 3, steps: 3, params: { width: 64, height: 64, cutouts: 1 } });
    const png = await blobs.get(result.finalBlob);
    expect(await probeImage(png!.bytes)).toMatchObject({ format: 'png', width: 64, height: 64 });
    expect((await blobs.get(result.timelapseBlob!))?.contentType).toBe('image/webp');
    expect(decodeState((await blobs.get(result.latentBlob!))!.bytes).step).toBe(3);
  });

  it('micro-batching: classify jobs enqueued together share session runs', async () => {
    const n = 8;
    const bytes = await noisePng(32, 32, 41);
    const image = await putPng(bytes);
    const queue = queues.get('classify')!;
    const logsBefore = worker.logs.length;
    const jobs = await queue.addBulk(
      Array.from({ length: n }, (_, i) => ({
        name: 'classify',
        data: { image, labels: ['cat', 'dog', `thing ${i}`] },
        opts: defaultJobOptions.classify,
      })),
    );
    const results = await Promise.all(
      jobs.map((j) => client.result(`classify:${j.id}`, { timeoutMs: 60_000 })),
    );
    // The worker's log lines come over its stdout, which may lag behind the results in Redis.
    const imageBatches = () =>
      worker.logs
        .slice(logsBefore)
        .filter((l) => l.msg === 'image batch')
        .map((l) => l.batch as number);
    const deadline = Date.now() + 10_000;
    while (imageBatches().reduce((s, b) => s + b, 0) < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const batches = imageBatches();
    expect(batches.reduce((s, b) => s + b, 0)).toBe(n);
    expect(batches.length).toBeLessThan(n);
    // The same image scores the same against the shared labels in every job, whatever batch its
    // encode ran in. Each job's softmax also covers its own third label, so the probabilities compared
    // are cat's and dog's renormalised over the two: those only the image's embedding decides.
    const shared = results.map((r, i) => {
      expect(r.labels.map((l) => l.label).sort()).toEqual(['cat', 'dog', `thing ${i}`]);
      const p = (label: string) => r.labels.find((l) => l.label === label)!.prob;
      return [p('cat'), p('dog')].map((v) => v / (p('cat') + p('dog')));
    });
    for (const [i, s] of shared.entries()) {
      expect(s[0], `job ${i}: cat`).toBeCloseTo(shared[0]![0]!, 5);
      expect(s[1], `job ${i}: dog`).toBeCloseTo(shared[0]![1]!, 5);
    }
    // And they are the model's, as run here without batching.
    const alone = await reference.classify(bytes, { labels: ['cat', 'dog', 'thing 0'] });
    for (const l of results[0]!.labels) {
      expect(l.prob, l.label).toBeCloseTo(alone.predictions.find((p) => p.label === l.label)!.probability, 5);
    }
  });
});

describe('bad input through the pipeline', () => {
  it('fails each with a coded error at once (no retries), and the worker keeps serving', async () => {
    const labels = ['cat', 'dog'];
    const cases: [string, JobKind, unknown, string][] = [
      [
        'non-image bytes',
        'classify',
        {
          image: await blobs.put(new TextEncoder().encode('plain text'), { contentType: 'text/plain' }),
          labels,
        },
        'not_an_image',
      ],
      ['truncated image', 'classify', { image: await putPng(await truncatedPng()), labels }, 'not_an_image'],
      [
        'pixel bomb',
        'embed-image',
        {
          image: await putPng(pixelBombPng()),
          platform: 'slack',
          workspace: 'T',
          channel: 'C',
          message: 'm',
          file: 'f',
        },
        'image_too_large',
      ],
      ['10,000-char prompt', 'imagine', { ...imagine(), prompt: 'a'.repeat(10_000) }, 'prompt_too_long'],
      ['out-of-range steps', 'imagine', { ...imagine(), steps: 5000 }, 'bad_input'],
      ['out-of-range size', 'imagine', { ...imagine(), size: { width: 4096, height: 64 } }, 'bad_input'],
      [
        'unknown job field',
        'search',
        { query: 'x', platform: 'slack', workspace: 'T', channel: 'C', k: 3, sql: 'DROP TABLE images' },
        'bad_input',
      ],
      [
        'expired blob',
        'classify',
        { image: `${prefix}:blob:00000000-0000-4000-8000-000000000000`, labels },
        'blob_missing',
      ],
      ['foreign key', 'classify', { image: 'other:secret', labels }, 'bad_input'],
      [
        'image id not a uuid',
        'delete-image',
        { imageId: "1' OR '1'='1", platform: 'slack', workspace: 'T', channel: 'C' },
        'bad_input',
      ],
      [
        'delete without a channel',
        'delete-image',
        { imageId: '00000000-0000-4000-8000-000000000000', platform: 'slack', workspace: 'T' },
        'bad_input',
      ],
    ];
    const ids = await Promise.all(cases.map(([, kind, data]) => addRaw(kind, data)));
    const errors = await Promise.all(ids.map(failure));
    expect(errors.map((e) => e.code)).toEqual(cases.map((c) => c[3]));
    for (const e of errors) {
      expect(e.message.length).toBeGreaterThan(0);
      expect(e.message).not.toMatch(/\n\s+at /); // no stack traces for users
    }
    expect(errors[3]!.details).toMatchObject({ length: 10_000, max: 1000 });
    expect(JSON.stringify(errors[4]!.details)).toContain('steps');
    expect(JSON.stringify(errors[6]!.details)).toContain('sql');
    for (const ref of ids) {
      const [kind, id] = ref.split(':') as [JobKind, string];
      const job = (await queues.get(kind)!.getJob(id)) as Job;
      expect(job.attemptsMade).toBe(1); // unrecoverable: never retried
    }
    // Still serving.
    const { jobId } = await client.submit(
      'classify',
      { image: await putPng(await noisePng(32, 32, 51)), labels },
      { userId: 'u4' },
    );
    expect((await client.result(jobId, { timeoutMs: 60_000 })).labels).toHaveLength(2);
  });
});

describe('cancel, queue position and quotas', () => {
  it('reports positions while waiting; a cancel from another connection stops the running job', async () => {
    const long = imagine({ steps: 1000, seed: 5 });
    const running = await client.submit('imagine', long, { userId: 'u5' });
    const active = await statusWhere(
      running.jobId,
      (s) => s.state === 'active' && (s.progress?.step ?? 0) >= 2,
    );
    const second = await client.submit('imagine', long, { userId: 'u5' });
    const third = await client.submit('imagine', long, { userId: 'u5' });
    expect([second.position, third.position]).toEqual([0, 1]);
    expect(await client.status(third.jobId)).toMatchObject({ state: 'waiting', position: 1 });

    // Another process: its own connection and client.
    const other = await openConnection(redis.url);
    const otherClient = new JobClient({ connection: other, prefix });
    try {
      expect(await otherClient.cancel(second.jobId)).toBe('removed');
      expect(await client.status(third.jobId)).toMatchObject({ state: 'waiting', position: 0 });
      expect(await otherClient.cancel(running.jobId)).toBe('signalled');
      const error = await failure(running.jobId);
      expect(error.code).toBe('cancelled');
      const job = (await queues.get('imagine')!.getJob(running.jobId.split(':')[1]!)) as Job;
      const lastStep = (job.progress as { step: number }).step;
      expect(lastStep).toBeGreaterThanOrEqual(active.state === 'active' ? (active.progress?.step ?? 0) : 0);
      expect(lastStep).toBeLessThan(1000);
      expect(job.attemptsMade).toBe(1); // a cancel is not retried
      // The third starts once the first is gone; cancel it too.
      await statusWhere(third.jobId, (s) => s.state === 'active');
      expect(await otherClient.cancel(third.jobId)).toBe('signalled');
      expect((await failure(third.jobId)).code).toBe('cancelled');
      expect((await failure(second.jobId)).code).toBe('cancelled');
    } finally {
      await otherClient.close();
      await other.quit();
    }
  });

  it('refuses a user over quota with a clear message, and accepts again once a job ends', async () => {
    const quota = new QuotaLimiter({
      connection,
      prefix,
      budgets: { imagine: { concurrent: 1, perWindow: 0 } },
    });
    const limited = new JobClient({ connection, prefix, quota, throttleMs: 0, pollMs: 100 });
    try {
      const first = await limited.submit('imagine', imagine({ steps: 1000 }), { userId: 'web:u6' });
      const refused = await limited
        .submit('imagine', imagine(), { userId: 'web:u6' })
        .then(() => undefined)
        .catch((e: CodedError) => e);
      expect(refused?.code).toBe('quota_exceeded');
      expect(refused?.message).toMatch(
        /concurrent quota of 1 reached; try again when one of the running jobs finishes/,
      );
      // Another user is not affected.
      const otherUser = await limited.submit('imagine', imagine(), { userId: 'web:u7' });
      expect(await limited.cancel(first.jobId)).not.toBe('not_found');
      expect((await failure(first.jobId)).code).toBe('cancelled');
      const again = await limited.submit('imagine', imagine({ steps: 1 }), { userId: 'web:u6' });
      expect((await limited.result(again.jobId, { timeoutMs: 60_000 })).steps).toBe(1);
      expect((await limited.result(otherUser.jobId, { timeoutMs: 60_000 })).steps).toBe(3);
    } finally {
      await limited.close();
    }
  });
});
