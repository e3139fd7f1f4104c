// The worker of `npm start`, in a process of its own beside the web one: ONNX Runtime sessions keep
// cores and the event loop busy for seconds at a time, and the page, the API and Ctrl-C must answer
// in milliseconds meanwhile. Started by worker-child.ts with an IPC channel: the parent sends the
// configuration (never through the environment, so no secret lands in /proc), this process loads
// the models, opens the database and serves the queues through src/worker/runtime, and it stops when
// told to, on SIGTERM, or when the parent is gone (the IPC channel closes however the parent ends).
import { pino } from 'pino';
import { asCodedError } from '../shared/errors.js';
import { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import { composeWorker } from '../worker/runtime/compose-worker.js';
import type { FromWorker, ToWorker } from './worker-child.js';

/** After the parent is gone nobody waits for a tidy close: this long at most, then exit. */
const ORPHAN_EXIT_MS = 8000;

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

/**
 * While only models load nothing is written anywhere, so a stop then need not wait for the (slow)
 * load to end; once the database opens, a stop waits for the start to finish and closes in order.
 */
let interruptible = true;

async function start(message: Extract<ToWorker, { type: 'start' }>, undo: UndoStack, logger: Logger) {
  const { config } = message;
  const root = pino({ level: message.logLevel });
  if (config.redisUrl === undefined) throw new Error('the worker process needs a Redis URL');
  await composeWorker(
    { ...config, redisUrl: config.redisUrl },
    {
      root,
      logger,
      undo,
      ...(message.models === undefined ? {} : { models: message.models }),
      onOpeningDatabase: () => {
        interruptible = false;
        send({ type: 'opening-database' });
      },
    },
  );
}

function main(): void {
  if (!process.send) {
    process.stderr.write('worker-process.ts is started by npm start (src/app/worker-child.ts)\n');
    process.exit(2);
  }
  let logger: Logger = pino({ name: 'worker:process', level: 'warn' });
  const undo = new UndoStack(logger);
  let starting: Promise<void> | undefined;
  let stopping = false;

  const stop = (reason: string, deadlineMs?: number) => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      logger.info({ reason }, 'stopping');
      if (deadlineMs !== undefined) setTimeout(() => process.exit(1), deadlineMs).unref();
      if (!interruptible) await starting?.catch(() => {});
      await undo.release();
      send({ type: 'stopped' });
      process.disconnect?.();
      process.exit(0);
    })();
  };

  process.on('message', (message: ToWorker) => {
    if (message.type === 'stop') {
      stop('asked by npm start');
      return;
    }
    if (message.type !== 'start' || starting) return;
    logger = pino({ name: 'worker:process', level: message.logLevel });
    starting = start(message, undo, logger).then(
      () => send({ type: 'ready', pid: process.pid }),
      async (error: unknown) => {
        const coded = asCodedError(error);
        logger.error({ err: error }, 'worker failed to start');
        send({ type: 'failed', code: coded.code, message: coded.message });
        await undo.release();
        process.exit(1);
      },
    );
  });
  process.on('disconnect', () => stop('npm start is gone', ORPHAN_EXIT_MS));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // The parent owns Ctrl-C: it stops the web side first, then tells this process.
  process.on('SIGINT', () => {});
}

main();
