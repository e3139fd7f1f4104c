// A private redis-server per test file (no mocks: BullMQ is Lua scripts), on a free port, without
// persistence and with noeviction like production. Files running in parallel each get their own.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';

export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function ping(port: number): Promise<boolean> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
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

async function spawnOnce(port: number): Promise<ChildProcess | undefined> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  for (let i = 0; i < 100 && !exited; i++) {
    const raced = await Promise.race([
      ping(port),
      spawnError.then((e) => {
        throw new Error(`cannot start redis-server (apt-get install -y redis-server): ${e.message}`);
      }),
    ]);
    if (raced) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!exited) child.kill('SIGKILL');
  return undefined;
}

/** Starts a private server; retries on another port if the chosen one was taken meanwhile. */
export async function startRedis(): Promise<RedisServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = await spawnOnce(port);
    if (!child) continue;
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      async stop() {
        if (child.exitCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      },
    };
  }
  throw new Error('could not start redis-server on a free port');
}

/**
 * Registers beforeAll/afterAll for one private server in the calling test file. Read `.url` inside
 * tests or hooks (it is set once beforeAll has run).
 */
export function useRedis(): { readonly url: string } {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get url() {
      if (!server) throw new Error('redis not started yet: use the url inside a test or hook');
      return server.url;
    },
  };
}

/** A prefix unique to one test, so queues and keys of different tests never meet. */
export function testPrefix(): string {
  return `test-${randomUUID()}`;
}

/** Deletes every key under a prefix (after obliterating queues, for blobs, quotas and markers). */
export async function deletePrefix(connection: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await connection.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (found.length > 0) await connection.unlink(...found);
  } while (cursor !== '0');
}
