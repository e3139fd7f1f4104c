// `npm start` as a user runs it: a child process with its own DATA_DIR, MODELS_DIR and PORT and no
// REDIS_URL (so it spawns its private redis-server), checked over HTTP, then stopped with SIGINT.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/app/redis-server.js';
import { useProcessCleanup } from '../helpers/processes.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const cleanup = useProcessCleanup();

interface Started {
  child: ChildProcess;
  output: () => string;
  errors: () => string;
  waitFor: (pattern: RegExp) => Promise<RegExpMatchArray>;
}

function startApp(env: Record<string, string>): Started {
  const base = { ...process.env };
  delete base.REDIS_URL;
  delete base.DATABASE_URL;
  delete base.LOG_LEVEL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/app/start.ts'], {
    cwd: ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
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
  const waitFor = (pattern: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = out.match(pattern);
        if (match) {
          listeners.delete(check);
          resolve(match);
        }
      };
      listeners.add(check);
      child.once('exit', (code) =>
        reject(new Error(`npm start exited with ${code} before ${pattern}:\n${out}\n${err}`)),
      );
      check();
    });
  return { child, output: () => out, errors: () => err, waitFor };
}

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

describe('npm start', () => {
  it('boots redis, models, worker and playground, serves the page, and stops cleanly on SIGINT', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    const port = await freePort();
    const app = startApp({
      DATA_DIR: join(dir, 'data'),
      MODELS_DIR: join(dir, 'models'),
      PORT: String(port),
      // The default vocabulary's embeddings are not needed here; skipping them keeps the test short.
      WORKER_WARMUP: 'false',
    });
    const [, url] = await app.waitFor(/vqclip playground: (http:\/\/\S+)/);
    const [, redisUrl] = await app.waitFor(/redis: (redis:\/\/\S+) \(private/);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    expect(app.output()).toMatch(/wrote tiny random-weight models/);
    expect(app.output()).toMatch(/RANDOM WEIGHTS/);
    expect(existsSync(join(dir, 'models', 'clip', 'tokenizer.json'))).toBe(true);
    expect(existsSync(join(dir, 'data', 'worker.lock'))).toBe(true);
    expect(await answers(redisUrl!)).toBe(true);

    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<h2 id="imagine-title">Imagine</h2>');
    const info = (await (await fetch(`${url}/api/info`)).json()) as { randomWeights: boolean };
    expect(info.randomWeights).toBe(true);

    // The in-process worker answers a real job (custom labels: no vocabulary to embed).
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
    expect(labels.reduce((s, l) => s + l.prob, 0)).toBeCloseTo(1, 5);

    const exited = once(app.child, 'exit');
    app.child.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(app.output()).toMatch(/stopping…\nstopped\n/);
    expect(app.errors()).not.toMatch(/Error/);
    // Everything it started is gone: its redis-server, its lock, its port.
    expect(await answers(redisUrl!)).toBe(false);
    expect(existsSync(join(dir, 'data', 'worker.lock'))).toBe(false);
    await expect(fetch(`${url}/`)).rejects.toThrow();
  });

  it('says how to install redis-server when it is missing', async () => {
    const dir = await cleanup.tempDir('vqclip-start-');
    const app = startApp({
      DATA_DIR: join(dir, 'data'),
      MODELS_DIR: join(dir, 'models'),
      PORT: String(await freePort()),
      // No redis-server on this PATH (node itself is started by absolute path).
      PATH: join(dir, 'empty-path'),
    });
    const [code] = (await once(app.child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(app.errors()).toContain('apt-get install -y redis-server');
    expect(app.errors()).toContain('REDIS_URL');
    // It failed before writing models, and let go of its lock.
    expect(existsSync(join(dir, 'models'))).toBe(false);
    expect(existsSync(join(dir, 'data', 'worker.lock'))).toBe(false);
  });
});
