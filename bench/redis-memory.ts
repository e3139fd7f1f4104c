// Redis memory per running and per finished imagine job, before and after one-key previews: N
// concurrent tiny-model jobs (default 50) through real BullMQ queues on a private redis-server,
// run twice per job length, once with every preview a new blob kept an hour (how the worker stored
// previews before; emulated by a store that ignores the preview's name and its deletion) and once
// as the worker does now (one preview blob per job, overwritten, deleted at the end). Blob bytes are
// Redis's own MEMORY USAGE of every blob key; used_memory is INFO's, allocator noise included.
// Flags: --jobs=N (50), --steps=30,90 (job lengths), --size=64, --redis=URL (else a private server).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { spawnRedis } from '../src/app/redis-server.js';
import { JobClient, type JobRef } from '../src/bots/core/job-client.js';
import { type BlobStore, RedisBlobStore } from '../src/shared/blobs.js';
import type { ImagineJob } from '../src/shared/jobs.js';
import { keys, openConnection } from '../src/shared/queues.js';
import { writeRandomModels } from '../src/worker/models/random.js';
import { loadModels, type WorkerModels } from '../src/worker/runtime/models.js';
import { startWorker } from '../src/worker/runtime/start-worker.js';
import type { BenchModule, BenchResult, Row } from './lib.js';

interface Options {
  jobs: number;
  steps: number[];
  size: number;
  redis: string | undefined;
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = { jobs: 50, steps: [30, 90], size: 64, redis: undefined };
  for (const a of args) {
    const [k, v] = a.replace(/^--/, '').split('=') as [string, string | undefined];
    if (k === 'jobs') o.jobs = Number(v);
    else if (k === 'steps') o.steps = (v ?? '').split(',').map(Number);
    else if (k === 'size') o.size = Number(v);
    else if (k === 'redis') o.redis = v;
  }
  if (!(o.jobs >= 1) || o.steps.some((s) => !(s >= 1)) || o.size % 16 !== 0)
    throw new RangeError('--jobs >= 1, --steps >= 1 each, --size a multiple of 16');
  return o;
}

/**
 * The store the worker writes to, recording which keys hold previews (named puts). In 'before' mode
 * it also behaves as the worker's preview writes did before one-key previews: the name is dropped
 * (a fresh key per preview, with the preview TTL of an hour) and the end-of-job delete never happens.
 */
function recording(
  store: BlobStore,
  mode: 'before' | 'after',
): BlobStore & { previews: Map<string, string> } {
  /** Preview key -> the BullMQ id of its job (from the name, `preview:imagine:<id>`). */
  const previews = new Map<string, string>();
  return {
    previews,
    kind: store.kind,
    ttlSeconds: store.ttlSeconds,
    maxBytes: store.maxBytes,
    async put(bytes, options) {
      const { name, ...rest } = options;
      const key = await store.put(bytes, mode === 'before' ? rest : options);
      if (name !== undefined) previews.set(key, name.slice(name.lastIndexOf(':') + 1));
      return key;
    },
    get: (key) => store.get(key),
    delete: async (key) => (mode === 'before' && previews.has(key) ? false : store.delete(key)),
    ttl: (key) => store.ttl(key),
    owns: (key) => store.owns(key),
    presignedUrl: (key, s) => store.presignedUrl(key, s),
    close: () => store.close(),
  };
}

interface Usage {
  /** INFO used_memory. */
  used: number;
  blobKeys: number;
  /** Sum of MEMORY USAGE over the blob keys. */
  blobBytes: number;
}

async function usage(connection: Redis, prefix: string): Promise<Usage> {
  const info = await connection.info('memory');
  const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
  let cursor = '0';
  let blobKeys = 0;
  let blobBytes = 0;
  do {
    const [next, found] = await connection.scan(
      cursor,
      'MATCH',
      `${keys.blobNamespace(prefix)}*`,
      'COUNT',
      1000,
    );
    cursor = next;
    blobKeys += found.length;
    const sizes = await Promise.all(
      found.map((k) => connection.call('MEMORY', 'USAGE', k, 'SAMPLES', '0') as Promise<number | null>),
    );
    for (const s of sizes) blobBytes += s ?? 0;
  } while (cursor !== '0');
  return { used, blobKeys, blobBytes };
}

/** Bytes (MEMORY USAGE) and count of the preview keys that still exist. */
async function previewUsage(
  connection: Redis,
  keysOf: Iterable<string>,
): Promise<{ keys: number; bytes: number }> {
  const sizes = await Promise.all(
    [...keysOf].map((k) => connection.call('MEMORY', 'USAGE', k, 'SAMPLES', '0') as Promise<number | null>),
  );
  const live = sizes.filter((s): s is number => s !== null);
  return { keys: live.length, bytes: live.reduce((a, b) => a + b, 0) };
}

interface Sample {
  atS: number;
  active: number;
  previewKeys: number;
  previewBytes: number;
}

interface RunFigures {
  mode: 'before' | 'after';
  steps: number;
  seconds: number;
  samples: Sample[];
  /** Preview keys and bytes per running job: the highest ratio over the samples with jobs running. */
  perRunning: { keys: number; bytes: number; meanBytes: number };
  finished: Usage;
  baseline: Usage;
}

async function runOnce(
  mode: 'before' | 'after',
  steps: number,
  o: Options,
  connections: { producer: Redis; consumer: Redis },
  models: WorkerModels,
): Promise<RunFigures> {
  const prefix = `memb-${mode}-${steps}-${Date.now().toString(36)}`;
  const store = new RedisBlobStore({ connection: connections.producer, prefix });
  const blobs = recording(store, mode);
  const queue = new Queue('imagine', { connection: connections.producer, prefix });
  const worker = await startWorker({
    connection: connections.consumer,
    prefix,
    models,
    blobs,
    queues: ['imagine'],
    concurrency: { imagine: o.jobs },
  });
  const client = new JobClient({ connection: connections.producer, prefix, pollMs: 200 });
  try {
    await connections.producer.call('MEMORY', 'PURGE').catch(() => {});
    const baseline = await usage(connections.producer, prefix);
    const started = performance.now();
    const ids: JobRef<'imagine'>[] = [];
    for (let i = 0; i < o.jobs; i++) {
      const job: ImagineJob = {
        prompt: `a lighthouse number ${i}`,
        steps,
        size: { width: o.size, height: o.size },
        cutouts: 1,
        seed: i,
        origin: { platform: 'cli', user: 'bench' },
      };
      ids.push((await client.submit('imagine', job, { userId: 'bench' })).jobId);
    }
    const done = Promise.all(ids.map((id) => client.result(id, { timeoutMs: 30 * 60_000 })));
    let finishedAll = false;
    done.then(
      () => {
        finishedAll = true;
      },
      () => {
        finishedAll = true;
      },
    );
    const samples: Sample[] = [];
    while (!finishedAll) {
      const activeIds = new Set((await queue.getActive()).map((j) => j.id));
      const active = activeIds.size;
      // Previews of the jobs running now (before: a finished job's stay too, counted in 'finished').
      const running = [...blobs.previews].filter(([, id]) => activeIds.has(id)).map(([key]) => key);
      const p = await previewUsage(connections.producer, running);
      samples.push({
        atS: (performance.now() - started) / 1000,
        active,
        previewKeys: p.keys,
        previewBytes: p.bytes,
      });
      await new Promise((r) => setTimeout(r, 250));
    }
    await done;
    const seconds = (performance.now() - started) / 1000;
    await connections.producer.call('MEMORY', 'PURGE').catch(() => {});
    const finished = await usage(connections.producer, prefix);
    // Samples with at least a tenth of the jobs running: a lone last job says little.
    const busy = samples.filter((x) => x.active >= Math.max(1, o.jobs / 10));
    const ratio = (f: (x: Sample) => number) => busy.map((x) => f(x) / x.active);
    const bytes = ratio((x) => x.previewBytes);
    return {
      mode,
      steps,
      seconds,
      samples,
      perRunning: {
        keys: Math.max(0, ...ratio((x) => x.previewKeys)),
        bytes: Math.max(0, ...bytes),
        meanBytes: bytes.length === 0 ? 0 : bytes.reduce((a, b) => a + b, 0) / bytes.length,
      },
      finished,
      baseline,
    };
  } finally {
    await worker.close({ graceMs: 0 });
    await client.close();
    await queue.close();
    // Leave nothing for the next run to count.
    let cursor = '0';
    do {
      const [next, found] = await connections.producer.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (found.length > 0) await connections.producer.unlink(...found);
    } while (cursor !== '0');
  }
}

const kib = (bytes: number) => Math.round(bytes / 102.4) / 10;

export const redisMemoryBench: BenchModule = {
  name: 'redis-memory',
  description:
    'Redis memory per running and finished imagine job (tiny models), before/after one-key previews',
  async run(args): Promise<BenchResult> {
    const o = parseArgs(args);
    const load = loadavg()[0]!;
    const server = o.redis === undefined ? await spawnRedis() : undefined;
    const url = o.redis ?? server!.url;
    const producer = await openConnection(url);
    const consumer = await openConnection(url, 'worker');
    const dir = mkdtempSync(join(tmpdir(), 'vqclip-bench-mem-'));
    writeRandomModels({ preset: 'tiny', outDir: dir, seed: 0 });
    const models = await loadModels(dir, { intraOpThreads: 1 });
    const runs: RunFigures[] = [];
    try {
      for (const steps of o.steps) {
        for (const mode of ['before', 'after'] as const) {
          runs.push(await runOnce(mode, steps, o, { producer, consumer }, models));
        }
      }
    } finally {
      await models.close();
      await producer.quit();
      await consumer.quit();
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    const rows: Row[] = runs.map((r) => ({
      name: `${r.mode}, ${r.steps} steps`,
      cells: {
        's/run': Math.round(r.seconds),
        samples: r.samples.length,
        'max active': Math.max(0, ...r.samples.map((x) => x.active)),
        'running: preview keys/job (max)': Math.round(r.perRunning.keys * 100) / 100,
        'running: preview KiB/job (max)': kib(r.perRunning.bytes),
        'running: preview KiB/job (mean)': kib(r.perRunning.meanBytes),
        'finished: blob keys': r.finished.blobKeys,
        'finished: blob KiB/job': kib((r.finished.blobBytes - r.baseline.blobBytes) / o.jobs),
        'finished: used KiB/job': kib((r.finished.used - r.baseline.used) / o.jobs),
      },
    }));
    return {
      tables: [{ title: `${o.jobs} concurrent imagine jobs, ${o.size}x${o.size}, tiny random models`, rows }],
      notes: [
        "'running': the running jobs' preview keys and their MEMORY USAGE divided by the jobs active at that moment, over the samples (every 250 ms, later while steps hold the event loop) with at least a tenth of the jobs active.",
        "'before' stores each preview under a new key for an hour, as the worker did; 'after' overwrites one key per job and deletes it at the end.",
        'finished: final PNG, timelapse WebP and saved state per job (one day), plus job hashes and events; before also keeps every preview.',
        `load average ${load.toFixed(1)} at the start (${loadavg()[0]!.toFixed(1)} at the end); used_memory includes allocator noise, blob bytes are MEMORY USAGE.`,
      ],
      details: { options: o, runs },
    };
  },
};
