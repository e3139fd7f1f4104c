// The playground in the bot-only process (`npm run bot`, the compose `bot` service) with no chat
// tokens: it serves and enqueues against a Redis it is given, needs no models, and exits cleanly on
// SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../../src/app/redis-server.js';
import { openConnection } from '../../../src/shared/queues.js';
import { entryArgs } from '../../helpers/entry.js';
import { useProcessCleanup } from '../../helpers/processes.js';
import { useRedis } from '../../helpers/redis.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const redis = useRedis();
const cleanup = useProcessCleanup();

function start(env: Record<string, string>): { child: ChildProcess; stderr: () => string } {
  const base = { ...process.env };
  for (const k of ['REDIS_URL', 'DATABASE_URL', 'LOG_LEVEL', 'PORT', 'QUEUE_PREFIX']) delete base[k];
  const child = spawn(process.execPath, entryArgs('src/bots/main.ts'), {
    cwd: ROOT,
    env: { ...base, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  cleanup.track(child);
  let err = '';
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  return { child, stderr: () => err };
}

async function waitUp(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error('the playground exited');
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

describe('playground process', () => {
  it('serves, enqueues into the given Redis, and stops on SIGTERM', async () => {
    const dir = await cleanup.tempDir('vqclip-bot-');
    const port = await freePort();
    const prefix = `bot${port}`;
    const app = start({ REDIS_URL: redis.url, PORT: String(port), DATA_DIR: dir, QUEUE_PREFIX: prefix });
    const url = `http://127.0.0.1:${port}`;
    await waitUp(`${url}/api/info`, app.child);

    const res = await fetch(`${url}/api/imagine`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a lighthouse', seed: 5 }),
    });
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    // The job sits in this Redis under the configured prefix, for whichever worker comes.
    const connection = await openConnection(redis.url);
    const queue = new Queue('imagine', { connection, prefix });
    const job = await queue.getJob(jobId.split(':')[1]!);
    expect(job?.data).toMatchObject({ prompt: 'a lighthouse', seed: 5, origin: { platform: 'web' } });
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.quit();
    expect((await fetch(`${url}/admin`)).status).toBe(200);

    const exited = once(app.child, 'exit');
    app.child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(app.stderr()).toBe('');
  });

  it('refuses to start without REDIS_URL', async () => {
    const app = start({ PORT: String(await freePort()) });
    const [code] = (await once(app.child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(app.stderr()).toMatch(/REDIS_URL is not set/);
  });
});
