// Start-up and shutdown of a process's resources: each acquired resource registers its release, a
// failure half-way through start-up releases what exists, and shutdown releases in reverse order.
// Every main (worker, bots, playground, npm start) builds on this one undo stack.
import { type Logger, silentLogger } from './logger.js';

interface Step {
  readonly name: string;
  readonly run: () => unknown;
}

export class UndoStack {
  readonly #logger: Logger;
  #steps: Step[] = [];
  #releasing: Promise<void> | undefined;

  constructor(logger: Logger = silentLogger) {
    this.#logger = logger;
  }

  /** Registers a release step; steps run last-in first-out. */
  push(name: string, run: () => unknown): void {
    if (this.#releasing) throw new Error(`cannot add "${name}": the stack is being released`);
    this.#steps.push({ name, run });
  }

  /** Acquires a resource and registers its release in one call. */
  async use<T>(name: string, acquire: () => Promise<T> | T, release: (value: T) => unknown): Promise<T> {
    const value = await acquire();
    this.push(name, () => release(value));
    return value;
  }

  get size(): number {
    return this.#steps.length;
  }

  /**
   * Runs every step in reverse order. A failing step is logged and the rest still run; calling it
   * again returns the same promise.
   */
  release(): Promise<void> {
    this.#releasing ??= (async () => {
      for (const step of this.#steps.splice(0).reverse()) {
        try {
          await step.run();
        } catch (error) {
          this.#logger.warn({ err: error, step: step.name }, 'shutdown step failed');
        }
      }
    })();
    return this.#releasing;
  }
}

/**
 * Runs a start-up function with a fresh undo stack: when it throws, what it acquired is released
 * and the error rethrown; when it succeeds, the caller owns the stack (and releases it at shutdown).
 */
export async function startWithUndo<T>(
  logger: Logger,
  start: (undo: UndoStack) => Promise<T>,
): Promise<{ value: T; undo: UndoStack }> {
  const undo = new UndoStack(logger);
  try {
    return { value: await start(undo), undo };
  } catch (error) {
    await undo.release();
    throw error;
  }
}
