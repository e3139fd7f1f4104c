import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobClient, type JobClientOptions, type JobStatus } from '../../../src/bots/core/job-client.js';
import { CancelWatcher } from '../../../src/shared/cancel.js';
import { CodedError, NotAnImageError } from '../../../src/shared/errors.js';
import {
  type ClassifyJob,
  type ClassifyResult,
  type ImagineResult,
  jobKinds,
  toJobError,
} from '../../../src/shared/jobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { QuotaLimiter } from '../../../src/shared/quota.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';

const redis = useRedis();
let producer: Redis;
let consumer: Redis;
let prefix: string;
const clients: JobClient[] = [];
const workers: Worker[] = [];
const watchers: CancelWatcher[] = [];

beforeAll(async () => {
  producer = await openConnection(redis.url);
  consumer = await openConnection(redis.url, 'worker');
});
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close(true)));
  await Promise.all(watchers.splice(0).map((w) => w.close()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const kind of jobKinds) {
    const queue = new Queue(kind, { connection: producer, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  await deletePrefix(producer, prefix);
});
afterAll(async () => {
  await producer.quit();
  await consumer.quit();
});

function newClient(options: Partial<JobClientOptions> = {}, connection = producer): JobClient {
  const client = new JobClient({ connection, prefix, throttleMs: 20, pollMs: 50, ...options });
  clients.push(client);
  return client;
}

function startWorker<D, R>(
  kind: string,
  processor: (job: import('bullmq').Job<D, R>, signal?: AbortSignal) => Promise<R>,
  concurrency = 1,
): Worker<D, R> {
  const worker = new Worker<D, R>(kind, (job, _token, signal) => processor(job, signal), {
    connection: consumer,
    prefix,
    concurrency,
    // Tests finish jobs in milliseconds: no need to wait for stalled checks.
    stalledInterval: 5000,
  });
  worker.on('error', () => {});
  workers.push(worker as unknown as Worker);
  return worker;
}

const image = () => `${prefix}:blob:00000000-0000-0000-0000-000000000001`;
const classifyData = (labels = ['cat', 'dog']): ClassifyJob => ({ image: image(), labels });
const echoLabels = async (job: { data: ClassifyJob }): Promise<ClassifyResult> => ({
  labels: (job.data.labels ?? []).map((label, i) => ({ label, prob: 1 / (i + 2) })),
});
const imagineResult: ImagineResult = {
  finalBlob: 'p:blob:final',
  seed: 42,
  steps: 20,
  params: { width: 64, height: 64, cutouts: 4, lr: 0.1, preset: 'draft' },
  lossFirst: 1.5,
  lossLast: 0.75,
  timings: { total: 12 },
};

function nextUpdate<T>(updates: T[], predicate: (u: T) => boolean): Promise<T> {
  return new Promise((resolve) => {
    const check = setInterval(() => {
      const found = updates.find(predicate);
      if (found) {
        clearInterval(check);
        resolve(found);
      }
    }, 5);
  });
}

describe('JobClient', () => {
  it('rejects invalid data before anything is enqueued', async () => {
    prefix = testPrefix();
    const client = newClient();
    await expect(
      client.submit('classify', { ...classifyData(), extra: true } as ClassifyJob, { userId: 'web:u' }),
    ).rejects.toMatchObject({ code: 'bad_input' });
    await expect(
      client.submit(
        'imagine',
        { prompt: 'x'.repeat(10_000), origin: { platform: 'web', user: 'u' } },
        { userId: 'u' },
      ),
    ).rejects.toMatchObject({ code: 'prompt_too_long' });
    const queue = new Queue('classify', { connection: producer, prefix });
    expect(await queue.count()).toBe(0);
    await queue.close();
  });

  it('reports queue positions, then follows a waiting job to its result', async () => {
    prefix = testPrefix();
    const client = newClient();
    const submitted = [];
    for (let i = 0; i < 3; i++)
      submitted.push(await client.submit('classify', classifyData([`l${i}`]), { userId: 'u' }));
    expect(submitted.map((s) => s.position)).toEqual([0, 1, 2]);
    expect(submitted[2]!.jobId).toMatch(/^classify:[0-9a-f-]{36}$/);
    const last = submitted[2]!.jobId;
    expect(await client.status(last)).toEqual({ state: 'waiting', position: 2 });

    const updates: JobStatus<'classify'>[] = [];
    const following = client.follow(last, (s) => {
      updates.push(s);
    });
    await nextUpdate(updates, (u) => u.state === 'waiting');
    expect(updates[0]).toEqual({ state: 'waiting', position: 2 });
    startWorker('classify', echoLabels);
    const final = await following.done;
    expect(final).toEqual({ state: 'completed', result: { labels: [{ label: 'l2', prob: 0.5 }] } });
    expect(updates.at(-1)).toEqual(final);
    // Positions only go down while it waits.
    const positions = updates.flatMap((u) => (u.state === 'waiting' ? [u.position] : []));
    expect([...positions].sort((a, b) => b - a)).toEqual(positions);
    expect(await client.result(submitted[0]!.jobId)).toEqual({ labels: [{ label: 'l0', prob: 0.5 }] });
  });

  it('counts prioritized jobs after the plain wait list, as BullMQ takes them', async () => {
    prefix = testPrefix();
    const client = newClient();
    const low = await client.submit('classify', classifyData(['plain']), { userId: 'u' });
    const high = await client.submit('classify', classifyData(['prioritized']), { userId: 'u', priority: 1 });
    const low2 = await client.submit('classify', classifyData(['plain2']), { userId: 'u' });
    expect([low.position, high.position, low2.position]).toEqual([0, 1, 1]);
    expect(await client.status(high.jobId)).toEqual({ state: 'waiting', position: 2 });
    const order: string[] = [];
    startWorker('classify', async (job: { data: ClassifyJob }) => {
      order.push(job.data.labels![0]!);
      return echoLabels(job);
    });
    await client.result(high.jobId);
    expect(order).toEqual(['plain', 'plain2', 'prioritized']);
  });

  it('applies per-queue priorities (1 first)', async () => {
    prefix = testPrefix();
    const client = newClient({ priorities: { classify: 5 } });
    const normal = await client.submit('classify', classifyData(['normal']), { userId: 'u' });
    const urgent = await client.submit('classify', classifyData(['urgent']), { userId: 'u', priority: 1 });
    const normal2 = await client.submit('classify', classifyData(['normal2']), { userId: 'u' });
    expect([normal.position, urgent.position, normal2.position]).toEqual([0, 0, 2]);
    const order: string[] = [];
    startWorker('classify', async (job: { data: ClassifyJob }) => {
      order.push(job.data.labels![0]!);
      return echoLabels(job);
    });
    await client.result(normal2.jobId);
    expect(order).toEqual(['urgent', 'normal', 'normal2']);
  });

  it('estimates the wait from recent job durations', async () => {
    prefix = testPrefix();
    const client = newClient();
    const worker = startWorker('classify', echoLabels);
    const first = await client.submit('classify', classifyData(), { userId: 'u' });
    await client.result(first.jobId);
    await worker.close();
    // Pretend the finished job took 4 s.
    const hash = `${prefix}:classify:${first.jobId.split(':')[1]}`;
    const finishedOn = Number(await producer.hget(hash, 'finishedOn'));
    await producer.hset(hash, 'processedOn', finishedOn - 4000);
    // A fresh client: durations are cached per client.
    const fresh = newClient();
    await fresh.submit('classify', classifyData(), { userId: 'u' });
    const second = await fresh.submit('classify', classifyData(), { userId: 'u' });
    // One job ahead and no worker running: its 4 s, then this one's 4 s.
    expect(await fresh.status(second.jobId)).toEqual({ state: 'waiting', position: 1, etaSeconds: 8 });
  });

  it('counts a running job from when it started: next behind one about to finish is not two durations away', async () => {
    prefix = testPrefix();
    const client = newClient();
    const quick = startWorker('classify', echoLabels);
    const first = await client.submit('classify', classifyData(), { userId: 'u' });
    await client.result(first.jobId);
    await quick.close();
    const hash = (ref: string) => `${prefix}:classify:${ref.split(':')[1]}`;
    const finishedOn = Number(await producer.hget(hash(first.jobId), 'finishedOn'));
    await producer.hset(hash(first.jobId), 'processedOn', finishedOn - 4000);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    startWorker('classify', async (job: { data: ClassifyJob }) => {
      started();
      await gate;
      return echoLabels(job);
    });
    const busy = await client.submit('classify', classifyData(), { userId: 'u' });
    await running;
    // The running job started 3 s ago (of 4 s on average): it frees its slot in about 1 s.
    await producer.hset(hash(busy.jobId), 'processedOn', Date.now() - 3000);
    const fresh = newClient();
    const next = await fresh.submit('classify', classifyData(), { userId: 'u' });
    const status = await fresh.status(next.jobId);
    release();
    expect(status).toMatchObject({ state: 'waiting', position: 0 });
    // About 1 s until it starts, then its own 4 s (was 8 s: a full duration for the running job).
    expect(status.state === 'waiting' && status.etaSeconds).toBe(5);
  });

  it('delivers imagine progress in order and the final result', async () => {
    prefix = testPrefix();
    const client = newClient({ throttleMs: 30 });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    startWorker('imagine', async (job) => {
      await job.updateProgress({ step: 1, steps: 20, loss: 2, etaSeconds: 19 });
      await released;
      for (let step = 2; step <= 20; step++) {
        await job.updateProgress({ step, steps: 20, loss: 2 / step, etaSeconds: 20 - step });
      }
      return imagineResult;
    });
    const { jobId } = await client.submit(
      'imagine',
      { prompt: 'a watercolor teacher', origin: { platform: 'web', user: 'u' } },
      { userId: 'web:u' },
    );
    const updates: JobStatus<'imagine'>[] = [];
    const following = client.follow(jobId, (s) => {
      updates.push(s);
    });
    const first = await nextUpdate(updates, (u) => u.state === 'active' && u.progress !== undefined);
    expect(first).toEqual({
      state: 'active',
      attemptsMade: 0,
      progress: { step: 1, steps: 20, loss: 2, etaSeconds: 19 },
    });
    release();
    const final = await following.done;
    expect(final).toEqual({ state: 'completed', result: imagineResult });
    const steps = updates.flatMap((u) => (u.state === 'active' && u.progress ? [u.progress.step] : []));
    expect(steps[0]).toBe(1);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!).toBeGreaterThan(steps[i - 1]!);
  });

  it('throws the coded error a job failed with, without retrying user mistakes', async () => {
    prefix = testPrefix();
    const client = newClient();
    let calls = 0;
    startWorker('classify', async () => {
      calls++;
      throw toJobError(new NotAnImageError('the upload is a PDF'));
    });
    const { jobId } = await client.submit('classify', classifyData(), { userId: 'u' });
    const error = await client.result(jobId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CodedError);
    expect(error).toMatchObject({ code: 'not_an_image', message: 'the upload is a PDF' });
    expect(calls).toBe(1);
  });

  it('retries transient failures with backoff', async () => {
    prefix = testPrefix();
    const client = newClient({
      jobOptions: { classify: { attempts: 3, backoff: { type: 'fixed', delay: 20 } } },
    });
    let calls = 0;
    startWorker('classify', async (job: { data: ClassifyJob }) => {
      calls++;
      if (calls === 1) throw toJobError(new Error('ECONNRESET'));
      return echoLabels(job);
    });
    const { jobId } = await client.submit('classify', classifyData(['x']), { userId: 'u' });
    expect(await client.result(jobId)).toEqual({ labels: [{ label: 'x', prob: 0.5 }] });
    expect(calls).toBe(2);
  });

  it('treats a result that breaks the schema as an internal failure', async () => {
    prefix = testPrefix();
    const client = newClient();
    startWorker('classify', async () => ({ labels: [{ label: 'cat', prob: 7 }] }));
    const { jobId } = await client.submit('classify', classifyData(), { userId: 'u' });
    await expect(client.result(jobId)).rejects.toMatchObject({ code: 'internal' });
  });

  it('cancels a running job from another process', async () => {
    prefix = testPrefix();
    const client = newClient();
    const watcher = new CancelWatcher({ connection: consumer, prefix });
    watchers.push(watcher);
    let steps = 0;
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    startWorker('imagine', async (job, signal) => {
      const handle = await watcher.watch(job.queueName, job.id!, signal);
      try {
        started();
        for (;;) {
          if (handle.signal.aborted) throw toJobError(handle.signal.reason);
          steps++;
          await new Promise((r) => setTimeout(r, 5));
        }
      } finally {
        handle.dispose();
      }
    });
    const { jobId } = await client.submit(
      'imagine',
      { prompt: 'forever', origin: { platform: 'discord', user: 'u' } },
      { userId: 'discord:u' },
    );
    await running;
    // A second client on its own connection: what a button handler in another process would use.
    const otherConnection = await openConnection(redis.url);
    try {
      const other = newClient({}, otherConnection);
      expect(await other.cancel(jobId)).toBe('signalled');
      await expect(client.result(jobId)).rejects.toMatchObject({ code: 'cancelled' });
      // Not retried: the job failed on its first attempt.
      const queue = new Queue('imagine', { connection: producer, prefix });
      const job = await queue.getJob(jobId.split(':')[1]!);
      expect(job?.attemptsMade).toBe(1);
      await queue.close();
      expect(steps).toBeGreaterThan(0);
      expect(await other.cancel(jobId)).toBe('finished');
      await other.close();
    } finally {
      await otherConnection.quit();
    }
  });

  it('removes a waiting job on cancel', async () => {
    prefix = testPrefix();
    const client = newClient();
    const { jobId } = await client.submit('classify', classifyData(), { userId: 'u' });
    const second = await client.submit('classify', classifyData(), { userId: 'u' });
    expect(second.position).toBe(1);
    expect(await client.cancel(jobId)).toBe('removed');
    expect(await client.status(jobId)).toMatchObject({ state: 'failed', error: { code: 'cancelled' } });
    await expect(client.result(jobId)).rejects.toMatchObject({ code: 'cancelled' });
    expect(await client.status(second.jobId)).toEqual({ state: 'waiting', position: 0 });
    expect(await client.cancel(jobId)).toBe('not_found');
  });

  it('reports unknown and malformed job ids as not_found', async () => {
    prefix = testPrefix();
    const client = newClient();
    await expect(client.result('search:00000000-0000-0000-0000-000000000000')).rejects.toMatchObject({
      code: 'not_found',
    });
    await expect(client.status('paint:1' as 'search:1')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('times out waiting for a result but leaves the job queued', async () => {
    prefix = testPrefix();
    const client = newClient();
    const { jobId } = await client.submit(
      'search',
      {
        query: 'red bicycle',
        platform: 'slack',
        workspace: 'T',
        channel: 'C',
        k: 5,
      },
      { userId: 'slack:u' },
    );
    await expect(client.result(jobId, { timeoutMs: 150 })).rejects.toMatchObject({ code: 'timeout' });
    expect((await client.status(jobId)).state).toBe('waiting');
  });

  it('refuses a submission over quota and accepts again once a job finished', async () => {
    prefix = testPrefix();
    const quota = new QuotaLimiter({
      connection: producer,
      prefix,
      budgets: { light: { concurrent: 1, perWindow: 10 } },
    });
    const client = newClient({ quota });
    const first = await client.submit('classify', classifyData(), { userId: 'slack:u' });
    const refused = await client
      .submit('classify', classifyData(), { userId: 'slack:u' })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'quota_exceeded',
      details: { budget: 'light', reason: 'concurrent', limit: 1 },
    });
    // Another user is unaffected.
    await client.submit('classify', classifyData(), { userId: 'slack:v' });
    startWorker('classify', echoLabels);
    await client.result(first.jobId);
    const again = await client.submit('classify', classifyData(), { userId: 'slack:u' });
    expect(await client.result(again.jobId)).toEqual(await echoLabels({ data: classifyData() }));
  });

  it('marks a job posted exactly once, across clients', async () => {
    prefix = testPrefix();
    const a = newClient();
    const otherConnection = await openConnection(redis.url);
    try {
      const b = newClient({}, otherConnection);
      const claims = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).markPosted('imagine:job-1')),
      );
      expect(claims.filter(Boolean).length).toBe(1);
      expect(await a.markPosted('imagine:job-1')).toBe(false);
      expect(await a.markPosted('imagine:job-2')).toBe(true);
      await a.unmarkPosted('imagine:job-1');
      expect(await b.markPosted('imagine:job-1')).toBe(true);
      const ttl = await producer.ttl(`${prefix}:posted:imagine:job-1`);
      expect(ttl).toBeGreaterThan(6 * 86_400);
      await b.close();
    } finally {
      await otherConnection.quit();
    }
  });
});
