// Real worker processes for pipeline tests: `node --import tsx src/worker/main.ts` with env pointing at
// the test's Redis, a temp MODELS_DIR of tiny random models and a temp DATA_DIR. Logs (pino JSON on
// stdout) are parsed, so tests can wait for "worker ready" or count image batches.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync } from 'node:zlib';
import { openDatabase } from '../../src/shared/db/index.js';
import { migrations } from '../../src/shared/db/migrations.js';
import { encodePng } from '../../src/shared/image/encode.js';
import { writeRandomDallePreset } from '../../src/worker/dalle/random.js';
import { writeRandomModels } from '../../src/worker/models/random.js';
import { entryArgs } from './entry.js';
import { mulberry32 } from './random.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface LogLine {
  level: number;
  name?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface WorkerProcess {
  readonly pid: number;
  /** Every JSON log line so far, in order. */
  readonly logs: readonly LogLine[];
  /** Everything on stderr (start-up errors are printed there). */
  readonly stderr: () => string;
  /** Resolves with the first line (already seen or still to come) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then waits for the exit (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnWorkerOptions {
  redisUrl: string;
  prefix: string;
  modelsDir: string;
  /** A fresh DATA_DIR; pglite is copied in from `dataTemplate` when given (saves PGlite's initdb). */
  dataDir: string;
  dataTemplate?: string;
  /** Extra environment (WORKER_* tuning). */
  env?: Record<string, string>;
  /** @defaultValue 60000 */
  readyTimeoutMs?: number;
}

/** Starts a worker and resolves once it logged "worker ready". */
export async function spawnWorker(options: SpawnWorkerOptions): Promise<WorkerProcess> {
  if (options.dataTemplate) await cp(options.dataTemplate, options.dataDir, { recursive: true });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // The test's own settings must not leak in (a DATABASE_URL would point the worker elsewhere).
    if (v !== undefined && !/^(DATABASE_URL|REDIS_URL|QUEUE_PREFIX|WORKER_|ORT_|LOG_LEVEL)/.test(k))
      env[k] = v;
  }
  Object.assign(env, {
    REDIS_URL: options.redisUrl,
    QUEUE_PREFIX: options.prefix,
    MODELS_DIR: options.modelsDir,
    DATA_DIR: options.dataDir,
    LOG_LEVEL: 'debug',
    WORKER_WARMUP: 'false',
    // Several processes share two cores in tests: one ORT thread each avoids thrashing.
    ORT_INTRA_OP_THREADS: '1',
    ...options.env,
  });
  const child: ChildProcess = spawn(process.execPath, entryArgs('src/worker/main.ts'), {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8');
  // Set VQCLIP_TEST_WORKER_LOGS=DIR to keep every worker's log as DIR/<pid>.log for debugging.
  const logDir = process.env.VQCLIP_TEST_WORKER_LOGS;
  child.stdout!.on('data', (chunk: string) => {
    if (logDir) appendFileSync(join(logDir, `${child.pid}.log`), chunk);
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      if (!text.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { level: 30, msg: text };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.delete(w);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));

  const waitForLog = (predicate: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`worker ${child.pid}: no matching log line within ${timeoutMs} ms\n${stderr}`));
      }, timeoutMs);
      waiters.add(waiter);
      void exited.then(({ code, signal }) => {
        if (!waiters.has(waiter)) return;
        waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`worker ${child.pid} exited (${code ?? signal}) before the log line\n${stderr}`));
      });
    });
  };

  const handle: WorkerProcess = {
    pid: child.pid!,
    logs,
    stderr: () => stderr,
    waitForLog,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop(timeoutMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  try {
    await waitForLog((l) => l.msg === 'worker ready', options.readyTimeoutMs ?? 60_000);
  } catch (error) {
    handle.kill('SIGKILL');
    throw error;
  }
  return handle;
}

/** A temp folder removed by the returned function. */
export async function tempDir(label: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `vqclip-${label}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Tiny random CLIP + VQGAN + minDALL-E (seed 0) in `dir`; returns the dir. Takes well under a second. */
export function writeTinyModels(dir: string): string {
  writeRandomModels({ preset: 'tiny', outDir: dir, seed: 0 });
  writeRandomDallePreset(join(dir, 'dalle'), 'tiny', { seed: 0 });
  return dir;
}

/**
 * A DATA_DIR holding an initialised, migrated PGlite for `embeddingDim`, cached in the OS temp folder
 * across test files and runs: PGlite's initdb takes 5+ s, copying its 40 MB takes milliseconds.
 * The cache key covers the PGlite version and the migrations, so a schema change builds a new one.
 */
export async function pgliteTemplate(embeddingDim: number | undefined): Promise<string> {
  const pkg = JSON.parse(
    await readFile(join(repoRoot, 'node_modules/@electric-sql/pglite/package.json'), 'utf8'),
  ) as { version: string };
  const key = createHash('sha256')
    // Without a dimension: the migrations before the images table (a first open by a process that
    // has no CLIP model), the state an older release's database starts from.
    .update(
      JSON.stringify([
        pkg.version,
        embeddingDim ?? 'none',
        migrations.map((m) => m.sql({ embeddingDim: embeddingDim ?? 1 })),
      ]),
    )
    .digest('hex')
    .slice(0, 16);
  const path = join(tmpdir(), `vqclip-test-pglite-${key}`);
  try {
    await readFile(join(path, 'ready'));
    return path;
  } catch {
    // Not built yet.
  }
  const building = `${path}.tmp-${randomUUID()}`;
  const db = await openDatabase({ dataDir: building }, embeddingDim === undefined ? {} : { embeddingDim });
  await db.close();
  await writeFile(join(building, 'ready'), pkg.version);
  try {
    // Atomic: another test file building the same template at the same time keeps its own.
    await rename(building, path);
  } catch {
    await rm(building, { recursive: true, force: true });
  }
  return path;
}

/** The embedding size of the tiny random CLIP (`writeRandomModels({ preset: 'tiny' })`). */
export const TINY_EMBEDDING_DIM = 16;

/**
 * Makes `dataDir` a DATA_DIR that already holds the migrated PGlite for the tiny models (a copy of
 * pgliteTemplate), so a program started on it skips PGlite's initdb (5+ s). For tests of something
 * other than a first start on an empty DATA_DIR; returns `dataDir`. With `'no model'`: a first open
 * by a process without a CLIP model (the migrations before the images table), where an older
 * release's database starts from.
 */
export async function seedDataDir(
  dataDir: string,
  embeddingDim: number | 'no model' = TINY_EMBEDDING_DIM,
): Promise<string> {
  await cp(await pgliteTemplate(embeddingDim === 'no model' ? undefined : embeddingDim), dataDir, {
    recursive: true,
  });
  return dataDir;
}

// --- Inputs for worker tests: images good and bad ----------------------------------------------

/** A seeded RGB noise PNG (mulberry32), different for every seed. */
export async function noisePng(width: number, height: number, seed: number): Promise<Uint8Array> {
  const rand = mulberry32(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
  return encodePng({ data, width, height });
}

function pngChunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([head, body, crc]);
}

/** A valid-looking PNG of a few hundred bytes whose header declares width x height (a decompression bomb). */
export function pixelBombPng(width = 30_000, height = 30_000): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1024))),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

/** The first half of a real PNG: a header that promises pixels the file no longer has. */
export async function truncatedPng(): Promise<Uint8Array> {
  const full = await noisePng(48, 48, 99);
  return full.subarray(0, Math.floor(full.length / 2));
}
