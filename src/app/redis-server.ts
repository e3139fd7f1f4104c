// A private redis-server for `npm start` when no REDIS_URL is given: loopback only, on a free port,
// nothing written to disk (--save '' and no AOF: the queue only has to live as long as the process),
// and noeviction as BullMQ requires. The child is stopped with the stack, and killed if we exit.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { CodedError } from '../shared/errors.js';

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

export interface SpawnRedisOptions {
  /** @defaultValue 'redis-server' (from PATH) */
  command?: string;
  /** How long to wait for the first PONG. @defaultValue 10000 */
  startTimeoutMs?: number;
}

export const INSTALL_REDIS_HINT =
  'redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install -y redis-server; ' +
  'macOS: brew install redis) or point REDIS_URL at a Redis you run (redis://host:6379).';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('could not pick a free port');
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

/**
 * Starts redis-server and resolves once it answers. Throws `unavailable` with install instructions
 * when the binary is missing, or with its stderr when it exits early.
 */
export async function spawnRedis(options: SpawnRedisOptions = {}): Promise<PrivateRedis> {
  const command = options.command ?? 'redis-server';
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      command,
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
      // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and Redis
      // must outlive our graceful shutdown (workers hand jobs back through it), so we stop it last.
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    const failed = new Promise<Error>((resolve) => {
      child.once('error', resolve);
      child.once('exit', (code, signal) => resolve(new Error(`exited with ${signal ?? code}`)));
    });
    let early: Error | undefined;
    void failed.then((e) => {
      early = e;
    });
    while (!early && Date.now() < deadline) {
      if (await ping(port)) return wrap(child, port);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!early) {
      child.kill('SIGKILL');
      throw new CodedError(
        'unavailable',
        `redis-server did not answer within ${options.startTimeoutMs ?? 10_000} ms`,
      );
    }
    if ((early as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CodedError('unavailable', INSTALL_REDIS_HINT, { details: { command } });
    }
    // Someone took the port between our check and redis binding it: try another.
    if (/Address already in use/i.test(stderr) && attempt < 4) continue;
    throw new CodedError('unavailable', `redis-server failed to start (${early.message}): ${stderr.trim()}`);
  }
}

function wrap(child: ChildProcess, port: number): PrivateRedis {
  // A crash of ours must not leave an orphan server behind; 'exit' handlers can only do sync work.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    stop() {
      stopping ??= (async () => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
