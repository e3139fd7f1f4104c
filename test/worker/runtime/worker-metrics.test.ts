// A worker's /metrics and /healthz (WORKER_METRICS_PORT) as composeWorker serves them, read over HTTP
// while real jobs run through a real Redis on tiny models: queue depth, waits, durations, failures
// by code and busy time must agree with what BullMQ itself recorded about the same jobs.
import { cp } from 'node:fs/promises';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../src/app/redis-server.js';
import { JobClient, type JobRef } from '../../../src/bots/core/job-client.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import { loadConfig } from '../../../src/shared/config.js';
import { UndoStack } from '../../../src/shared/lifecycle.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { Metrics } from '../../../src/shared/metrics.js';
import { openConnection } from '../../../src/shared/queues.js';
import { type ComposedWorker, composeWorker } from '../../../src/worker/runtime/compose-worker.js';
import { loadModels } from '../../../src/worker/runtime/models.js';
import { startWorker } from '../../../src/worker/runtime/start-worker.js';
import { parseMetrics, sample } from '../../helpers/prometheus.js';
import { clearPrefix, testPrefix, useRedis } from '../../helpers/redis.js';
import { noisePng, pgliteTemplate, tempDir, writeTinyModels } from '../../helpers/worker-process.js';

const redis = useRedis();
const cleanups: (() => Promise<unknown>)[] = [];
let producer: Redis;
let modelsDir: string;
let dataDir: string;

beforeAll(async () => {
  const models = await tempDir('models');
  const data = await tempDir('data');
  cleanups.push(models.remove, data.remove);
  modelsDir = writeTinyModels(models.path);
  dataDir = data.path;
  await cp(await pgliteTemplate(16), dataDir, { recursive: true });
  producer = await openConnection(redis.url);
  cleanups.push(() => producer.quit());
});
afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

const root = Object.assign(silentLogger, { child: () => silentLogger });

async function scrape(url: string) {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(await res.text());
}

async function bullTimes(prefix: string, ref: JobRef) {
  const [kind, id] = ref.split(':') as [string, string];
  const queue = new Queue(kind, { connection: producer, prefix });
  try {
    const job = await queue.getJob(id);
    return { timestamp: job!.timestamp, processedOn: job!.processedOn!, finishedOn: job!.finishedOn! };
  } finally {
    await queue.close();
  }
}

describe('worker metrics', () => {
  it('counts real jobs as BullMQ recorded them, and answers /healthz from start-up on', {
    timeout: 120_000,
  }, async () => {
    const prefix = testPrefix();
    const port = await freePort();
    const config = loadConfig({
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      DATA_DIR: dataDir,
      MODELS_DIR: modelsDir,
      WORKER_METRICS_PORT: String(port),
      WORKER_QUEUES: 'imagine,classify',
      WORKER_IMAGINE_CONCURRENCY: '1',
      WORKER_CLASSIFY_CONCURRENCY: '4',
      WORKER_WARMUP: 'false',
      SAFETY_CHECK: 'off',
      ORT_INTRA_OP_THREADS: '1',
    });
    const client = new JobClient({ connection: producer, prefix, throttleMs: 0, pollMs: 50 });
    const blobs = new RedisBlobStore({ connection: producer, prefix, ttlSeconds: 600 });
    const origin = { platform: 'cli' as const, user: 'me' };
    cleanups.push(
      () => client.close(),
      () => clearPrefix(producer, prefix),
    );

    // Queued before any worker exists: their wait includes the whole start-up.
    const submittedAt = Date.now();
    const image = await blobs.put(await noisePng(32, 32, 3), { contentType: 'image/png' });
    const good = await Promise.all(
      [0, 1, 2, 3, 4].map(() =>
        client.submit('classify', { image, labels: ['cat', 'dog'], origin }, { userId: 'me' }),
      ),
    );
    const junk = await blobs.put(new TextEncoder().encode('not an image at all'), {
      contentType: 'image/png',
    });
    const bad = await client.submit(
      'classify',
      { image: junk, labels: ['cat', 'dog'], origin },
      { userId: 'me' },
    );

    const undo = new UndoStack(silentLogger);
    cleanups.push(() => undo.release());
    const url = `http://127.0.0.1:${port}`;
    const starting = composeWorker({ ...config, redisUrl: redis.url }, { root, logger: silentLogger, undo });
    // The listener is up before the models: a probe hears why it is not ready yet.
    const seen: string[] = [];
    let ready = false;
    void starting.then(() => {
      ready = true;
    });
    while (!ready) {
      const res = await fetch(`${url}/healthz`).catch(() => undefined);
      if (res)
        seen.push(`${res.status} ${JSON.stringify(((await res.json()) as { checks: unknown }).checks)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const worker: ComposedWorker = await starting;
    expect(worker.metricsUrl).toBe(url);
    expect(seen.some((s) => s.startsWith('503') && s.includes('"models":"loading"'))).toBe(true);
    const healthz = await fetch(`${url}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({
      status: 'ok',
      checks: { redis: 'ok', models: 'ok', database: 'ok' },
    });

    for (const { jobId } of good) await client.result(jobId, { timeoutMs: 60_000 });
    await expect(client.result(bad.jobId, { timeoutMs: 60_000 })).rejects.toMatchObject({
      code: 'not_an_image',
    });
    const doneAt = Date.now();

    // Two imagine jobs on concurrency 1: one runs, one waits, and busy time grows while it runs.
    const imagine = (seed: number) =>
      client.submit(
        'imagine',
        { prompt: 'a lighthouse', steps: 40, size: { width: 64, height: 64 }, cutouts: 1, seed, origin },
        { userId: `painter-${seed}` },
      );
    const first = await imagine(1);
    const second = await imagine(2);
    await new Promise<void>((resolve) => {
      const f = client.follow(first.jobId, (s) => {
        if (s.state === 'active' && (s.progress?.step ?? 0) >= 2) {
          f.stop();
          resolve();
        }
      });
    });
    const during = await scrape(url);
    expect(sample(during, 'vqclip_queue_jobs', { kind: 'imagine', state: 'active' })).toBe(1);
    expect(sample(during, 'vqclip_queue_jobs', { kind: 'imagine', state: 'waiting' })).toBe(1);
    expect(sample(during, 'vqclip_worker_active_jobs', { kind: 'imagine' })).toBe(1);
    expect(sample(during, 'vqclip_worker_concurrency', { kind: 'imagine' })).toBe(1);
    expect(sample(during, 'vqclip_worker_concurrency', { kind: 'classify' })).toBe(4);
    const busyBefore = sample(during, 'vqclip_worker_busy_seconds_total', { kind: 'imagine' });
    expect(busyBefore).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300));
    const later = await scrape(url);
    expect(sample(later, 'vqclip_worker_busy_seconds_total', { kind: 'imagine' })).toBeGreaterThan(
      busyBefore + 0.2,
    );
    await client.result(first.jobId, { timeoutMs: 60_000 });
    await client.result(second.jobId, { timeoutMs: 60_000 });

    const m = await scrape(url);
    const classify = { kind: 'classify' };
    expect(sample(m, 'vqclip_job_duration_seconds_count', { ...classify, outcome: 'completed' })).toBe(5);
    expect(sample(m, 'vqclip_job_duration_seconds_count', { ...classify, outcome: 'failed' })).toBe(1);
    expect(sample(m, 'vqclip_job_failures_total', { ...classify, code: 'not_an_image' })).toBe(1);
    expect(sample(m, 'vqclip_job_duration_seconds_count', { kind: 'imagine', outcome: 'completed' })).toBe(2);
    // Waits: every classify job waited through the worker's start-up and no longer than until done.
    const waits = sample(m, 'vqclip_job_wait_seconds_count', classify);
    expect(waits).toBe(6);
    const times = await Promise.all([...good, bad].map((j) => bullTimes(prefix, j.jobId)));
    const bullWait = times.reduce((s, t) => s + (t.processedOn - t.timestamp) / 1000, 0);
    expect(sample(m, 'vqclip_job_wait_seconds_sum', classify)).toBeCloseTo(bullWait, 2);
    for (const t of times) {
      expect(t.timestamp).toBeGreaterThanOrEqual(submittedAt - 5);
      expect(t.processedOn).toBeLessThanOrEqual(doneAt);
    }
    // The second imagine waited for the first to finish.
    const [a, b] = await Promise.all([bullTimes(prefix, first.jobId), bullTimes(prefix, second.jobId)]);
    expect(b.processedOn).toBeGreaterThanOrEqual(a.finishedOn - 50);
    expect(sample(m, 'vqclip_job_wait_seconds_sum', { kind: 'imagine' })).toBeCloseTo(
      (a.processedOn - a.timestamp + b.processedOn - b.timestamp) / 1000,
      2,
    );
    // Durations: inside BullMQ's processedOn..finishedOn of the same jobs.
    const bullRun = [a, b].reduce((s, t) => s + (t.finishedOn - t.processedOn) / 1000, 0);
    const ran = sample(m, 'vqclip_job_duration_seconds_sum', { kind: 'imagine', outcome: 'completed' });
    expect(ran).toBeLessThanOrEqual(bullRun + 0.01);
    expect(ran).toBeGreaterThan(bullRun * 0.8);
    // Busy time is the sum of the attempts' durations once nothing runs.
    const classifyRan =
      sample(m, 'vqclip_job_duration_seconds_sum', { ...classify, outcome: 'completed' }) +
      sample(m, 'vqclip_job_duration_seconds_sum', { ...classify, outcome: 'failed' });
    expect(sample(m, 'vqclip_worker_busy_seconds_total', classify)).toBeCloseTo(classifyRan, 6);
    expect(sample(m, 'vqclip_worker_busy_seconds_total', { kind: 'imagine' })).toBeCloseTo(ran, 6);
    expect(sample(m, 'vqclip_worker_active_jobs', { kind: 'imagine' })).toBe(0);
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'classify', state: 'failed' })).toBe(1);
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'imagine', state: 'waiting' })).toBe(0);
    expect(m.has('process_cpu_seconds_total')).toBe(true);

    await undo.release();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});

describe('worker metrics at shutdown', () => {
  it('counts a job handed back at shutdown as handed_back, not as a failure', {
    timeout: 120_000,
  }, async () => {
    const prefix = testPrefix();
    const models = await loadModels(modelsDir, { intraOpThreads: 1, stepMemoryBudgetBytes: 3 * 2 ** 30 });
    cleanups.push(() => models.close());
    // WORKER_STEP_MEMORY_MB's way to the step sessions (worker-settings.test.ts maps the variable).
    expect(models.stepCache.memoryBudgetBytes).toBe(3 * 2 ** 30);
    const consumer = await openConnection(redis.url, 'worker');
    cleanups.push(() => consumer.quit());
    const metrics = new Metrics({ processMetrics: false });
    const handle = await startWorker({ connection: consumer, prefix, models, queues: ['imagine'], metrics });
    const client = new JobClient({ connection: producer, prefix, throttleMs: 0, pollMs: 50 });
    cleanups.push(
      () => client.close(),
      () => clearPrefix(producer, prefix),
    );
    const { jobId } = await client.submit(
      'imagine',
      {
        prompt: 'a long road',
        steps: 500,
        size: { width: 64, height: 64 },
        cutouts: 1,
        seed: 5,
        origin: { platform: 'cli', user: 'me' },
      },
      { userId: 'me' },
    );
    await new Promise<void>((resolve) => {
      const f = client.follow(jobId, (s) => {
        if (s.state === 'active' && (s.progress?.step ?? 0) >= 2) {
          f.stop();
          resolve();
        }
      });
    });
    await handle.close({ graceMs: 0 });
    expect(handle.stats.handedBack).toBe(1);
    const m = parseMetrics(await metrics.text());
    const imagine = { kind: 'imagine' };
    expect(sample(m, 'vqclip_job_duration_seconds_count', { ...imagine, outcome: 'handed_back' })).toBe(1);
    expect(sample(m, 'vqclip_job_duration_seconds_count', { ...imagine, outcome: 'failed' })).toBeNaN();
    expect(m.has('vqclip_job_failures_total')).toBe(false);
    expect(sample(m, 'vqclip_worker_active_jobs', imagine)).toBe(0);
    expect(sample(m, 'vqclip_worker_busy_seconds_total', imagine)).toBeCloseTo(
      sample(m, 'vqclip_job_duration_seconds_sum', { ...imagine, outcome: 'handed_back' }),
      6,
    );
  });
});
