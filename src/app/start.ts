// `npm start`: the whole system on one machine with no chat tokens: Redis (REDIS_URL, or a private
// redis-server keeping its data in DATA_DIR), tiny random models on first run, a worker process,
// the chat adapters whose tokens are set and the playground. Prints the URL; Ctrl-C (or SIGTERM)
// stops everything and exits 0. Started by scripts/start.mjs, which installs what is missing first.
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { onShutdown, runMain } from '../shared/shutdown.js';
import { RANDOM_WEIGHTS_BANNER } from './models-setup.js';
import { startStack } from './stack.js';

/**
 * One Ctrl-C reaches this process twice: from the terminal (the whole foreground process group) and
 * relayed by npm a moment later. Only a signal well after the first means "stop now".
 */
const SAME_CTRL_C_MS = 750;

/** Signals, with a repeat inside SAME_CTRL_C_MS of the previous one dropped. */
function dedupedSignals(): EventEmitter {
  const out = new EventEmitter();
  const last = new Map<NodeJS.Signals, number>();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      const now = Date.now();
      const previous = last.get(signal);
      last.set(signal, now);
      if (previous !== undefined && now - previous < SAME_CTRL_C_MS) return;
      // A closed terminal means the same as Ctrl-C.
      out.emit(signal === 'SIGHUP' ? 'SIGTERM' : signal, signal);
    });
  }
  return out;
}

/**
 * Calls `gone` when the process that started us exits: npm killed with SIGKILL cannot forward
 * anything, and the stack must not live on without it. (process.ppid is read once at start-up in
 * Node, so it is the original parent that is polled.)
 */
function watchParent(gone: () => void, everyMs = 500): void {
  const parent = process.ppid;
  if (parent <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EPERM') return;
      clearInterval(timer);
      gone();
    }
  }, everyMs);
  timer.unref();
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  // The terminal is for the person who ran `npm start`: only warnings in JSON unless asked for more.
  const level = process.env.LOG_LEVEL ? config.logLevel : 'warn';
  const logger = pino({ name: 'start', level });
  logger.info({ config: redactedConfig(config) }, 'starting');
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const started = performance.now();

  const signals = dedupedSignals();
  const starting = startStack({
    config,
    logger,
    say,
    workerLogLevel: level,
    onWorkerExit: (code, signal) => {
      say(`the worker process exited (${signal ?? code}): stopping`);
      process.exitCode = 1;
      signals.emit('SIGTERM', 'SIGTERM');
    },
  });
  // A signal during start-up closes the stack once it has started (a failed start-up is reported
  // by the catch below, and the shutdown then logs the failed step and exits).
  const shutdown = onShutdown([async () => (await starting).close()], logger, {
    emitter: signals,
    onSignal: (signal, first) => say(first ? 'stopping…' : `${signal} again: exiting now`),
    onStopped: () => say('stopped'),
  });
  watchParent(() => {
    say('the process that started npm start is gone: stopping');
    signals.emit('SIGTERM', 'SIGTERM');
  });
  const stack = await starting;
  if (shutdown.stopping) return;
  if (stack.randomWeights) say(`\n${RANDOM_WEIGHTS_BANNER}\n`);
  say(
    `redis: ${stack.redisUrl}${stack.redis ? ` (private, data in ${stack.redis.dataDir}, stopped with this process)` : ''}`,
  );
  for (const adapter of stack.adapters) say(`${adapter.platform}: ${adapter.description}`);
  if (stack.adapters.length === 0)
    say('chat adapters: none (set DISCORD_TOKEN or SLACK_BOT_TOKEN to add them)');
  say(`vqclip playground: ${stack.url}  (job dashboard: ${stack.url}/admin), up in ${seconds(started)} s`);
  say('press Ctrl-C to stop');
  stack.workerReady.then(
    () =>
      shutdown.stopping ||
      say(`worker ready: models loaded, serving the queues (${seconds(started)} s after start)`),
    (error: unknown) => {
      if (shutdown.stopping) return;
      say(`the worker could not start: ${(error as Error).message}`);
      process.exitCode = 1;
      signals.emit('SIGTERM', 'SIGTERM');
    },
  );
}

const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(1);

runMain('npm start', main);
