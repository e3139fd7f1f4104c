// `npm start` as a user runs it: `npm start` in its own process group (as a terminal runs it), with
// its own DATA_DIR, MODELS_DIR and PORT and no REDIS_URL (so it spawns its private redis-server),
// checked over HTTP, then stopped the ways people stop it: Ctrl-C (SIGINT to the whole group) and
// SIGKILL, in the middle of a generation. Nothing it started may outlive it, and a restart on the
// same DATA_DIR finds the job again.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureModels } from '../../src/app/models-setup.js';
import { freePort } from '../../src/app/redis-server.js';
import { entryArgs } from '../helpers/entry.js';
import { useProcessCleanup } from '../helpers/processes.js';
import { seedDataDir } from '../helpers/worker-process.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const cleanup = useProcessCleanup();
let models: string;

beforeAll(async () => {
  // One set of tiny models for every start here (writing them is tested once, below).
  models = await mkdtemp(join(tmpdir(), 'vqclip-start-models-'));
  await ensureModels(models);
});
afterAll(async () => {
  await rm(models, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  output: () => string;
  errors: () => string;
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function baseEnv(): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const k of Object.keys(base))
    if (/^(REDIS_URL|DATABASE_URL|LOG_LEVEL|QUEUE_PREFIX|npm_)/.test(k)) delete base[k];
  return base;
}

/** `npm start`, or (`direct`) the entry itself, as the leader of a new process group. */
function startApp(env: Record<string, string>, how: 'npm' | 'direct' = 'npm'): Started {
  const [command, args] =
    how === 'npm' ? ['npm', ['start', '--silent']] : [process.execPath, entryArgs('src/app/start.ts')];
  const child = spawn(command, args as string[], {
    cwd: ROOT,
    env: { ...baseEnv(), WORKER_WARMUP: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  cleanup.track(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const waitFor = (pattern: RegExp, timeoutMs = 90_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${out}\n${err}`)),
        timeoutMs,
      );
      const check = () => {
        const match = out.match(pattern);
        if (match) {
          clearTimeout(timer);
          listeners.delete(check);
          resolve(match);
        }
      };
      listeners.add(check);
      void exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`npm start exited with ${code} before ${pattern}:\n${out}\n${err}`));
      });
      check();
    });
  return { child, output: () => out, errors: () => err, waitFor, exited };
}

/** Every process below `pid` (children, grandchildren...). */
function descendants(pid: number): number[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number) as [number, number]);
  const out: number[] = [];
  const walk = (parent: number) => {
    for (const [p, pp] of rows)
      if (pp === parent) {
        out.push(p);
        walk(p);
      }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function allGone(pids: readonly number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = pids.filter(alive);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface JobState {
  state: string;
  step?: number;
  text: string;
}

async function jobState(url: string, jobId: string): Promise<JobState & { status: number }> {
  const res = await fetch(`${url}/api/jobs/${encodeURIComponent(jobId)}`);
  return { status: res.status, ...((await res.json()) as JobState) };
}

/** Submits a long imagine and waits until the worker is painting it. */
async function paintSlowly(url: string): Promise<string> {
  const res = await fetch(`${url}/api/imagine`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'a slow painting', steps: 1000, width: 64, height: 64, seed: 5 }),
  });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };
  const deadline = Date.now() + 90_000;
  for (;;) {
    const s = await jobState(url, jobId);
    if (s.state === 'active' && (s.step ?? 0) >= 1) return jobId;
    if (Date.now() > deadline) throw new Error(`the job did not start: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('npm start', () => {
  it('boots redis, models, worker and playground; Ctrl-C mid-generation stops everything with exit 0; a restart resumes the job; SIGKILL leaves nothing', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    const port = await freePort();
    const env = { DATA_DIR: join(dir, 'data'), MODELS_DIR: join(dir, 'models'), PORT: String(port) };
    const app = startApp(env);
    const [, url] = await app.waitFor(/vqclip playground: (http:\/\/\S+)/);
    const [, redisUrl] = await app.waitFor(/redis: (redis:\/\/\S+) \(private, data in (\S+)/);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    expect(app.output()).toMatch(/wrote tiny random-weight models/);
    expect(app.output()).toMatch(/RANDOM WEIGHTS/);
    expect(app.output()).toMatch(/chat adapters: none/);
    expect(existsSync(join(dir, 'models', 'clip', 'tokenizer.json'))).toBe(true);
    expect(existsSync(join(dir, 'data', 'stack.lock'))).toBe(true);
    await app.waitFor(/worker ready/);

    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<h2 id="imagine-title">Imagine</h2>');
    // The worker process answers a real job (custom labels: no vocabulary to embed).
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#c00' } })
      .png()
      .toBuffer();
    const res = await fetch(`${url}/api/whatis?labels=red,green,blue`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: png,
    });
    expect(res.status).toBe(200);
    const { labels } = (await res.json()) as { labels: { label: string; prob: number }[] };
    expect(labels.map((l) => l.label).sort()).toEqual(['blue', 'green', 'red']);

    const jobId = await paintSlowly(url!);
    const tree = descendants(app.child.pid!);
    // npm's node, the worker, the watchdog and redis-server at least.
    expect(tree.length).toBeGreaterThanOrEqual(4);
    // Ctrl-C in a terminal: SIGINT to every process of the foreground group, npm relays one more.
    process.kill(-app.child.pid!, 'SIGINT');
    const { code, signal } = await app.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(app.output()).toMatch(/stopping…\n(.*\n)*stopped\n$/);
    expect(app.errors()).not.toMatch(/Error/);
    expect(await allGone(tree, 5000)).toEqual([]);
    expect(existsSync(join(dir, 'data', 'stack.lock'))).toBe(false);
    expect(existsSync(join(dir, 'data', 'worker.lock'))).toBe(false);
    await expect(fetch(`${url}/`)).rejects.toThrow();
    expect(redisUrl).toMatch(/^redis:/);

    // Same DATA_DIR: the private Redis reads its append-only file, the job is there and runs again.
    const again = startApp(env, 'direct');
    await again.waitFor(/vqclip playground/);
    const s = await jobState(url!, jobId);
    expect(s.status).toBe(200);
    expect(['waiting', 'active']).toContain(s.state);
    await again.waitFor(/worker ready/);
    const deadline = Date.now() + 60_000;
    let resumed: JobState | undefined;
    while (Date.now() < deadline) {
      resumed = await jobState(url!, jobId);
      if (resumed.state === 'active' && (resumed.step ?? 0) >= 1) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(resumed?.state).toBe('active');
    // SIGKILL of the process running the stack, mid-generation: the worker notices its IPC channel
    // close and the watchdog its pipe, and both go.
    const againTree = [again.child.pid!, ...descendants(again.child.pid!)];
    again.child.kill('SIGKILL');
    expect(await allGone(againTree, 15_000), again.output()).toEqual([]);
  }, 240_000);

  it('leaves nothing behind when npm start is killed with SIGKILL mid-generation', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    // A migrated PGlite already there (the first start on an empty DATA_DIR is the test above).
    const data = await seedDataDir(join(dir, 'data'));
    const app = startApp({ DATA_DIR: data, MODELS_DIR: models, PORT: String(await freePort()) });
    const [, url] = await app.waitFor(/vqclip playground: (http:\/\/\S+)/);
    await app.waitFor(/worker ready/);
    await paintSlowly(url!);
    const tree = descendants(app.child.pid!);
    // npm cannot forward anything now; the process under it notices its parent is gone.
    process.kill(app.child.pid!, 'SIGKILL');
    expect(await allGone(tree, 15_000), app.output()).toEqual([]);
  }, 180_000);

  it('says the port is in use before starting Redis or loading models', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    const blocker = createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    try {
      const started = Date.now();
      const app = startApp(
        { DATA_DIR: join(dir, 'data'), MODELS_DIR: join(dir, 'models'), PORT: String(port) },
        'direct',
      );
      const { code } = await app.exited;
      expect(code).toBe(1);
      expect(app.errors()).toContain(`port ${port} on 127.0.0.1 is in use: set PORT to a free port`);
      expect(app.output()).not.toMatch(/redis-server|worker/);
      expect(existsSync(join(dir, 'models'))).toBe(false);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      blocker.close();
    }
  });

  it('says how to install redis-server when it is missing', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    const app = startApp(
      {
        DATA_DIR: join(dir, 'data'),
        MODELS_DIR: join(dir, 'models'),
        PORT: String(await freePort()),
        // No redis-server on this PATH (node itself is started by absolute path).
        PATH: join(dir, 'empty-path'),
      },
      'direct',
    );
    const { code } = await app.exited;
    expect(code).toBe(1);
    expect(app.errors()).toContain('apt-get install -y redis-server');
    expect(app.errors()).toContain('REDIS_URL');
    // It failed before writing models, and let go of its lock.
    expect(existsSync(join(dir, 'models'))).toBe(false);
    expect(existsSync(join(dir, 'data', 'stack.lock'))).toBe(false);
  });
});
