// Redis killed with SIGKILL mid-load: the private redis-server of `npm start` (AOF in a folder, under
// its watchdog, which starts a killed server again on the same port), a worker on the tiny models
// and the bot's services in this process. Every submission whose submit resolved finishes and is
// posted exactly once; submissions while Redis is down are refused with the clear sentence; bot and
// worker reconnect by themselves and take new work; nothing hangs (every wait has a deadline).
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PrivateRedis, spawnRedis } from '../../src/app/redis-server.js';
import type { ReplySurface, Run } from '../../src/bots/core/reply.js';
import { type BotServices, createBotServices } from '../../src/bots/core/services.js';
import type { JobView } from '../../src/bots/core/view.js';
import { loadConfig } from '../../src/shared/config.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createConnection, waitUntilReady } from '../../src/shared/queues.js';
import { startWorker, type WorkerHandle } from '../../src/worker/runtime/start-worker.js';
import { testPrefix } from '../helpers/redis.js';
import { useTinyWorker } from '../helpers/tiny-worker.js';
import { noisePng, tempDir } from '../helpers/worker-process.js';

const tiny = useTinyWorker({
  classifier: { defaultLabels: ['cat', 'dog', 'car'], defaultTemplates: ['a photo of a {}.'] },
});

interface Recorded extends ReplySurface {
  readonly views: JobView[];
  finals(): number;
  fails(): JobView[];
}

function recording(): Recorded {
  const views: JobView[] = [];
  const push = (view: JobView) => void views.push(view);
  return {
    views,
    ack: push,
    progress: push,
    final: push,
    fail: push,
    finals: () => views.filter((v) => v.state === 'done').length,
    fails: () => views.filter((v) => v.state === 'failed'),
  };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms (a hang)`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let redis: PrivateRedis;
let dataDir: { path: string; remove: () => Promise<void> };
const undo = new UndoStack(silentLogger);

beforeAll(async () => {
  dataDir = await tempDir('redis-aof');
  redis = await spawnRedis({ dataDir: dataDir.path });
});
afterAll(async () => {
  await undo.release();
  await redis?.stop();
  await dataDir?.remove();
});

async function stack(prefix: string): Promise<{ services: BotServices; worker: WorkerHandle }> {
  const connection: Redis = createConnection(redis.url, 'worker');
  connection.on('error', () => {});
  undo.push('worker connection', () => connection.quit());
  await waitUntilReady(connection);
  const worker = await startWorker({
    connection,
    prefix,
    models: tiny.models,
    db: tiny.db,
    // A job whose worker lost Redis mid-run is taken over soon after, instead of in 30 s.
    stalledIntervalMs: 2_000,
    lockDurationMs: 10_000,
    concurrency: { imagine: 2, classify: 8 },
    logger: silentLogger,
  });
  undo.push('worker', () => worker.close({ graceMs: 0 }));
  const config = loadConfig({ QUEUE_PREFIX: prefix });
  const services = await createBotServices(
    {
      ...config,
      quota: { imagine: { concurrent: 50, perWindow: 500 }, light: { concurrent: 50, perWindow: 500 } },
      redisUrl: redis.url,
    },
    { logger: silentLogger, undo, throttleMs: 100 },
  );
  return { services, worker };
}

const origin = (i: number) =>
  ({ platform: 'discord', workspace: 'g1', channel: 'c1', user: `user${i % 7}` }) as const;

describe('Redis killed with SIGKILL mid-load', () => {
  it('finishes and posts once every accepted job, refuses clearly while down, and reconnects', async () => {
    const prefix = testPrefix();
    const { services, worker } = await stack(prefix);
    const image = await services.blobs.put(await noisePng(32, 32, 3), { contentType: 'image/png' });
    const accepted: { run: Run; surface: Recorded }[] = [];
    const refused: Recorded[] = [];
    let n = 0;
    const submitOne = async (): Promise<void> => {
      const i = n++;
      const surface = recording();
      const run =
        i % 3 === 0
          ? await services.runner.submit(
              'imagine',
              {
                prompt: `a lighthouse ${i}`,
                seed: i,
                steps: 6,
                size: { width: 64, height: 64 },
                origin: origin(i),
              },
              surface,
            )
          : await services.runner.submit(
              'classify',
              { image, labels: ['cat', 'dog', 'car'], templates: ['a photo of a {}.'], origin: origin(i) },
              surface,
            );
      if (run.jobId === undefined) refused.push(surface);
      else accepted.push({ run, surface });
    };

    // Three streams of submissions from before the kill to after the restart.
    let submitting = true;
    const streams = [0, 1, 2].map(async () => {
      while (submitting) {
        await submitOne();
        await new Promise((r) => setTimeout(r, 40));
      }
    });
    // Mid-load: jobs waiting, imagine steps running, results being posted.
    await within(
      (async () => {
        while (worker.stats.completed.classify < 5 || worker.stats.completed.imagine < 1)
          await new Promise((r) => setTimeout(r, 20));
      })(),
      60_000,
      'the first jobs',
    );
    const killed = redis.pid;
    process.kill(killed, 'SIGKILL');
    // The watchdog starts it again; the clients find it by themselves.
    await within(
      (async () => {
        while (redis.pid === killed) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      'the restart',
    );
    const beforeRestart = accepted.length;
    // Some more seconds of submissions after the restart, then stop.
    await new Promise((r) => setTimeout(r, 3_000));
    submitting = false;
    await Promise.all(streams);
    expect(accepted.length).toBeGreaterThan(beforeRestart);

    const outcomes = await within(Promise.all(accepted.map((a) => a.run.done)), 120_000, 'the accepted jobs');
    // Every accepted job finished and its result was posted exactly once.
    expect(outcomes.filter((o) => o.state !== 'done')).toEqual([]);
    for (const { run, surface } of accepted) {
      expect(surface.finals(), run.jobId).toBe(1);
      expect(surface.fails(), run.jobId).toEqual([]);
      expect(await services.jobs.markPosted(run.jobId!)).toBe(false);
    }
    // Refused ones (Redis down at submit) were told so in words, nothing else.
    for (const surface of refused) {
      expect(surface.views).toHaveLength(1);
      expect(surface.views[0]).toMatchObject({
        state: 'failed',
        code: 'unavailable',
        text: expect.stringMatching(/not reachable right now/),
      });
    }
    expect(await services.inflight.list('discord')).toEqual([]);
    // After all that, a new job runs end to end on the same processes.
    const after = recording();
    const run = await services.runner.submit(
      'classify',
      { image, labels: ['cat', 'dog'], templates: ['a photo of a {}.'], origin: origin(1) },
      after,
    );
    expect(await within(run.done, 30_000, 'a job after the restart')).toMatchObject({ state: 'done' });
  }, 200_000);
});
