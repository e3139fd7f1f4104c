// `npm start`: the whole system on one machine with no chat tokens: Redis (REDIS_URL, or a private
// redis-server), PGlite in DATA_DIR, tiny random models on first run, an in-process worker and the
// playground. Prints the URL; Ctrl-C (or SIGTERM) stops everything and exits 0.
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { onShutdown, runMain } from '../shared/shutdown.js';
import { RANDOM_WEIGHTS_BANNER } from './models-setup.js';
import { startStack } from './stack.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  // The terminal is for the person who ran `npm start`: only warnings in JSON unless asked for more.
  const level = process.env.LOG_LEVEL ? config.logLevel : 'warn';
  const logger = pino({ name: 'start', level });
  logger.info({ config: redactedConfig(config) }, 'starting');
  const say = (line: string) => process.stdout.write(`${line}\n`);

  const starting = startStack({ config, logger, say });
  // A signal during start-up closes the stack once it has started (a failed start-up is reported
  // by the catch below, and the shutdown then logs the failed step and exits).
  const shutdown = onShutdown([async () => (await starting).close()], logger, {
    onSignal: (signal, first) => say(first ? 'stopping…' : `${signal} again: exiting now`),
    onStopped: () => say('stopped'),
  });
  const stack = await starting;
  if (shutdown.stopping) return;
  if (stack.randomWeights) say(`\n${RANDOM_WEIGHTS_BANNER}\n`);
  say(`redis: ${stack.redisUrl}${stack.privateRedis ? ' (private, stopped with this process)' : ''}`);
  say(`vqclip playground: ${stack.url}  (job dashboard: ${stack.url}/admin)`);
  say('press Ctrl-C to stop');
}

runMain('npm start', main);
