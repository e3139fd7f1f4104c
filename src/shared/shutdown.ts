// Signal handling shared by every process entry (worker main, playground main, `npm start`): the
// first SIGINT/SIGTERM runs the closers in order, then exits; a second signal, or closers that take
// longer than the timeout, force an exit with code 1 (a hung close must not leave a zombie service).
import { asCodedError } from './errors.js';
import type { Logger } from './logger.js';

/** One step of a shutdown; a failure is logged and the next step still runs. */
export type Closer = () => Promise<unknown>;

export interface ShutdownOptions {
  /** Longest the closers may take together before the process exits anyway. @defaultValue 30000 */
  timeoutMs?: number;
  /** @defaultValue ['SIGINT', 'SIGTERM'] */
  signals?: readonly NodeJS.Signals[];
  /** Called for each signal: `first` is false for the one that forces the exit (e.g. to tell a terminal). */
  onSignal?: (signal: NodeJS.Signals, first: boolean) => void;
  /** Called once every closer has run, just before the exit. */
  onStopped?: () => void;
  /**
   * Ends the process. Called without a code after a clean close, so an exit code set meanwhile
   * (process.exitCode) is kept; with 1 when forced. @defaultValue process.exit
   */
  exit?: (code?: number) => void;
  /** Where signals come from (tests pass an EventEmitter). @defaultValue process */
  emitter?: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

export const DefaultShutdownOptions = {
  timeoutMs: 30_000,
  signals: ['SIGINT', 'SIGTERM'],
} as const satisfies ShutdownOptions;

export interface ShutdownHandle {
  /** Whether a signal has arrived. */
  readonly stopping: boolean;
  /** Removes the signal listeners (tests; a process that is about to exit need not). */
  dispose(): void;
}

/**
 * Listens for the shutdown signals. `closers` is read when the first signal arrives, so steps pushed
 * onto the array later (resources acquired after this call) are included.
 */
export function onShutdown(
  closers: readonly Closer[],
  logger: Logger,
  options: ShutdownOptions = {},
): ShutdownHandle {
  const timeoutMs = options.timeoutMs ?? DefaultShutdownOptions.timeoutMs;
  const signals = options.signals ?? DefaultShutdownOptions.signals;
  const exit = options.exit ?? ((code?: number) => process.exit(code));
  const emitter = options.emitter ?? process;
  let stopping = false;
  let exited = false;
  const end = (code?: number) => {
    if (exited) return;
    exited = true;
    exit(code);
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      options.onSignal?.(signal, false);
      end(1);
      return;
    }
    stopping = true;
    logger.info({ signal, timeoutMs }, 'shutting down');
    options.onSignal?.(signal, true);
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out: exiting now');
      end(1);
    }, timeoutMs);
    // The timer alone must not keep a process alive whose closers are done.
    timer.unref();
    void (async () => {
      for (const [step, close] of [...closers].entries()) {
        try {
          await close();
        } catch (error) {
          logger.warn({ err: error, step }, 'shutdown step failed');
        }
      }
      clearTimeout(timer);
      if (exited) return;
      logger.info('stopped');
      options.onStopped?.();
      end();
    })();
  };
  for (const signal of signals) emitter.on(signal, onSignal);
  return {
    get stopping() {
      return stopping;
    },
    dispose() {
      for (const signal of signals) emitter.off(signal, onSignal);
    },
  };
}

/**
 * Runs a process entry's `main`; a failure prints `name: message` on stderr (plain console: the
 * logger may not exist yet, e.g. with a bad configuration), the stack for internal errors, and sets
 * exit code 1.
 */
export function runMain(name: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    const coded = asCodedError(error);
    console.error(`${name}: ${coded.message}`);
    if (coded.code === 'internal' && error instanceof Error && error.stack) console.error(error.stack);
    process.exitCode = 1;
  });
}
