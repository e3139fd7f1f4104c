// `npm start` with its metrics on: the main process serves the bot side's /metrics and /healthz on
// METRICS_PORT, its worker child its own on WORKER_METRICS_PORT (the counts of a job live in the
// process that ran it). Open to the network (HOST=0.0.0.0), it asks PLAYGROUND_PASSWORD, and without
// one it does not start at all.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/app/redis-server.js';
import { entryArgs } from '../helpers/entry.js';
import { useProcessCleanup } from '../helpers/processes.js';
import { parseMetrics, sample } from '../helpers/prometheus.js';
import { seedDataDir } from '../helpers/worker-process.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const cleanup = useProcessCleanup();
const PASSWORD = 'npm start password';

function start(env: Record<string, string>): { child: ChildProcess; out: () => string; err: () => string } {
  const base = { ...process.env };
  for (const k of Object.keys(base))
    if (
      /^(REDIS_URL|DATABASE_URL|LOG_LEVEL|QUEUE_PREFIX|PLAYGROUND_|METRICS_|WORKER_METRICS_|HOST|npm_)/.test(
        k,
      )
    )
      delete base[k];
  const child = spawn(process.execPath, entryArgs('src/app/start.ts'), {
    cwd: ROOT,
    env: { ...base, WORKER_WARMUP: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  cleanup.track(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  return { child, out: () => out, err: () => err };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('npm start metrics and password', () => {
  it('serves the bot side and the worker child on their own ports, and asks for the password off loopback', {
    timeout: 150_000,
  }, async () => {
    const dir = await cleanup.tempDir('vqclip-start-metrics-');
    const [port, botPort, workerPort] = [await freePort(), await freePort(), await freePort()];
    const app = start({
      // A migrated PGlite already there: this test is about ports and the password, not initdb.
      DATA_DIR: await seedDataDir(join(dir, 'data')),
      MODELS_DIR: join(dir, 'models'),
      PORT: String(port),
      HOST: '0.0.0.0',
      PLAYGROUND_PASSWORD: PASSWORD,
      METRICS_PORT: String(botPort),
      WORKER_METRICS_PORT: String(workerPort),
    });
    const bot = `http://127.0.0.1:${botPort}`;
    const worker = `http://127.0.0.1:${workerPort}`;
    const page = `http://127.0.0.1:${port}`;
    await until('worker health', async () => ((await fetch(`${worker}/healthz`)).ok ? true : undefined));
    expect(await (await fetch(`${worker}/healthz`)).json()).toEqual({
      status: 'ok',
      checks: { redis: 'ok', models: 'ok', database: 'ok' },
    });
    expect(await (await fetch(`${bot}/healthz`)).json()).toEqual({ status: 'ok', checks: { redis: 'ok' } });

    expect((await fetch(`${page}/api/info`)).status).toBe(401);
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#0c0' } })
      .png()
      .toBuffer();
    const res = await fetch(`${page}/api/whatis?labels=red,green,blue`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', authorization: `Bearer ${PASSWORD}` },
      body: png,
    });
    expect(res.status).toBe(200);

    // The job ran in the worker child: its counts are on the worker's port, the queues on both.
    const w = parseMetrics(await (await fetch(`${worker}/metrics`)).text());
    expect(sample(w, 'vqclip_job_duration_seconds_count', { kind: 'classify', outcome: 'completed' })).toBe(
      1,
    );
    expect(sample(w, 'vqclip_job_wait_seconds_count', { kind: 'classify' })).toBe(1);
    const b = parseMetrics(await (await fetch(`${bot}/metrics`)).text());
    expect(sample(b, 'vqclip_queue_jobs', { kind: 'classify', state: 'waiting' })).toBe(0);
    expect(sample(b, 'vqclip_queue_jobs', { kind: 'imagine', state: 'active' })).toBe(0);
    expect(b.has('vqclip_job_duration_seconds_count')).toBe(false);

    process.kill(-app.child.pid!, 'SIGINT');
    const [code] = await once(app.child, 'exit');
    expect(code).toBe(0);
  });

  it('refuses to start on 0.0.0.0 without PLAYGROUND_PASSWORD, in one line, before Redis or models', {
    timeout: 60_000,
  }, async () => {
    const dir = await cleanup.tempDir('vqclip-start-open-');
    const app = start({
      DATA_DIR: join(dir, 'data'),
      MODELS_DIR: join(dir, 'models'),
      PORT: String(await freePort()),
      HOST: '0.0.0.0',
    });
    const [code] = await once(app.child, 'exit');
    expect(code).toBe(1);
    expect(app.err().trim().split('\n')).toEqual([
      expect.stringMatching(/^npm start: the playground would listen on 0\.0\.0\.0 .*PLAYGROUND_PASSWORD/),
    ]);
    expect(app.out()).not.toMatch(/redis-server|models/);
  });
});
