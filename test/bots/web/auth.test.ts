// The playground and /admin off loopback: a password is required, the process refuses to start
// without one (one line, exit 1), and with one every route asks for it (Basic, any user name, or
// Bearer). Real playground over real HTTP and a real Redis; the bot process spawned for the refusal.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../src/app/redis-server.js';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { isLoopbackHost } from '../../../src/bots/web/auth.js';
import { Library } from '../../../src/bots/web/library.js';
import { type RunningPlayground, startPlayground } from '../../../src/bots/web/server.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { entryArgs } from '../../helpers/entry.js';
import { useProcessCleanup } from '../../helpers/processes.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const redis = useRedis();
const cleanup = useProcessCleanup();
const PASSWORD = 'a long enough secret';
let connection: Redis;
let libraryDir: string;
const prefix = testPrefix();
const running: RunningPlayground[] = [];
const clients: JobClient[] = [];

beforeAll(async () => {
  connection = await openConnection(redis.url);
  libraryDir = await mkdtemp(join(tmpdir(), 'vqclip-auth-'));
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.close()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await deletePrefix(connection, prefix);
  await connection.quit();
  await rm(libraryDir, { recursive: true, force: true });
});

async function start(host: string, port: number, password?: string): Promise<RunningPlayground> {
  const jobs = new JobClient({ connection, prefix });
  clients.push(jobs);
  const playground = await startPlayground({
    jobs,
    blobs: new RedisBlobStore({ connection, prefix, ttlSeconds: 60 }),
    library: new Library(libraryDir),
    admin: { connection, prefix },
    host,
    port,
    ...(password === undefined ? {} : { password }),
  });
  running.push(playground);
  return playground;
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('isLoopbackHost', () => {
  it('knows loopback from the rest', () => {
    for (const h of [
      '127.0.0.1',
      '127.8.9.10',
      'localhost',
      '::1',
      '[::1]',
      '0:0:0:0:0:0:0:1',
      '::ffff:127.0.0.1',
    ])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of [
      '0.0.0.0',
      '::',
      '10.0.0.5',
      '192.168.1.2',
      '::ffff:10.0.0.1',
      'bot.example.com',
      'fe80::1',
    ])
      expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe('playground off loopback', () => {
  it('refuses to start without a password, and listens on nothing', async () => {
    const port = await freePort();
    await expect(start('0.0.0.0', port)).rejects.toThrow(
      /listen on 0\.0\.0\.0 \(HOST\), not on loopback, without a password: set PLAYGROUND_PASSWORD/,
    );
    expect(await refusesConnections(port)).toBe(true);
  });

  it('asks every route for the password, /admin and the API included', async () => {
    const playground = await start('0.0.0.0', 0, PASSWORD);
    const url = `http://127.0.0.1:${playground.port}`;
    for (const path of ['/', '/api/info', '/admin', '/admin/api/queues', '/static/app.js']) {
      const res = await fetch(`${url}${path}`);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate'), path).toMatch(/^Basic realm=/);
      const wrong = await fetch(`${url}${path}`, { headers: { authorization: basic('admin', 'guess') } });
      expect(wrong.status, path).toBe(401);
      const bearerWrong = await fetch(`${url}${path}`, { headers: { authorization: 'Bearer guess' } });
      expect(bearerWrong.status, path).toBe(401);
    }
    const page = await fetch(`${url}/`, { headers: { authorization: basic('anyone', PASSWORD) } });
    expect(page.status).toBe(200);
    const admin = await fetch(`${url}/admin/api/queues`, {
      headers: { authorization: basic('x', PASSWORD) },
    });
    expect(admin.status).toBe(200);
    const api = await fetch(`${url}/api/info`, { headers: { authorization: `Bearer ${PASSWORD}` } });
    expect(api.status).toBe(200);
    expect(await api.json()).toHaveProperty('limits');
    // A mutating request with the password still meets the cross-origin check behind it.
    const post = await fetch(`${url}/api/imagine`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${PASSWORD}`,
        origin: 'https://evil.example',
        'content-type': 'application/json',
      },
      body: '{}',
    });
    expect(post.status).toBe(403);
  });

  it('stays open on loopback without a password, and asks for one when it is set', async () => {
    const open = await start('127.0.0.1', 0);
    expect((await fetch(`${open.url}/api/info`)).status).toBe(200);
    const guarded = await start('127.0.0.1', 0, PASSWORD);
    expect((await fetch(`${guarded.url}/api/info`)).status).toBe(401);
  });

  it('the bot process says why in one line and exits 1, before connecting anything', {
    timeout: 60_000,
  }, async () => {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (/^(DISCORD_|SLACK_|PLAYGROUND_|LOG_LEVEL)/.test(k)) delete env[k];
    // No Redis at this URL: the refusal must come first.
    const child = cleanup.track(
      spawn(process.execPath, entryArgs('src/bots/main.ts'), {
        cwd: ROOT,
        env: { ...env, LOG_LEVEL: 'silent', HOST: '0.0.0.0', REDIS_URL: 'redis://127.0.0.1:1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bot: the playground would listen on 0\.0\.0\.0 .*PLAYGROUND_PASSWORD/);
  });
});
