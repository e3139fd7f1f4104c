// The harness side of bot-process.ts: starts a bot in a child process (node --import tsx, as `npm
// run bot` runs, with --expose-gc for its heap figures), tells it what to run over IPC, and asks it
// for its figures. A child that fails to start says why; one the harness no longer needs is closed.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../src/shared/config.js';

export interface BotProcessSpec {
  redisUrl: string;
  prefix: string;
  dataDir: string;
  quota: Config['quota'];
  throttleMs: number;
  /** As DISCORD_* would configure it (`shards`: DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT). */
  discord?: Config['discord'] & { workConcurrency?: number };
  slack?: { botToken: string; signingSecret: string; appToken: string; apiUrl: string };
  web?: { userId: string };
}

export interface BotProcessFigures {
  /** ioredis commands this process sent, in all and per second ([unix second, count]). */
  redisCommands: number;
  redisPerSecond: [number, number][];
  /** Heap after a full GC, MiB: now and at the start. */
  heapMb: number;
  heapStartMb: number;
  /** The position told to each submission: [`${kind}:${id}`, position]. */
  told: [string, number][];
  /** Discord interactions this process received (its shards' guilds). */
  interactions: number;
  /** Per interaction: [id, its gateway packet reached discord.js, interactionCreate] (Date.now). */
  /** Per interaction: id, then AckStageTimes (NaN arrives as null: IPC is JSON). */
  stages: [string, number | null, number | null, number | null][];
  /** CPU time the process used so far (user + system). */
  cpuMs: number;
}

export type ToBot =
  | { type: 'start'; spec: BotProcessSpec }
  | { type: 'figures'; id: number }
  | { type: 'close' };
export type FromBot =
  | { type: 'ready'; metricsUrl?: string; webUrl?: string }
  | { type: 'failed'; error: string }
  | { type: 'figures'; id: number; figures: BotProcessFigures }
  | { type: 'closed' };

export interface BotProcess {
  readonly name: string;
  readonly pid: number | undefined;
  readonly metricsUrl: string | undefined;
  readonly webUrl: string | undefined;
  figures(): Promise<BotProcessFigures>;
  close(): Promise<void>;
}

const ENTRY = fileURLToPath(new URL('./bot-process.ts', import.meta.url));

export async function startBotProcess(
  name: string,
  spec: BotProcessSpec,
  timeoutMs = 60_000,
): Promise<BotProcess> {
  const child: ChildProcess = fork(ENTRY, [], {
    // SOAK_BOT_CPU_PROF=<dir>: each bot process writes a V8 CPU profile there when it exits.
    execArgv: [
      '--expose-gc',
      ...(process.env.SOAK_BOT_CPU_PROF
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SOAK_BOT_CPU_PROF}`]
        : []),
      '--import',
      'tsx',
    ],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = await new Promise<Extract<FromBot, { type: 'ready' }>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`bot process ${name}: not ready in ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.on('message', (m: FromBot) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        resolve(m);
      } else if (m.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`bot process ${name} failed to start: ${m.error}`));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`bot process ${name} exited with ${code} before it was ready`));
    });
    child.send({ type: 'start', spec } satisfies ToBot);
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  let next = 0;
  return {
    name,
    pid: child.pid,
    metricsUrl: ready.metricsUrl,
    webUrl: ready.webUrl,
    figures() {
      const id = ++next;
      return new Promise<BotProcessFigures>((resolve, reject) => {
        const onMessage = (m: FromBot) => {
          if (m.type === 'figures' && m.id === id) {
            child.off('message', onMessage);
            resolve(m.figures);
          }
        };
        child.on('message', onMessage);
        void exited.then((code) => reject(new Error(`bot process ${name} exited with ${code}`)));
        child.send({ type: 'figures', id } satisfies ToBot);
      });
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send({ type: 'close' } satisfies ToBot);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
