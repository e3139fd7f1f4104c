// The playground as a person meets it after `npm start` (issue 15): how long start-up takes, how
// long a default /imagine takes end to end (submit -> first preview -> final, over the page's own
// HTTP API and event stream; goal <= 10 s), and how fast the page and API answer while the worker
// paints (goal: milliseconds). The stack is startStack's, worker in its own process; with
// `--compare` the old composition (worker in the web server's process) is measured beside it in
// the same run, so the difference is not a difference between two machines' moods.
//
//   npm run bench -- playground [--compare] [--probe-seconds=6] [--no-e2e]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ensureModels, hasRandomWeights } from '../src/app/models-setup.js';
import { freePort, type PrivateRedis, spawnRedis } from '../src/app/redis-server.js';
import { startStack } from '../src/app/stack.js';
import { createBotServices } from '../src/bots/core/services.js';
import { Library } from '../src/bots/web/library.js';
import { startPlayground } from '../src/bots/web/server.js';
import { loadConfig } from '../src/shared/config.js';
import { openDatabase } from '../src/shared/db/index.js';
import { UndoStack } from '../src/shared/lifecycle.js';
import { silentLogger } from '../src/shared/logger.js';
import { createConnection, openConnection } from '../src/shared/queues.js';
import { loadModels } from '../src/worker/runtime/models.js';
import { startWorker } from '../src/worker/runtime/start-worker.js';
import { modelSettings, workerSettings } from '../src/worker/runtime/worker-settings.js';
import { type BenchModule, type BenchResult, percentile, type Row } from './lib.js';

/** Goals of issue 15. */
export const PLAYGROUND_GOALS = { imagineSeconds: 10, pageMs: 50 } as const;

interface Options {
  compare: boolean;
  probeSeconds: number;
  e2e: boolean;
}

function parseOptions(args: readonly string[]): Options {
  const o: Options = { compare: false, probeSeconds: 6, e2e: true };
  for (const a of args) {
    if (a === '--compare') o.compare = true;
    else if (a === '--no-e2e') o.e2e = false;
    else if (a.startsWith('--probe-seconds=')) o.probeSeconds = Number(a.split('=')[1]);
  }
  return o;
}

interface Running {
  url: string;
  /** Seconds until the page answered, and until the worker served the queues. */
  pageUpSeconds: number;
  workerReadySeconds: number;
  close(): Promise<void>;
}

/** The configuration both compositions run with: the same folders and Redis, a free port, no warm-up. */
async function benchConfig(dataDir: string, modelsDir: string, redisUrl: string) {
  return loadConfig({
    REDIS_URL: redisUrl,
    DATA_DIR: dataDir,
    MODELS_DIR: modelsDir,
    PORT: String(await freePort()),
    WORKER_WARMUP: 'false',
  });
}

/** `npm start`'s composition: startStack, worker in a child process. */
async function startChild(dataDir: string, modelsDir: string, redisUrl: string): Promise<Running> {
  const t0 = performance.now();
  const config = await benchConfig(dataDir, modelsDir, redisUrl);
  const stack = await startStack({ config, logger: silentLogger });
  const pageUpSeconds = (performance.now() - t0) / 1000;
  await stack.workerReady;
  return {
    url: stack.url,
    pageUpSeconds,
    workerReadySeconds: (performance.now() - t0) / 1000,
    close: () => stack.close(),
  };
}

/** The composition `npm start` had before: the worker in the web server's own process. */
async function startInProcess(dataDir: string, modelsDir: string, redisUrl: string): Promise<Running> {
  const t0 = performance.now();
  const config = await benchConfig(dataDir, modelsDir, redisUrl);
  const undo = new UndoStack();
  const connection = createConnection(redisUrl, 'worker');
  undo.push('worker connection', () => connection.quit());
  const models = await loadModels(modelsDir, modelSettings(config));
  undo.push('models', () => models.close());
  const db = await openDatabase(config, {
    embeddingDim: models.embeddingDim,
    embeddingModel: models.embeddingModel,
  });
  undo.push('db', () => db.close());
  const worker = await startWorker({
    connection,
    ...workerSettings(config),
    models,
    db,
    logger: silentLogger,
  });
  undo.push('worker', () => worker.close({ graceMs: 0 }));
  const producer = await openConnection(redisUrl);
  undo.push('producer', () => producer.quit());
  const services = await createBotServices(
    { ...config, redisUrl },
    { logger: silentLogger, undo, connection: producer },
  );
  const playground = await startPlayground({
    jobs: services.jobs,
    indexJobs: services.indexJobs,
    blobs: services.blobs,
    library: new Library(join(dataDir, 'library')),
    admin: false,
    randomWeights: hasRandomWeights(modelsDir),
    port: 0,
    host: '127.0.0.1',
  });
  undo.push('playground', () => playground.close());
  const ready = (performance.now() - t0) / 1000;
  return {
    url: playground.url,
    pageUpSeconds: ready,
    workerReadySeconds: ready,
    close: () => undo.release(),
  };
}

interface Submitted {
  jobId: string;
  eventsUrl: string;
}

async function submit(url: string, body: Record<string, unknown>): Promise<Submitted> {
  const res = await fetch(`${url}/api/imagine`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`imagine: ${res.status} ${await res.text()}`);
  return (await res.json()) as Submitted;
}

/** Follows a job's event stream as the page does; resolves with when the first preview and the end came. */
async function follow(
  url: string,
  job: Submitted,
  onStatus: (data: Record<string, unknown>) => void = () => {},
): Promise<{ firstPreviewMs?: number; endMs: number; event: string; data: Record<string, unknown> }> {
  const t0 = performance.now();
  const res = await fetch(`${url}${job.eventsUrl}`);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let firstPreviewMs: number | undefined;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error('the event stream ended without a final event');
    buffer += value;
    for (let split = buffer.indexOf('\n\n'); split >= 0; split = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      const event = /^event: ?(.*)$/m.exec(block)?.[1];
      const raw = /^data: ?(.*)$/m.exec(block)?.[1];
      if (!event || !raw) continue;
      const data = JSON.parse(raw) as Record<string, unknown>;
      if (event === 'status') {
        if (data.previewUrl && firstPreviewMs === undefined) firstPreviewMs = performance.now() - t0;
        onStatus(data);
      } else {
        await reader.cancel().catch(() => {});
        return {
          ...(firstPreviewMs === undefined ? {} : { firstPreviewMs }),
          endMs: performance.now() - t0,
          event,
          data,
        };
      }
    }
  }
}

/**
 * What the page asks for during `seconds`: the quick requests one after another, and what-is (which
 * waits for the worker) in a loop of its own beside them, as a second tab would send it.
 */
async function probe(url: string, seconds: number, png: Uint8Array, previewUrl: () => string | undefined) {
  const quick: Record<string, () => Promise<Response>> = {
    'GET /': () => fetch(`${url}/`),
    'GET /api/info': () => fetch(`${url}/api/info`),
    'GET library list': () => fetch(`${url}/api/library/default`),
    'GET preview blob': () => fetch(`${url}${previewUrl() ?? '/static/favicon.svg'}`),
  };
  const samples: Record<string, number[]> = Object.fromEntries(
    [...Object.keys(quick), 'POST what-is (3 labels)'].map((k) => [k, []]),
  );
  const end = performance.now() + seconds * 1000;
  const time = async (kind: string, request: () => Promise<Response>) => {
    const t = performance.now();
    const res = await request();
    await res.arrayBuffer();
    samples[kind]!.push(performance.now() - t);
  };
  const quickLoop = async () => {
    while (performance.now() < end)
      for (const [kind, request] of Object.entries(quick)) await time(kind, request);
  };
  const whatisLoop = async () => {
    while (performance.now() < end)
      await time('POST what-is (3 labels)', () =>
        fetch(`${url}/api/whatis?labels=red,green,blue`, {
          method: 'POST',
          headers: { 'content-type': 'image/png' },
          body: png,
        }),
      );
  };
  await Promise.all([quickLoop(), whatisLoop()]);
  return samples;
}

function latencyRows(mode: string, phase: string, samples: Record<string, number[]>): Row[] {
  return Object.entries(samples).map(([kind, ms]) => {
    const sorted = [...ms].sort((a, b) => a - b);
    return {
      name: `${mode} · ${phase} · ${kind}`,
      cells: {
        n: ms.length,
        'p50 ms': percentile(sorted, 50),
        'p99 ms': percentile(sorted, 99),
        'max ms': sorted.at(-1) ?? Number.NaN,
      },
    };
  });
}

async function measureMode(
  mode: 'child' | 'in-process',
  o: Options,
  modelsDir: string,
  redis: PrivateRedis,
  png: Uint8Array,
): Promise<{ rows: Row[]; e2e?: Row; details: Record<string, unknown> }> {
  const dataDir = await mkdtemp(join(tmpdir(), `vqclip-bench-${mode}-`));
  const running = await (mode === 'child' ? startChild : startInProcess)(dataDir, modelsDir, redis.url);
  const details: Record<string, unknown> = {
    pageUpSeconds: running.pageUpSeconds,
    workerReadySeconds: running.workerReadySeconds,
  };
  try {
    // Warm: the first what-is builds its label set, the first imagine its step graph.
    await probe(running.url, 0.5, png, () => undefined);
    const warm = await submit(running.url, { prompt: 'warm up', steps: 2, width: 64, height: 64, seed: 1 });
    await follow(running.url, warm);
    const idle = await probe(running.url, o.probeSeconds / 2, png, () => undefined);

    // A long job keeps the worker busy while the page's requests are timed.
    const busyJob = await submit(running.url, { prompt: 'a busy painting', steps: 1000, seed: 2 });
    let preview: string | undefined;
    const following = follow(running.url, busyJob, (d) => {
      if (typeof d.previewUrl === 'string') preview = d.previewUrl;
    });
    for (let i = 0; i < 600; i++) {
      const s = (await (
        await fetch(`${running.url}/api/jobs/${encodeURIComponent(busyJob.jobId)}`)
      ).json()) as {
        step?: number;
      };
      if ((s.step ?? 0) >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const busy = await probe(running.url, o.probeSeconds, png, () => preview);
    await fetch(`${running.url}/api/jobs/${encodeURIComponent(busyJob.jobId)}/cancel`, { method: 'POST' });
    await following;
    details.idle = idle;
    details.busy = busy;
    const rows = [...latencyRows(mode, 'idle', idle), ...latencyRows(mode, 'painting', busy)];

    let e2e: Row | undefined;
    if (o.e2e && mode === 'child') {
      // A default /imagine as the page sends it: the prompt only.
      const t0 = performance.now();
      const job = await submit(running.url, { prompt: 'a watercolor lighthouse at dawn' });
      const done = await follow(running.url, job);
      const total = (performance.now() - t0) / 1000;
      const result = (done.data.result ?? {}) as {
        steps?: number;
        params?: { width?: number; preset?: string };
      };
      e2e = {
        name: `default preset (${result.params?.preset ?? '?'}, ${result.steps ?? '?'} steps, ${result.params?.width ?? '?'} px)`,
        cells: {
          'first preview s': done.firstPreviewMs === undefined ? Number.NaN : done.firstPreviewMs / 1000,
          'total s': total,
          'goal s': PLAYGROUND_GOALS.imagineSeconds,
        },
      };
      details.e2e = { totalSeconds: total, firstPreviewMs: done.firstPreviewMs, event: done.event, result };
    }
    return { rows, ...(e2e ? { e2e } : {}), details };
  } finally {
    await running.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const playgroundBench: BenchModule = {
  name: 'playground',
  description:
    'npm start as used: start-up, a default imagine end to end, page/API latency while the worker paints',
  async run(args): Promise<BenchResult> {
    const o = parseOptions(args);
    const modelsDir = await mkdtemp(join(tmpdir(), 'vqclip-bench-models-'));
    const redis = await spawnRedis();
    const png = new Uint8Array(
      await sharp({ create: { width: 48, height: 48, channels: 3, background: '#c03' } })
        .png()
        .toBuffer(),
    );
    try {
      await ensureModels(modelsDir);
      const modes = o.compare ? (['child', 'in-process'] as const) : (['child'] as const);
      const latency: Row[] = [];
      const startup: Row[] = [];
      const e2e: Row[] = [];
      const details: Record<string, unknown> = {};
      for (const mode of modes) {
        const m = await measureMode(mode, o, modelsDir, redis, png);
        latency.push(...m.rows);
        if (m.e2e) e2e.push(m.e2e);
        startup.push({
          name: mode,
          cells: {
            'page up s': m.details.pageUpSeconds as number,
            'worker ready s': m.details.workerReadySeconds as number,
          },
        });
        details[mode] = m.details;
      }
      return {
        tables: [
          { title: 'start-up (tiny models already written, Redis running)', rows: startup },
          {
            title: `page and API latency, idle and while a 1000-step imagine runs (goal: p99 <= ${PLAYGROUND_GOALS.pageMs} ms)`,
            rows: latency,
          },
          ...(e2e.length > 0
            ? [{ title: 'a default /imagine through the playground API, end to end', rows: e2e }]
            : []),
        ],
        notes: [
          'child: the worker in its own process (npm start now); in-process: the worker in the web process (npm start before).',
          'what-is goes through the worker too: while it paints, a classify waits for a free slot between steps.',
        ],
        details,
      };
    } finally {
      await redis.stop();
      await rm(modelsDir, { recursive: true, force: true });
    }
  },
};
