// Job pipeline benchmark: queue overhead of a trivial job (enqueue -> worker start -> result seen by
// the JobClient), classify throughput through the queue with and without micro-batching, and
// search latency over 100k and 1M 512-d vectors in PGlite (exact scan, then HNSW, with recall@10).
// Flags: --redis=URL (else a private redis-server), --jobs=N, --classify=N, --rounds=N, --full
// (full-size random ViT-B/32 for classify), --rows=100000,1000000, --max-insert-s=S, --hnsw-max-rows=N,
// --clustered (vectors around 100 centres instead of uniform noise), --ef=40,100,200 (hnsw.ef_search
// values), --search-reps=N, --cache=DIR (keep built PGlite folders, index included, between runs),
// --skip=queue,classify,search.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { spawnRedis } from '../src/app/redis-server.js';
import { JobClient } from '../src/bots/core/job-client.js';
import { RedisBlobStore } from '../src/shared/blobs.js';
import { Database, openDatabase } from '../src/shared/db/index.js';
import { encodeJpeg } from '../src/shared/image/encode.js';
import type { ClassifyResult } from '../src/shared/jobs.js';
import { defaultJobOptions, openConnection } from '../src/shared/queues.js';
import { clipVitB32Config, tinyVqganConfig } from '../src/worker/models/config.js';
import {
  fullSizeTokenizerJson,
  writeRandomClip,
  writeRandomModels,
  writeRandomVqgan,
} from '../src/worker/models/random.js';
import { loadModels, type WorkerModels } from '../src/worker/runtime/models.js';
import { startWorker, type WorkerHandle } from '../src/worker/runtime/start-worker.js';
import {
  type BenchModule,
  type BenchResult,
  mulberry32,
  percentile,
  type Row,
  randn,
  summarize,
} from './lib.js';

interface Options {
  redis: string | undefined;
  jobs: number;
  classify: number;
  rounds: number;
  full: boolean;
  rows: number[];
  maxInsertS: number;
  hnswMaxRows: number;
  clustered: boolean;
  ef: number[];
  cache: string | undefined;
  searchReps: number;
  skip: Set<string>;
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = {
    redis: undefined,
    jobs: 300,
    classify: 64,
    rounds: 3,
    full: false,
    rows: [100_000, 1_000_000],
    maxInsertS: 900,
    hnswMaxRows: 200_000,
    clustered: false,
    ef: [40, 100, 200],
    cache: undefined,
    searchReps: 30,
    skip: new Set(),
  };
  for (const a of args) {
    const [flag, value = ''] = a.replace(/^--/, '').split('=') as [string, string?];
    if (flag === 'redis') o.redis = value;
    else if (flag === 'jobs') o.jobs = Number(value);
    else if (flag === 'classify') o.classify = Number(value);
    else if (flag === 'rounds') o.rounds = Number(value);
    else if (flag === 'full') o.full = true;
    else if (flag === 'rows') o.rows = value.split(',').map(Number);
    else if (flag === 'max-insert-s') o.maxInsertS = Number(value);
    else if (flag === 'hnsw-max-rows') o.hnswMaxRows = Number(value);
    else if (flag === 'clustered') o.clustered = true;
    else if (flag === 'ef') o.ef = value.split(',').map(Number);
    else if (flag === 'cache') o.cache = value;
    else if (flag === 'search-reps') o.searchReps = Number(value);
    else if (flag === 'skip') o.skip = new Set(value.split(','));
  }
  return o;
}

const log = (msg: string) => process.stderr.write(`  [pipeline] ${msg}\n`);

const stats = (samples: number[]) => {
  const t = summarize(samples);
  return { p50_ms: t.medianMs, p99_ms: t.p99Ms, min_ms: t.minMs, n: t.reps };
};

// --- A. Queue overhead of a trivial job

async function queueOverhead(connection: Redis, workerConnection: Redis, o: Options): Promise<Row[]> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const started = new Map<string, number>();
  const result: ClassifyResult = { labels: [{ label: 'x', prob: 1 }] };
  // The trivial job: a processor that returns at once, in this process, so that every timestamp is
  // read from one clock. The JobClient is the one adapters use (events + state reads).
  const worker = new Worker(
    'classify',
    async (job) => {
      started.set(job.id!, performance.now());
      return result;
    },
    { connection: workerConnection, prefix, concurrency: 1 },
  );
  await worker.waitUntilReady();
  const client = new JobClient({ connection, prefix, throttleMs: 0 });
  const queue = new Queue('classify', { connection, prefix });
  const data = { image: `${prefix}:blob:x`, labels: ['a', 'b'] };
  const samples = {
    submit: [] as number[],
    toStart: [] as number[],
    toResult: [] as number[],
    total: [] as number[],
  };
  const raw = { add: [] as number[], total: [] as number[] };
  try {
    for (let i = 0; i < o.jobs + 20; i++) {
      const t0 = performance.now();
      const { jobId } = await client.submit('classify', data, { userId: 'bench' });
      const t1 = performance.now();
      await client.result(jobId);
      const t2 = performance.now();
      // The same job added with Queue.add: without submit's validation and queue-position read.
      const t3 = performance.now();
      const job = await queue.add('classify', data, defaultJobOptions.classify);
      const t4 = performance.now();
      await client.result(`classify:${job.id}`);
      const t5 = performance.now();
      if (i < 20) continue; // warm-up: connections, scripts, QueueEvents subscription
      const ts = started.get(jobId.split(':')[1]!)!;
      samples.submit.push(t1 - t0);
      samples.toStart.push(ts - t0);
      samples.toResult.push(t2 - ts);
      samples.total.push(t2 - t0);
      raw.add.push(t4 - t3);
      raw.total.push(t5 - t3);
    }
  } finally {
    await client.close();
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
  return [
    { name: 'JobClient.submit (validate, add, position)', cells: stats(samples.submit) },
    { name: 'submit start -> processor start', cells: stats(samples.toStart) },
    { name: 'processor start -> result seen (JobClient.result)', cells: stats(samples.toResult) },
    { name: 'total: submit -> result seen', cells: stats(samples.total) },
    { name: 'Queue.add alone', cells: stats(raw.add) },
    { name: 'total: Queue.add -> result seen', cells: stats(raw.total) },
  ];
}

// --- B. Classify throughput through the queue, micro-batched or not

/** A photo-like JPEG: smooth colour fields plus seeded noise. */
async function photo(width: number, height: number, seed: number): Promise<Uint8Array> {
  const rand = mulberry32(seed);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const s = Math.sin((x / width) * 3 * Math.PI) * Math.cos((y / height) * 2 * Math.PI);
      data[p] = Math.max(0, Math.min(255, 128 + 100 * s + 30 * (rand() - 0.5)));
      data[p + 1] = Math.max(0, Math.min(255, (255 * x) / width + 30 * (rand() - 0.5)));
      data[p + 2] = Math.max(0, Math.min(255, (255 * y) / height + 30 * (rand() - 0.5)));
    }
  }
  return encodeJpeg({ data, width, height });
}

async function classifyThroughput(
  connection: Redis,
  workerConnection: Redis,
  o: Options,
  notes: string[],
): Promise<Row[]> {
  const tmp = mkdtempSync(join(tmpdir(), 'bench-pipeline-models-'));
  const loaded: WorkerModels[] = [];
  try {
    const t0 = performance.now();
    if (o.full) {
      writeRandomClip(join(tmp, 'clip'), clipVitB32Config(), {
        tokenizerJson: JSON.stringify(fullSizeTokenizerJson()),
      });
      writeRandomVqgan(join(tmp, 'vqgan'), tinyVqganConfig()); // classify never touches the VQGAN
    } else {
      writeRandomModels({ preset: 'tiny', outDir: tmp });
    }
    notes.push(
      `classify model: ${o.full ? 'full-size random ViT-B/32 (224 px, 512-d)' : 'tiny random CLIP (32 px, 16-d)'}, written in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const modes = [
      { name: 'micro-batched (up to 16 per run)', microBatch: 16 },
      { name: 'not batched (1 per run)', microBatch: 1 },
    ];
    interface Setup {
      mode: (typeof modes)[number];
      models: WorkerModels;
      handle: WorkerHandle;
      client: JobClient;
      queue: Queue;
      image: string;
    }
    const setups: Setup[] = [];
    for (const mode of modes) {
      const models = await loadModels(tmp, { microBatch: mode.microBatch });
      loaded.push(models);
      const prefix = `bench-${randomUUID().slice(0, 8)}`;
      const handle = await startWorker({
        connection: workerConnection,
        prefix,
        models,
        queues: ['classify'],
        concurrency: { classify: 16 },
      });
      const client = new JobClient({ connection, prefix, throttleMs: 0 });
      const queue = new Queue('classify', { connection, prefix });
      const blobs = new RedisBlobStore({ connection, prefix });
      const image = await blobs.put(await photo(640, 480, 1), { contentType: 'image/jpeg' });
      setups.push({ mode, models, handle, client, queue, image });
    }
    const labels = ['cat', 'dog', 'car', 'tree', 'house', 'person', 'bicycle', 'boat', 'bird', 'flower'];
    const round = async (s: Setup, n: number) => {
      const runsBefore = s.models.images.stats.sessionRuns;
      const t = performance.now();
      const jobs = await s.queue.addBulk(
        Array.from({ length: n }, () => ({
          name: 'classify',
          data: { image: s.image, labels },
          opts: defaultJobOptions.classify,
        })),
      );
      await Promise.all(jobs.map((j) => s.client.result(`classify:${j.id}`)));
      return { ms: performance.now() - t, runs: s.models.images.stats.sessionRuns - runsBefore };
    };
    // Warm-up: label embeddings, and sessions for every batch size a round can use.
    for (const s of setups) await round(s, 32);
    const results = setups.map(() => ({ ms: [] as number[], runs: [] as number[] }));
    // Interleaved rounds: load from other processes lands on both modes alike.
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, s] of setups.entries()) {
        const { ms, runs } = await round(s, o.classify);
        results[i]!.ms.push(ms);
        results[i]!.runs.push(runs);
      }
    }
    const rows = setups.map((s, i) => {
      const ms = percentile(
        [...results[i]!.ms].sort((a, b) => a - b),
        50,
      );
      return {
        name: s.mode.name,
        cells: {
          jobs: o.classify,
          median_round_ms: ms,
          jobs_per_s: (1000 * o.classify) / ms,
          session_runs_per_round: percentile(
            [...results[i]!.runs].sort((a, b) => a - b),
            50,
          ),
        },
      };
    });
    for (const s of setups) {
      await s.handle.close({ graceMs: 0 });
      await s.client.close();
      await s.queue.obliterate({ force: true });
      await s.queue.close();
    }
    return rows;
  } finally {
    for (const m of loaded) await m.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

// --- C. Search latency in PGlite

const CHANNEL_ALL = 'all';
const SMALL_CHANNELS = 10;
const SMALL_ROWS = 1000;
const CENTRES = 100;

async function insertVectors(
  db: Database,
  channel: string | ((g: string) => string),
  from: number,
  to: number,
  clustered: boolean,
): Promise<void> {
  // Vectors drawn inside Postgres (setseed makes them repeatable): no 2 KB text literal per row
  // crosses into the WASM heap. The correlated subqueries draw a new vector per row. Clustered rows
  // are a centre plus noise (cosine ~0.86 to their centre, ~0.75 within a cluster), closer to CLIP
  // embeddings of a channel than uniform noise, where every point is nearly orthogonal to the others.
  const channelSql = typeof channel === 'string' ? `'${channel}'` : channel('g');
  const vector = clustered
    ? `(SELECT array_agg(x + 0.6 * (random() - 0.5) ORDER BY o)
        FROM bench_centres c, unnest(c.v) WITH ORDINALITY AS u(x, o) WHERE c.cid = g % ${CENTRES})`
    : '(SELECT array_agg(random() - 0.5) FROM generate_series(1, 512) WHERE g IS NOT NULL)';
  await db.driver.query(
    `INSERT INTO images (platform, workspace, channel, message, file, content_hash, embedding)
     SELECT 'slack', 'T', ${channelSql}, 'm' || g, 'f' || g, md5(g::text), ${vector}::real[]::vector
     FROM generate_series($1::int, $2::int) AS g`,
    [from, to],
  );
}

/** Fills a fresh database: ten channels of 1000 images and one of `total`; returns the rows inserted. */
async function fillTable(db: Database, total: number, label: string, o: Options, notes: string[]) {
  // A new table comes with its HNSW index (migration 6): dropped so that the bulk insert and the
  // build are timed apart, as before (one build is far cheaper than 100k index inserts).
  await db.driver.exec('DROP INDEX IF EXISTS images_embedding_hnsw');
  await db.driver.exec('SELECT setseed(0.42)');
  if (o.clustered) {
    await db.driver.exec(
      `CREATE TABLE bench_centres AS SELECT c AS cid,
         (SELECT array_agg(random() - 0.5) FROM generate_series(1, 512) WHERE c IS NOT NULL)::real[] AS v
       FROM generate_series(0, ${CENTRES - 1}) AS c;
       CREATE INDEX ON bench_centres (cid); ANALYZE bench_centres;`,
    );
  }
  const small = (g: string) => `'c' || (${g} % ${SMALL_CHANNELS})`;
  await insertVectors(db, small, 1, SMALL_CHANNELS * SMALL_ROWS, o.clustered);
  const t0 = performance.now();
  const batch = 10_000;
  let inserted = 0;
  for (let from = 1; from <= total; from += batch) {
    const to = Math.min(total, from + batch - 1);
    const offset = SMALL_CHANNELS * SMALL_ROWS;
    await insertVectors(db, CHANNEL_ALL, offset + from, offset + to, o.clustered);
    inserted = to;
    const elapsed = (performance.now() - t0) / 1000;
    if (inserted % 100_000 === 0 || inserted === total)
      log(`${label}: ${inserted} rows in ${elapsed.toFixed(0)} s`);
    const projected = (elapsed / inserted) * total;
    if (inserted < total && projected > o.maxInsertS) {
      notes.push(
        `${label}: stopped inserting at ${inserted} rows after ${elapsed.toFixed(0)} s (projected ${projected.toFixed(0)} s for ${total} > --max-insert-s=${o.maxInsertS})`,
      );
      break;
    }
  }
  if (o.clustered) await db.driver.exec('DROP TABLE bench_centres');
  await db.driver.exec('VACUUM ANALYZE images');
  return { inserted, insertS: (performance.now() - t0) / 1000 };
}

/** What a cached folder holds, written beside it so that a later run reports how it was built. */
interface BuiltTable {
  inserted: number;
  insertS: number;
  index?: { buildS: number; buildCpuS?: number; loadAvg: number };
}

async function searchLatency(o: Options, notes: string[]): Promise<Row[]> {
  const rows: Row[] = [];
  const scope = { platform: 'slack', workspace: 'T' } as const;
  const reps = o.searchReps;
  for (const total of o.rows) {
    const kind = o.clustered ? 'clustered' : 'random';
    const label = `${total >= 1_000_000 ? `${total / 1_000_000}M` : `${total / 1000}k`} ${kind}`;
    const dir = o.cache
      ? join(o.cache, `pglite-${kind}-${total}`)
      : mkdtempSync(join(tmpdir(), 'bench-pipeline-pglite-'));
    const metaFile = `${dir}.json`;
    let built: BuiltTable | undefined =
      o.cache && existsSync(metaFile)
        ? (JSON.parse(readFileSync(metaFile, 'utf8')) as BuiltTable)
        : undefined;
    if (!built) rmSync(dir, { recursive: true, force: true }); // a half-built cache entry
    const save = () => o.cache && writeFileSync(metaFile, JSON.stringify(built));
    try {
      // Default search options: channels up to 2000 images exact, larger ones through the index.
      const db = await openDatabase({ dataDir: dir }, { embeddingDim: 512 });
      const exact = new Database(db.driver, 512, { exactMaxRows: Number.POSITIVE_INFINITY });
      try {
        if (built) log(`${label}: reusing ${dir}`);
        else {
          built = await fillTable(db, total, label, o, notes);
          save();
        }
        const { inserted } = built;
        const [size] = await db.driver.query<{ s: string }>(
          "SELECT pg_size_pretty(pg_total_relation_size('images')) AS s",
        );
        notes.push(
          `${label} table: ${inserted} rows inserted in ${built.insertS.toFixed(0)} s (${((inserted / built.insertS) | 0).toLocaleString('en')}/s), ${size?.s} with indexes`,
        );
        // Queries: uniform noise for random rows; for clustered rows a stored embedding plus as much
        // noise again (a text query lands near, not on, the images it describes).
        const rand = mulberry32(7);
        const n = reps + 2;
        const queries: Float32Array[] = [];
        if (o.clustered) {
          const picks = await db.driver.query<{ e: string }>(
            `SELECT embedding::text AS e FROM images WHERE channel = $1 AND md5(id::text) < '1' LIMIT $2`,
            [CHANNEL_ALL, n],
          );
          for (const p of picks) {
            const base = JSON.parse(p.e) as number[];
            const noise = randn(rand, 512, 0.17);
            queries.push(Float32Array.from(base, (v, i) => v + noise[i]!));
          }
        } else {
          for (let i = 0; i < n; i++) queries.push(randn(rand, 512));
        }
        const time = async (on: Database, channel: string, count: number) => {
          const samples: number[] = [];
          const results: string[][] = [];
          for (let i = 0; i < count + 2; i++) {
            const t = performance.now();
            const hits = await on.searchImages({ ...scope, channel, embedding: queries[i % n]!, k: 10 });
            if (i >= 2) {
              samples.push(performance.now() - t);
              results.push(hits.map((h) => h.imageId));
            }
          }
          return { cells: stats(samples), results };
        };
        const recall = (got: string[][], truth: string[][]) => {
          let hit = 0;
          for (const [i, ids] of got.entries()) {
            const want = new Set(truth[i % truth.length]);
            hit += ids.filter((id) => want.has(id)).length;
          }
          return hit / (10 * got.length);
        };
        // The exact reference doubles as the exact-scan row (fewer reps at 1M: ~10 s each).
        const bigReps = inserted > 300_000 ? 3 : reps;
        const exactBig = await time(exact, CHANNEL_ALL, bigReps);
        rows.push({ name: `${label}: channel of ${inserted} images, exact scan`, cells: exactBig.cells });
        const exactSmall = await time(db, 'c3', reps);
        rows.push({
          name: `${label}: channel of ${SMALL_ROWS} images (exact path, count + scan)`,
          cells: exactSmall.cells,
        });
        if (inserted > o.hnswMaxRows) {
          notes.push(`${label}: HNSW not built (more than --hnsw-max-rows=${o.hnswMaxRows} rows)`);
          continue;
        }
        if (!built.index) {
          const t1 = performance.now();
          const cpu = process.cpuUsage();
          await db.ensureVectorIndex({ minRows: 1 });
          const used = process.cpuUsage(cpu);
          built.index = {
            buildS: (performance.now() - t1) / 1000,
            buildCpuS: (used.user + used.system) / 1e6,
            loadAvg: loadavg()[0]!,
          };
          save();
        }
        notes.push(
          `${label}: HNSW index (m 16, ef_construction 64, maintenance_work_mem 512MB) built in ${built.index.buildS.toFixed(0)} s wall${built.index.buildCpuS === undefined ? '' : `, ${built.index.buildCpuS.toFixed(0)} s CPU`}, load average ${built.index.loadAvg.toFixed(1)}${o.cache ? ' (when the cache was made)' : ''}`,
        );
        // Exact results of the HNSW rows' queries (the exact row above saw only bigReps of them).
        const truth = bigReps >= reps ? exactBig.results : (await time(exact, CHANNEL_ALL, reps)).results;
        for (const ef of o.ef) {
          const ann = new Database(db.driver, 512, { efSearch: ef });
          const r = await time(ann, CHANNEL_ALL, reps);
          rows.push({
            name: `${label}: channel of ${inserted} images, HNSW ef_search ${ef}`,
            cells: { ...r.cells, recall_at_10: recall(r.results, truth) },
          });
        }
        // The small channel with the index present: our count-then-exact path against leaving the
        // choice to the planner (exactMaxRows 0: no count), queries alternating between the two.
        const planner = new Database(db.driver, 512, { exactMaxRows: 0 });
        const pair = { counted: [] as number[], planner: [] as number[] };
        const plannerResults: string[][] = [];
        for (let i = 0; i < reps + 2; i++) {
          for (const [name, on] of [
            ['counted', db],
            ['planner', planner],
          ] as const) {
            const t = performance.now();
            const hits = await on.searchImages({
              ...scope,
              channel: 'c3',
              embedding: queries[i % n]!,
              k: 10,
            });
            if (i < 2) continue;
            pair[name].push(performance.now() - t);
            if (name === 'planner') plannerResults.push(hits.map((h) => h.imageId));
          }
        }
        rows.push({
          name: `${label}: channel of ${SMALL_ROWS} images, index present: count, then exact`,
          cells: stats(pair.counted),
        });
        rows.push({
          name: `${label}: channel of ${SMALL_ROWS} images, index present: planner's choice`,
          cells: { ...stats(pair.planner), recall_at_10: recall(plannerResults, exactSmall.results) },
        });
      } finally {
        await db.close();
      }
    } finally {
      if (!o.cache) rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows;
}

async function run(args: readonly string[]): Promise<BenchResult> {
  const o = parseArgs(args);
  // Dozens of JobClient.result calls share one QueueEvents per queue; Node's leak warning at 11
  // listeners is noise here.
  EventEmitter.defaultMaxListeners = 200;
  const notes: string[] = [];
  const tables: { title: string; rows: Row[] }[] = [];
  const details: Record<string, unknown> = { options: { ...o, skip: [...o.skip] }, loadBefore: loadavg()[0] };
  const redis = o.redis ? undefined : await spawnRedis();
  const url = o.redis ?? redis!.url;
  const connection = await openConnection(url);
  const workerConnection = await openConnection(url, 'worker');
  try {
    if (!o.skip.has('queue')) {
      log('queue overhead');
      tables.push({
        title: `Queue overhead, trivial job (${o.jobs} jobs, one at a time, worker in this process)`,
        rows: await queueOverhead(connection, workerConnection, o),
      });
    }
    if (!o.skip.has('classify')) {
      log('classify throughput');
      tables.push({
        title: `Classify through the queue: ${o.classify} jobs enqueued together, worker concurrency 16 (median of ${o.rounds} interleaved rounds)`,
        rows: await classifyThroughput(connection, workerConnection, o, notes),
      });
    }
    if (!o.skip.has('search')) {
      log('search latency');
      tables.push({
        title: `Search top-10 by cosine in PGlite, ${o.clustered ? 'clustered' : 'random'} 512-d vectors (${o.searchReps} queries a row)`,
        rows: await searchLatency(o, notes),
      });
    }
  } finally {
    await connection.quit();
    await workerConnection.quit();
    await redis?.stop();
  }
  details.loadAfter = loadavg()[0];
  notes.push(
    `load average ${Number(details.loadBefore).toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after (2 cores, shared)`,
  );
  return { tables, notes, details };
}

export const pipelineBench: BenchModule = {
  name: 'pipeline',
  description: 'queue overhead, classify throughput with/without micro-batching, PGlite search latency',
  run,
};
