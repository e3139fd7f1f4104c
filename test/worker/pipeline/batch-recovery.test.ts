// A worker killed with SIGKILL while it holds a micro-batch of classify jobs (they wait in its
// batcher to fill a batch): every job of the batch is taken over by another worker once the locks
// expire, and completes exactly once.
import { join } from 'node:path';
import { type Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { testPrefix, useRedis } from '../../helpers/redis.js';
import { tinyModelsDir } from '../../helpers/tiny-worker.js';
import {
  noisePng,
  pgliteTemplate,
  spawnWorker,
  tempDir,
  type WorkerProcess,
} from '../../helpers/worker-process.js';

const redis = useRedis();
const prefix = testPrefix();
const BATCH = 6;
let connection: Redis;
let client: JobClient;
let queue: Queue;
let modelsDir: string;
let dataDir: string;
let template: string;
const spawned: WorkerProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const models = await tinyModelsDir();
  const data = await tempDir('data');
  cleanups.push(models.remove, data.remove);
  modelsDir = models.path;
  dataDir = data.path;
  template = await pgliteTemplate(16);
  connection = await openConnection(redis.url);
  cleanups.push(() => connection.quit());
  client = new JobClient({ connection, prefix, throttleMs: 0, pollMs: 100 });
  cleanups.push(() => client.close());
  queue = new Queue('classify', { connection, prefix });
  cleanups.push(() => queue.close());
  cleanups.push(() => Promise.all(spawned.map((w) => w.stop())));
});
afterAll(async () => {
  for (const clean of cleanups.reverse()) await clean().catch(() => {});
});

function worker(name: string, batchWaitMs: number): Promise<WorkerProcess> {
  return spawnWorker({
    redisUrl: redis.url,
    prefix,
    modelsDir,
    dataDir: join(dataDir, name),
    dataTemplate: template,
    env: {
      WORKER_QUEUES: 'classify',
      WORKER_MICRO_BATCH: String(BATCH * 2),
      WORKER_BATCH_WAIT_MS: String(batchWaitMs),
      WORKER_WARMUP: 'false',
      WORKER_LOCK_DURATION_MS: '8000',
      WORKER_STALLED_INTERVAL_MS: '2000',
    },
  }).then((w) => {
    spawned.push(w);
    return w;
  });
}

describe('a worker killed holding a micro-batch of classify jobs', () => {
  it('loses every job of the batch to another worker; each completes once', {
    timeout: 120_000,
  }, async () => {
    onTestFailed(() => {
      for (const w of spawned) console.error(`--- worker ${w.pid}\n${w.stderr()}`);
    });
    // The first worker waits as long as allowed (1 s) for its batch to fill: the jobs sit in its
    // batcher meanwhile, and it is killed then (the moment its log says it holds all of them).
    const victim = await worker('w1', 1000);
    const events = new QueueEvents('classify', { connection, prefix });
    await events.waitUntilReady();
    const completed: string[] = [];
    events.on('completed', ({ jobId }) => completed.push(jobId));
    try {
      const blobs = new RedisBlobStore({ connection, prefix });
      const ids: string[] = [];
      for (let i = 0; i < BATCH; i++) {
        const image = await blobs.put(await noisePng(32, 32, i), { contentType: 'image/png' });
        const { jobId } = await client.submit(
          'classify',
          { image, labels: ['cat', 'dog', `thing ${i}`] },
          {
            userId: `test:u${i}`,
          },
        );
        ids.push(jobId.split(':')[1]!);
      }
      await victim.waitForLog(
        () => victim.logs.filter((l) => l.msg === 'job started').length >= BATCH,
        30_000,
      );
      victim.kill('SIGKILL');
      expect((await victim.exited).signal).toBe('SIGKILL');

      // The survivor batches quickly; it takes the jobs over once their locks expire.
      await worker('w2', 5);
      const results = await Promise.all(
        ids.map((id) => client.result(`classify:${id}`, { timeoutMs: 90_000 })),
      );
      for (const [i, r] of results.entries()) {
        expect(r.labels.map((l) => l.label).sort()).toEqual(['cat', 'dog', `thing ${i}`].sort());
      }
      // The kill came while the batch was held: the victim finished none of them.
      expect(victim.logs.filter((l) => l.msg === 'job completed')).toHaveLength(0);
      await new Promise((r) => setTimeout(r, 300)); // a (wrong) second completion would arrive by now
      for (const id of ids) {
        expect(completed.filter((j) => j === id)).toHaveLength(1);
        const job = (await queue.getJob(id)) as Job;
        expect(job.attemptsStarted).toBe(2);
        expect(job.attemptsMade).toBe(1);
      }
    } finally {
      await events.close();
    }
  });
});
