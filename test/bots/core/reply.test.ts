// The run loop against real Redis and a real BullMQ worker (a scripted imagine processor), drawn on a
// fake ReplySurface that records every call: ack -> progress -> final exactly once, a final post that
// fails once, a bot restart mid-job, two processes re-attaching at once, cancel, quota, bad input.
import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobFollower } from '../../../src/bots/core/follow.js';
import { InflightIndex } from '../../../src/bots/core/inflight.js';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { JobRunner, type ReplySurface } from '../../../src/bots/core/reply.js';
import type { JobView } from '../../../src/bots/core/view.js';
import { CancelWatcher } from '../../../src/shared/cancel.js';
import { type ImagineJob, type ImagineResult, toJobError } from '../../../src/shared/jobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { QuotaLimiter } from '../../../src/shared/quota.js';
import { clearPrefix, testPrefix, useQueueConnections, useRedis } from '../../helpers/redis.js';

const redis = useRedis();
const connections = useQueueConnections(redis);
let producer: Redis;
let consumer: Redis;
let prefix: string;
const closers: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  producer = connections.producer;
  consumer = connections.consumer;
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await clearPrefix(producer, prefix);
});

const origin = { platform: 'discord', workspace: 'g1', channel: 'c1', user: 'alice' } as const;
const imagine = (extra: Partial<ImagineJob> = {}): ImagineJob => ({
  prompt: 'a watercolor teacher',
  seed: 7,
  origin,
  ...extra,
});
const result: ImagineResult = {
  finalBlob: 'p:blob:final',
  latentBlob: 'p:blob:state',
  seed: 7,
  steps: 10,
  params: { width: 64, height: 64, cutouts: 4, lr: 0.1, preset: 'draft' },
  lossFirst: 1.2,
  lossLast: 0.8,
  timings: { total: 1500 },
};

/** A process of the bot side: its own connection, JobClient and runner. */
async function botProcess(options: { quota?: boolean; throttleMs?: number; pollMs?: number } = {}) {
  const connection = await openConnection(redis.url);
  const jobs = new JobClient({
    connection,
    prefix,
    pollMs: options.pollMs ?? 50,
    ...(options.quota
      ? {
          quota: new QuotaLimiter({
            connection,
            prefix,
            budgets: { imagine: { concurrent: 1, perWindow: 10 }, light: { concurrent: 8, perWindow: 100 } },
          }),
        }
      : {}),
  });
  const inflight = new InflightIndex({ connection, prefix });
  const runner = new JobRunner({ jobs, inflight, throttleMs: options.throttleMs ?? 30, finalRetryMs: 20 });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    runner.close();
    await jobs.close();
    await connection.quit();
  };
  closers.push(close);
  return { jobs, inflight, runner, close };
}

/** A worker that runs `steps` steps of `stepMs`, reporting progress, cancellable; `gate` holds it before the last step. */
function startImagineWorker(options: { steps?: number; stepMs?: number; gate?: Promise<void> } = {}) {
  const watcher = new CancelWatcher({ connection: consumer, prefix });
  const steps = options.steps ?? 10;
  let started!: () => void;
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  const worker = new Worker(
    'imagine',
    async (job: Job, _token, signal) => {
      const handle = await watcher.watch(job.queueName, job.id!, signal);
      try {
        started();
        for (let step = 1; step <= steps; step++) {
          if (step === steps && options.gate) await options.gate;
          if (handle.signal.aborted) throw toJobError(handle.signal.reason);
          await new Promise((r) => setTimeout(r, options.stepMs ?? 10));
          await job.updateProgress({
            step,
            steps,
            loss: 1 / step,
            etaSeconds: steps - step,
            previewBlob: `p:blob:preview-${step}`,
          });
        }
        return result;
      } finally {
        handle.dispose();
      }
    },
    { connection: consumer, prefix, concurrency: 4, stalledInterval: 5000 },
  );
  worker.on('error', () => {});
  closers.push(async () => {
    await worker.close(true);
    await watcher.close();
  });
  return { worker, running };
}

type Call = { call: 'ack' | 'progress' | 'final' | 'fail'; view: JobView };

function recordingSurface(
  options: { failFinal?: number } = {},
): ReplySurface & { calls: Call[]; finals: () => number } {
  const calls: Call[] = [];
  let failuresLeft = options.failFinal ?? 0;
  return {
    calls,
    finals: () => calls.filter((c) => c.call === 'final').length,
    ack: (view) => void calls.push({ call: 'ack', view }),
    progress: (view) => void calls.push({ call: 'progress', view }),
    final: (view) => {
      calls.push({ call: 'final', view });
      if (failuresLeft > 0) {
        failuresLeft--;
        throw new Error('the platform answered 500');
      }
    },
    fail: (view) => void calls.push({ call: 'fail', view }),
  };
}

describe('JobRunner', () => {
  it('acks, shows progress with previews, then delivers the final result once', async () => {
    prefix = testPrefix();
    startImagineWorker({ steps: 12, stepMs: 15 });
    const bot = await botProcess();
    const surface = recordingSurface();
    const run = await bot.runner.submit('imagine', imagine(), surface, {
      reply: { channel: 'c1', message: 'm1' },
    });
    expect(run.jobId).toMatch(/^imagine:/);
    expect(await bot.inflight.list('discord', { user: 'alice' })).toHaveLength(1);
    expect(await run.done).toEqual({ state: 'done', jobId: run.jobId });

    expect(surface.calls[0]).toMatchObject({ call: 'ack', view: { state: 'queued', jobId: run.jobId } });
    const progress = surface.calls.filter((c) => c.call === 'progress').map((c) => c.view);
    const running = progress.filter((v) => v.state === 'running' && v.step !== undefined);
    expect(running.length).toBeGreaterThan(1);
    // Throttled, so not every one of the 12 steps is drawn, and steps only move forward.
    expect(running.length).toBeLessThan(12);
    const stepsSeen = running.map((v) => (v.state === 'running' ? v.step! : 0));
    expect([...stepsSeen].sort((a, b) => a - b)).toEqual(stepsSeen);
    expect(running.at(-1)).toMatchObject({ previewBlob: expect.stringMatching(/^p:blob:preview-/) });
    expect(surface.finals()).toBe(1);
    expect(surface.calls.at(-1)).toMatchObject({
      call: 'final',
      view: {
        state: 'done',
        imagine: { seed: 7, finalBlob: 'p:blob:final', latentBlob: 'p:blob:state', seconds: 1.5 },
      },
    });
    expect(surface.calls.filter((c) => c.call === 'fail')).toHaveLength(0);
    // Delivered: the in-flight entry is gone, the marker says posted.
    expect(await bot.inflight.list('discord')).toHaveLength(0);
    expect(await bot.jobs.markPosted(run.jobId!)).toBe(false);
  });

  it('posts once after a final post that failed once (the claim is given back and retried)', async () => {
    prefix = testPrefix();
    startImagineWorker({ steps: 3 });
    const bot = await botProcess();
    const surface = recordingSurface({ failFinal: 1 });
    const run = await bot.runner.submit('imagine', imagine(), surface);
    expect(await run.done).toEqual({ state: 'done', jobId: run.jobId });
    // Two attempts, the second succeeded; nothing else posted.
    expect(surface.finals()).toBe(2);
    expect(await bot.jobs.markPosted(run.jobId!)).toBe(false);
  });

  it('gives up after its attempts and leaves the job for the next process, which posts it', async () => {
    prefix = testPrefix();
    startImagineWorker({ steps: 2 });
    const bot = await botProcess();
    const broken = recordingSurface({ failFinal: 99 });
    const run = await bot.runner.submit('imagine', imagine(), broken);
    expect(await run.done).toEqual({ state: 'undelivered', jobId: run.jobId });
    expect(broken.finals()).toBe(3);
    await bot.close();

    const restarted = await botProcess();
    const surface = recordingSurface();
    const runs = await restarted.runner.reattach('discord', () => surface);
    expect(runs).toHaveLength(1);
    expect(await runs[0]!.done).toEqual({ state: 'done', jobId: run.jobId });
    expect(surface.finals()).toBe(1);
  });

  it('a bot restarted mid-job re-attaches from Redis and posts once, even with two processes re-attaching', async () => {
    prefix = testPrefix();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const { running } = startImagineWorker({ steps: 4, gate });
    const first = await botProcess();
    const before = recordingSurface();
    const run = await first.runner.submit('imagine', imagine(), before, {
      reply: { channel: 'c1', message: 'm9' },
    });
    await running;
    // The process dies mid-job: it stops following without delivering anything.
    await first.close();
    expect(before.finals()).toBe(0);

    const a = await botProcess();
    const b = await botProcess();
    const surfaceA = recordingSurface();
    const surfaceB = recordingSurface();
    const replies: unknown[] = [];
    const [runsA, runsB] = await Promise.all([
      a.runner.reattach('discord', (entry) => {
        replies.push(entry.reply);
        return surfaceA;
      }),
      b.runner.reattach('discord', () => surfaceB),
    ]);
    expect(replies).toEqual([{ channel: 'c1', message: 'm9' }]);
    expect(runsA.map((r) => r.jobId)).toEqual([run.jobId]);
    expect(runsB.map((r) => r.jobId)).toEqual([run.jobId]);
    open();
    const outcomes = (await Promise.all([runsA[0]!.done, runsB[0]!.done])).map((o) => o.state).sort();
    expect(outcomes).toEqual(['already_posted', 'done']);
    expect(surfaceA.finals() + surfaceB.finals()).toBe(1);
    expect(await a.inflight.list('discord')).toHaveLength(0);
  });

  it('cancels for the requester and a moderator, refuses anyone else', async () => {
    prefix = testPrefix();
    const { running } = startImagineWorker({ steps: 1000, stepMs: 10 });
    const bot = await botProcess();
    const surface = recordingSurface();
    const run = await bot.runner.submit('imagine', imagine(), surface);
    await running;
    await expect(
      bot.runner.cancel(run.jobId!, { platform: 'discord', user: 'mallory' }),
    ).rejects.toMatchObject({
      code: 'forbidden',
      details: { reason: 'not_your_job' },
    });
    // The same user id on another platform is someone else.
    await expect(bot.runner.cancel(run.jobId!, { platform: 'slack', user: 'alice' })).rejects.toMatchObject({
      code: 'forbidden',
    });
    expect(await bot.runner.cancel(run.jobId!, { platform: 'discord', user: 'alice' })).toBe('signalled');
    expect(await run.done).toMatchObject({ state: 'failed', code: 'cancelled' });
    expect(surface.calls.at(-1)).toMatchObject({
      call: 'fail',
      view: { cancelled: true, text: 'Cancelled.' },
    });
    expect(surface.finals()).toBe(0);

    const queued = await bot.runner.submit('imagine', imagine(), recordingSurface());
    await bot.runner.cancel(queued.jobId!, { platform: 'discord', user: 'mod', moderator: true });
    expect(await queued.done).toMatchObject({ state: 'failed', code: 'cancelled' });
    await expect(
      bot.runner.cancel('imagine:00000000-0000-0000-0000-000000000000', {
        platform: 'discord',
        user: 'alice',
      }),
    ).rejects.toMatchObject({ code: 'not_found' });
  });

  it('draws a quota refusal and a bad option as a sentence, with no job created', async () => {
    prefix = testPrefix();
    const bot = await botProcess({ quota: true });
    const first = await bot.runner.submit('imagine', imagine(), recordingSurface());
    expect(first.jobId).toBeDefined();
    const refused = recordingSurface();
    const second = await bot.runner.submit('imagine', imagine(), refused);
    expect(second.jobId).toBeUndefined();
    expect(await second.done).toEqual({ state: 'rejected', code: 'quota_exceeded' });
    expect(refused.calls).toEqual([
      {
        call: 'fail',
        view: expect.objectContaining({
          code: 'quota_exceeded',
          text: expect.stringMatching(/1 job running/),
        }),
      },
    ]);

    const bad = recordingSurface();
    const third = await bot.runner.submit(
      'imagine',
      imagine({ steps: 5000, origin: { ...origin, user: 'bob' } }),
      bad,
    );
    expect(await third.done).toEqual({ state: 'rejected', code: 'bad_input' });
    expect(bad.calls[0]?.view).toMatchObject({ state: 'failed', text: expect.stringMatching(/steps/) });
    expect(await bot.inflight.list('discord', { user: 'bob' })).toHaveLength(0);
  });
});

describe('JobClient.follow', () => {
  it('reads the job state at most about once per throttle interval while progress streams in', async () => {
    prefix = testPrefix();
    startImagineWorker({ steps: 100, stepMs: 3 });
    const bot = await botProcess({ pollMs: 5000 });
    const { jobId } = await bot.jobs.submit('imagine', imagine(), { userId: 'discord:g1:alice' });
    const started = Date.now();
    const following = bot.jobs.follow(jobId, () => {}, { throttleMs: 100 }) as JobFollower<'imagine'>;
    const final = await following.done;
    expect(final.state).toBe('completed');
    const seconds = (Date.now() - started) / 1000;
    // 100 progress events; reads: about one per 100 ms throttle plus a few for state changes.
    const bound = Math.ceil(seconds * 10) + 6;
    expect(following.reads).toBeLessThanOrEqual(bound);
    expect(following.reads).toBeLessThan(40);
  });
});
