// startWorker in this process against a real Redis: transient failures retried with backoff while bad
// input fails at once, and close() that lets running jobs finish within the grace period or hands
// them back to the queue after it.
import { randomUUID } from 'node:crypto';
import { cp } from 'node:fs/promises';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient, type JobRef } from '../../../src/bots/core/job-client.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import { type Database, openDatabase } from '../../../src/shared/db/index.js';
import type { ImagineJob } from '../../../src/shared/jobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { loadModels, type WorkerModels } from '../../../src/worker/runtime/models.js';
import { startWorker, type WorkerHandle } from '../../../src/worker/runtime/start-worker.js';
import { useRedis } from '../../helpers/redis.js';
import { noisePng, pgliteTemplate, tempDir, writeTinyModels } from '../../helpers/worker-process.js';

const redis = useRedis();
let producer: Redis;
let consumer: Redis;
let models: WorkerModels;
let db: Database;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const modelsDir = await tempDir('models');
  const dataDir = await tempDir('data');
  cleanups.push(modelsDir.remove, dataDir.remove);
  writeTinyModels(modelsDir.path);
  models = await loadModels(modelsDir.path, { intraOpThreads: 1 });
  cleanups.push(() => models.close());
  await cp(await pgliteTemplate(models.embeddingDim), dataDir.path, { recursive: true });
  db = await openDatabase({ dataDir: dataDir.path }, { embeddingDim: models.embeddingDim });
  cleanups.push(() => db.close());
  producer = await openConnection(redis.url);
  consumer = await openConnection(redis.url, 'worker');
  cleanups.push(
    () => producer.quit(),
    () => consumer.quit(),
  );
});

afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

/** A fresh prefix, a client on it, and a way to start workers on it (closed after the test). */
async function setup() {
  const prefix = `sw-${randomUUID().slice(0, 12)}`;
  const client = new JobClient({ connection: producer, prefix, throttleMs: 0, pollMs: 50 });
  const handles: WorkerHandle[] = [];
  const start = async (database: Database = db) => {
    const handle = await startWorker({ connection: consumer, prefix, models, db: database });
    handles.push(handle);
    return handle;
  };
  cleanups.push(async () => {
    await Promise.all(handles.map((h) => h.close({ graceMs: 0 })));
    await client.close();
  });
  return { prefix, client, start, blobs: new RedisBlobStore({ connection: producer, prefix }) };
}

const imagine = (steps: number): ImagineJob => ({
  prompt: 'a quiet street',
  steps,
  size: { width: 64, height: 64 },
  cutouts: 1,
  seed: 11,
  origin: { platform: 'cli', user: 'me' },
});

async function jobOf(prefix: string, ref: JobRef): Promise<Job> {
  const [kind, id] = ref.split(':') as [string, string];
  const queue = new Queue(kind, { connection: producer, prefix });
  try {
    return (await queue.getJob(id)) as Job;
  } finally {
    await queue.close();
  }
}

function untilStep(client: JobClient, jobId: JobRef<'imagine'>, step: number): Promise<void> {
  return new Promise((resolve) => {
    const following = client.follow(jobId, (s) => {
      if (s.state === 'active' && (s.progress?.step ?? 0) >= step) {
        following.stop();
        resolve();
      }
    });
  });
}

describe('startWorker', () => {
  it('retries a transient failure with backoff, and fails bad input without retrying', async () => {
    const { prefix, client, start, blobs } = await setup();
    let calls = 0;
    // The database drops the first write, as a Postgres restart would.
    const flaky = new Proxy(db, {
      get(target, prop) {
        if (prop === 'upsertImage') {
          return (...args: Parameters<Database['upsertImage']>) => {
            calls++;
            if (calls === 1) return Promise.reject(new Error('read ECONNRESET'));
            return target.upsertImage(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const handle = await start(flaky);
    const queue = new Queue('embed-image', { connection: producer, prefix });
    const options = { attempts: 3, backoff: { type: 'fixed', delay: 50 } };
    const data = {
      image: await blobs.put(await noisePng(32, 32, 1), { contentType: 'image/png' }),
      platform: 'slack',
      workspace: 'T',
      channel: 'C',
      message: 'm',
      file: 'f',
    };
    const good = await queue.add('embed-image', data, options);
    const result = await client.result(`embed-image:${good.id}`, { timeoutMs: 30_000 });
    expect(result.duplicate).toBe(false);
    expect(calls).toBe(2);
    const done = await jobOf(prefix, `embed-image:${good.id}`);
    expect(done.attemptsMade).toBe(2);
    expect((done.stacktrace ?? []).join('\n')).toContain('ECONNRESET');

    const bad = await queue.add('embed-image', { ...data, channel: '' }, options);
    await expect(client.result(`embed-image:${bad.id}`, { timeoutMs: 30_000 })).rejects.toMatchObject({
      code: 'bad_input',
    });
    expect((await jobOf(prefix, `embed-image:${bad.id}`)).attemptsMade).toBe(1);
    expect(handle.stats.completed['embed-image']).toBe(1);
    expect(handle.stats.failed['embed-image']).toBe(2);
    await queue.close();
  });

  it('close() lets a running job finish within the grace period', async () => {
    const { client, start } = await setup();
    const handle = await start();
    const { jobId } = await client.submit('imagine', imagine(6), { userId: 'me' });
    await untilStep(client, jobId, 1);
    await handle.close({ graceMs: 60_000 });
    expect(await client.status(jobId)).toMatchObject({ state: 'completed', result: { steps: 6 } });
    expect(handle.stats.handedBack).toBe(0);
  });

  it('close() past the grace period hands the running job back; the next worker takes it up', async () => {
    const { prefix, client, start } = await setup();
    const first = await start();
    const { jobId } = await client.submit('imagine', imagine(400), { userId: 'me' });
    await untilStep(client, jobId, 1);
    await first.close({ graceMs: 0 });
    expect(first.stats.handedBack).toBe(1);
    expect(await client.status(jobId)).toMatchObject({ state: 'waiting', position: 0 });
    expect((await jobOf(prefix, jobId)).attemptsMade).toBe(0);
    // The next worker takes it up (then it is cancelled: 400 steps would only cost time).
    await start();
    await untilStep(client, jobId, 1);
    expect(await client.cancel(jobId)).toBe('signalled');
    await expect(client.result(jobId, { timeoutMs: 30_000 })).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('refuses queues it cannot serve and bad concurrency', async () => {
    const options = { connection: consumer, prefix: 'x', models };
    await expect(startWorker({ ...options, queues: ['search'] })).rejects.toThrow(/need a database/);
    await expect(
      startWorker({ ...options, queues: ['imagine'], concurrency: { imagine: 0 } }),
    ).rejects.toThrow(RangeError);
  });
});
