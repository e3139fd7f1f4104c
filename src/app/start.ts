// `npm start`: the whole system on one machine with no chat tokens: Redis (REDIS_URL, or a private
// redis-server), PGlite in DATA_DIR, tiny random models on first run, an in-process worker and the
// playground. Prints the URL; Ctrl-C (or SIGTERM) stops everything and exits 0.
import { pino } from 'pino';
import { loadConfig, redactedConfig } from '../shared/config.js';
import { asCodedError } from '../shared/errors.js';
import { RANDOM_WEIGHTS_BANNER } from './models-setup.js';
import { type Stack, startStack } from './stack.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  // The terminal is for the person who ran `npm start`: only warnings in JSON unless asked for more.
  const level = process.env.LOG_LEVEL ? config.logLevel : 'warn';
  const logger = pino({ name: 'start', level });
  logger.info({ config: redactedConfig(config) }, 'starting');
  const say = (line: string) => process.stdout.write(`${line}\n`);

  let stack: Stack | undefined;
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      say(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    say('stopping…');
    // A signal during start-up is handled when startStack returns (or fails) below.
    if (stack) void stack.close().then(() => say('stopped'));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  stack = await startStack({ config, logger, say });
  if (stopping) {
    await stack.close();
    say('stopped');
    return;
  }
  if (stack.randomWeights) say(`\n${RANDOM_WEIGHTS_BANNER}\n`);
  say(`redis: ${stack.redisUrl}${stack.privateRedis ? ' (private, stopped with this process)' : ''}`);
  say(`vqclip playground: ${stack.url}  (job dashboard: ${stack.url}/admin)`);
  say('press Ctrl-C to stop');
}

main().catch((error: unknown) => {
  const coded = asCodedError(error);
  console.error(`npm start: ${coded.message}`);
  if (coded.code === 'internal' && error instanceof Error && error.stack) console.error(error.stack);
  process.exitCode = 1;
});
