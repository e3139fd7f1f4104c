// One bot process of the burst soak (bench/soak/burst.ts), apart from the harness that plays
// Discord, Slack and the load: createBotServices and the adapters it is told to run (Discord on
// some shards, Slack, the playground), started as `npm run bot` starts them, with its /metrics. So
// the fakes' work (they stand for Discord's and Slack's servers) no longer shares the bot's event
// loop. Over IPC it reports what the soak measures of the bot alone: every ioredis command it sent
// (per second), its heap after a full GC, and the queue position told to each submission.
// Started by startBotProcess (bot-processes.ts); not meant to be run by hand.
import { Events } from 'discord.js';
import { createBotServices } from '../../src/bots/core/services.js';
import { startDiscordBot } from '../../src/bots/discord/discord-adapter.js';
import { startBotObservability } from '../../src/bots/observability.js';
import { startSlackBot } from '../../src/bots/slack/slack-adapter.js';
import { Library } from '../../src/bots/web/library.js';
import { startPlayground } from '../../src/bots/web/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { BotProcessFigures, BotProcessSpec, FromBot, ToBot } from './bot-processes.js';
import { type AckStageTimes, countRedisCommands, recordAckStages } from './lib.js';

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function send(message: FromBot): void {
  process.send?.(message);
}

async function start(spec: BotProcessSpec): Promise<void> {
  const commands = countRedisCommands();
  const undo = new UndoStack(silentLogger);
  const heapStart = heapMb();
  const config = loadConfig({ QUEUE_PREFIX: spec.prefix, DATA_DIR: spec.dataDir });
  const services = await createBotServices(
    { ...config, quota: spec.quota, redisUrl: spec.redisUrl },
    { logger: silentLogger, undo, throttleMs: spec.throttleMs },
  );
  const observability = await startBotObservability(
    { metrics: { host: '127.0.0.1', port: 0 }, queuePrefix: spec.prefix },
    services,
    { undo, logger: silentLogger },
  );
  const metrics = observability?.metrics;
  const told = new Map<string, number>();
  let interactions = 0;
  let stages = new Map<string, AckStageTimes>();
  const submit = services.jobs.submit.bind(services.jobs);
  services.jobs.submit = (async (...args: Parameters<typeof submit>) => {
    const out = await submit(...args);
    told.set(out.jobId, out.position);
    return out;
  }) as typeof submit;
  if (spec.discord) {
    const { workConcurrency, ...discordConfig } = spec.discord;
    const discord = await startDiscordBot({
      services,
      discord: discordConfig,
      logger: silentLogger,
      ...(metrics === undefined ? {} : { metrics }),
      ...(workConcurrency === undefined ? {} : { workConcurrency }),
    });
    undo.push('discord bot', () => discord.close());
    // When each interaction's packet reached discord.js, its interactionCreate and its callback
    // left (Date.now, so the harness can put them beside the fake's dispatch and callback times).
    const recorded = recordAckStages(discord.client);
    stages = recorded.stages;
    discord.client.on(Events.InteractionCreate, () => {
      interactions++;
    });
    undo.push('ack stages', () => recorded.stop());
  }
  if (spec.slack) {
    const slack = await startSlackBot({
      services,
      slack: { ...spec.slack, port: 0 },
      logger: silentLogger,
      host: '127.0.0.1',
      apiRetries: 0,
      ...(metrics === undefined ? {} : { metrics }),
    });
    undo.push('slack bot', () => slack.close());
  }
  let webUrl: string | undefined;
  if (spec.web) {
    const web = await startPlayground({
      jobs: services.jobs,
      indexJobs: services.indexJobs,
      blobs: services.blobs,
      library: new Library(`${spec.dataDir}/library`),
      admin: false,
      userId: spec.web.userId,
      port: 0,
      host: '127.0.0.1',
    });
    undo.push('playground', () => web.close());
    webUrl = web.url;
  }
  const figures = (): BotProcessFigures => ({
    redisCommands: commands.total(),
    redisPerSecond: [...commands.perSecond.entries()],
    heapMb: heapMb(),
    heapStartMb: heapStart,
    told: [...told.entries()],
    interactions,
    stages: [...stages.entries()].map(([id, times]) => [id, ...times]),
    cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
  });
  process.on('message', (message: ToBot) => {
    if (message.type === 'figures') send({ type: 'figures', id: message.id, figures: figures() });
    if (message.type === 'close')
      void undo.release().finally(() => {
        send({ type: 'closed' });
        process.exit(0);
      });
  });
  send({
    type: 'ready',
    ...(observability ? { metricsUrl: `${observability.url}/metrics` } : {}),
    ...(webUrl === undefined ? {} : { webUrl }),
  });
}

// With a CPU profile (SOAK_BOT_CPU_PROF), the pair of clocks that maps the soak's times onto it.
if (process.execArgv.includes('--cpu-prof'))
  console.error(
    `bot process ${process.pid}: clock epoch ${Date.now()} ms = profile ${process.hrtime.bigint() / 1000n} us`,
  );
// The harness gone (killed, crashed) leaves no bot behind.
process.on('disconnect', () => process.exit(0));
process.once('message', (message: ToBot) => {
  if (message.type !== 'start') return;
  start(message.spec).catch((error: unknown) => {
    send({ type: 'failed', error: String((error as Error)?.stack ?? error) });
    process.exit(1);
  });
});
