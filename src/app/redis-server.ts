// A private redis-server for `npm start` (and the tests) when no REDIS_URL is given: loopback only,
// on a free port, noeviction as BullMQ requires. With `dataDir` it keeps an append-only file there,
// so queued jobs, previews and history survive a restart; without, it writes nothing to disk.
// redis-server runs under a small watchdog (redis-watchdog.mjs) that stops it when this process
// ends in any way, SIGKILL included.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { totalmem } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { CodedError } from '../shared/errors.js';

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  /** redis-server's own pid (a new one after the watchdog restarted a killed server). */
  readonly pid: number;
  /** The watchdog's pid (the process this one spawned). */
  readonly watchdogPid: number;
  /** Where the append-only file lives; undefined when nothing is persisted. */
  readonly dataDir: string | undefined;
  stop(): Promise<void>;
}

export interface SpawnRedisOptions {
  /** @defaultValue 'redis-server' (from PATH) */
  command?: string;
  /** How long to wait for the first PONG. @defaultValue 10000 */
  startTimeoutMs?: number;
  /**
   * Redis's maxmemory in bytes. At it, noeviction (which BullMQ needs) makes Redis refuse writes; the
   * bot's memory guard refuses new jobs a little before. @defaultValue defaultMaxmemory()
   */
  maxmemoryBytes?: number;
  /** Keep an append-only file (AOF) in this folder. @defaultValue none: nothing on disk */
  dataDir?: string;
  /**
   * When the AOF is fsynced, with `dataDir` (docs/RELIABILITY.md has the measurement behind the
   * default). @defaultValue 'everysec'
   */
  appendfsync?: AppendFsync;
  /**
   * How long the watchdog waits, once this process is gone, before stopping the server (a worker
   * child may still be handing its job back). @defaultValue 1000
   */
  orphanGraceMs?: number;
}

export const INSTALL_REDIS_HINT =
  'redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install -y redis-server; ' +
  'macOS: brew install redis) or point REDIS_URL at a Redis you run (redis://host:6379).';

export type AppendFsync = 'always' | 'everysec' | 'no';

/**
 * A maxmemory suited to this machine: a quarter of its memory (or of the container's cgroup limit,
 * when lower), between 256 MiB and 8 GiB. Redis shares the machine with the models, the database
 * and the bot; with previews one key per job, images are what grows, and they have a TTL.
 */
export function defaultMaxmemory(total = totalmem(), cgroupLimit = readCgroupLimit()): number {
  const available = cgroupLimit === undefined ? total : Math.min(total, cgroupLimit);
  const MiB = 1024 * 1024;
  return Math.min(8192 * MiB, Math.max(256 * MiB, Math.floor(available / 4 / MiB) * MiB));
}

function readCgroupLimit(): number | undefined {
  // cgroup v2, then v1; 'max' or an absurd v1 number mean no limit.
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const value = Number(readFileSync(file, 'utf8').trim());
      if (Number.isFinite(value) && value > 0 && value < 2 ** 60) return value;
    } catch {
      // not this cgroup version
    }
  }
  return undefined;
}

const WATCHDOG = fileURLToPath(new URL('./redis-watchdog.mjs', import.meta.url));

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

/** The executable `command` names: itself when it is a path, else the first match on PATH. */
export function findExecutable(command: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates =
    isAbsolute(command) || command.includes('/')
      ? [resolve(command)]
      : path
          .split(delimiter)
          .filter((dir) => dir !== '')
          .map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function ping(port: number): Promise<boolean> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    // LOADING (a large AOF being read) also lands here: not ready yet.
    return false;
  } finally {
    client.disconnect();
  }
}

function redisArgs(port: number, dataDir: string | undefined, fsync: AppendFsync): string[] {
  const common = ['--port', String(port), '--bind', '127.0.0.1', '--maxmemory-policy', 'noeviction'];
  const persistence =
    dataDir === undefined
      ? ['--save', '', '--appendonly', 'no']
      : // AOF only (no RDB snapshots): every write reaches the file within a second.
        ['--dir', dataDir, '--save', '', '--appendonly', 'yes', '--appendfsync', fsync];
  return [...common, ...persistence, '--daemonize', 'no', '--loglevel', 'warning'];
}

/**
 * Starts redis-server and resolves once it answers. Throws `unavailable` with install instructions
 * when the binary is missing, or with its stderr when it exits early.
 */
export async function spawnRedis(options: SpawnRedisOptions = {}): Promise<PrivateRedis> {
  const command = options.command ?? 'redis-server';
  const executable = findExecutable(command);
  if (executable === undefined)
    throw new CodedError('unavailable', INSTALL_REDIS_HINT, { details: { command } });
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir);
  if (dataDir !== undefined) mkdirSync(dataDir, { recursive: true });
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  const maxmemory = options.maxmemoryBytes ?? defaultMaxmemory();
  if (!Number.isInteger(maxmemory) || maxmemory < 1024 * 1024)
    throw new RangeError('maxmemoryBytes must be an integer >= 1 MiB');
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        WATCHDOG,
        String(options.orphanGraceMs ?? 1000),
        executable,
        ...redisArgs(port, dataDir, options.appendfsync ?? 'everysec'),
        ...['--maxmemory', String(maxmemory)],
      ],
      // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and Redis
      // must outlive our graceful shutdown (workers hand jobs back through it), so we stop it last.
      { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    let redisPid = -1;
    child.stdout?.on('data', (chunk: Buffer) => {
      // The last one: the watchdog prints a line for each server it starts.
      const matches = [...chunk.toString().matchAll(/pid (\d+)/g)];
      if (matches.length > 0) redisPid = Number(matches.at(-1)![1]);
    });
    let early: Error | undefined;
    child.once('error', (e) => {
      early = e;
    });
    child.once('exit', (code, signal) => {
      early ??= new Error(`exited with ${signal ?? code}`);
    });
    while (!early && Date.now() < deadline) {
      if (redisPid > 0 && (await ping(port))) return wrap(child, port, () => redisPid, dataDir);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!early) {
      child.kill('SIGTERM');
      throw new CodedError('unavailable', `redis-server did not answer within ${timeoutMs} ms`);
    }
    // Someone took the port between our check and redis binding it: try another.
    if (/Address already in use/i.test(stderr) && attempt < 4) continue;
    throw new CodedError('unavailable', `redis-server failed to start (${early.message}): ${stderr.trim()}`);
  }
}

function wrap(
  child: ChildProcess,
  port: number,
  pid: () => number,
  dataDir: string | undefined,
): PrivateRedis {
  // The pipe closes when we exit, and the watchdog then stops the server; an orderly exit of ours
  // that skipped stop() still tells it at once.
  const stopOnExit = () => child.kill('SIGTERM');
  process.once('exit', stopOnExit);
  // Nothing else keeps the loop alive for it: the stack's own handles do.
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return pid();
    },
    watchdogPid: child.pid ?? -1,
    dataDir,
    stop() {
      stopping ??= (async () => {
        process.off('exit', stopOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
