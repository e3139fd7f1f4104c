// Starts the worker of `npm start` as a child process (worker-process.ts) and speaks its small IPC
// protocol: configuration in, ready / failed / stopped out. The child has its own process group, so
// a Ctrl-C in the terminal reaches only the parent, which stops the web side first and then the
// worker; the child also stops by itself when this process dies (its IPC channel closes).
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../shared/config.js';
import { CodedError, type ErrorCode } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { LoadModelsOptions } from '../worker/runtime/models.js';

/** Parent -> child. */
export type ToWorker =
  | {
      type: 'start';
      config: Config;
      logLevel: string;
      /** JSON-safe overrides of loadModels' options (tests: a small default vocabulary). */
      models?: Partial<LoadModelsOptions>;
    }
  | { type: 'stop' };

/** Child -> parent. */
export type FromWorker =
  /** From here on a stop must be orderly (the database is opening); before, a kill loses nothing. */
  | { type: 'opening-database' }
  | { type: 'ready'; pid: number }
  | { type: 'failed'; code: string; message: string }
  | { type: 'stopped' };

export interface WorkerChildOptions {
  /** The worker's configuration; secrets the worker does not need are left out before sending. */
  config: Config;
  /** pino level of the child's log lines (JSON on this process's stdout). */
  logLevel: string;
  models?: Partial<LoadModelsOptions>;
  logger: Logger;
  /** Called when the child exits without having been asked to (a crash). */
  onUnexpectedExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** How long stop() waits before SIGKILL. @defaultValue 20000 */
  stopTimeoutMs?: number;
  /**
   * A compiled worker-process.js (scripts/build.mjs) to run instead of the entry beside this file:
   * code run from source (tests) can start the child npm start runs, without tsx's loader (~3 s
   * more CPU a start). @defaultValue the entry beside this file
   */
  compiledEntry?: string;
}

export interface WorkerChild {
  readonly pid: number;
  /** Resolves once the worker serves its queues; rejects with its start-up error. */
  readonly ready: Promise<void>;
  /** Hands running jobs back (as configured) and waits for the exit; safe to call twice. */
  stop(): Promise<void>;
}

// Compiled (scripts/build.mjs: what npm start runs) the child is plain JavaScript beside this file;
// run from source (tsx, as the Docker image does) it goes through tsx too.
const COMPILED = import.meta.url.endsWith('.js');
const ENTRY = fileURLToPath(
  new URL(COMPILED ? './worker-process.js' : './worker-process.ts', import.meta.url),
);
const COMPILED_NODE_ARGS = ['--enable-source-maps'];
const NODE_ARGS = COMPILED ? COMPILED_NODE_ARGS : ['--import', import.meta.resolve('tsx')];

/**
 * The worker never talks to Discord or Slack nor serves the playground: their secrets (chat
 * tokens, signing secret, playground password) stay in this process.
 */
export function workerConfig(config: Config): Config {
  const { playgroundPassword: _, ...rest } = config;
  return { ...rest, discord: {}, slack: { port: config.slack.port } };
}

export function spawnWorkerChild(options: WorkerChildOptions): WorkerChild {
  const command =
    options.compiledEntry === undefined
      ? [...NODE_ARGS, ENTRY]
      : [...COMPILED_NODE_ARGS, options.compiledEntry];
  const child: ChildProcess = spawn(process.execPath, command, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    detached: true,
  });
  let asked = false;
  let killable = true;
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code;
      resolve();
      if (!asked) options.onUnexpectedExit?.(code, signal);
    });
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (message: FromWorker) => {
      if (message.type === 'opening-database') killable = false;
      else if (message.type === 'ready') resolve();
      else if (message.type === 'failed') reject(new CodedError(message.code as ErrorCode, message.message));
    });
    child.once('error', reject);
    void exited.then(() =>
      reject(new CodedError('unavailable', `the worker exited (${exitCode}) while starting`)),
    );
  });
  ready.catch(() => {});
  const start: ToWorker = {
    type: 'start',
    config: workerConfig(options.config),
    logLevel: options.logLevel,
    ...(options.models === undefined ? {} : { models: options.models }),
  };
  child.send(start);
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid ?? -1,
    ready,
    stop() {
      stopping ??= (async () => {
        asked = true;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const stop: ToWorker = { type: 'stop' };
        // Loading models keeps its event loop busy for seconds, and nothing needs closing yet.
        if (killable) child.kill('SIGKILL');
        else if (child.connected) child.send(stop);
        else child.kill('SIGTERM');
        const timer = setTimeout(() => {
          options.logger.warn('the worker did not stop in time: killing it');
          child.kill('SIGKILL');
        }, options.stopTimeoutMs ?? 20_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
