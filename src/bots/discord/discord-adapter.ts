// The Discord bot: a discord.js Client (gateway) whose interactions and message events go to the
// handlers here, which call the bot core. The process holds no job state (Redis does), so on start it
// re-attaches to the jobs in flight and can be restarted, or sharded, at any time.
import { once } from 'node:events';
import {
  Client,
  type ClientOptions,
  Events,
  GatewayIntentBits,
  type Interaction,
  Partials,
  RESTEvents,
  type RESTOptions,
  ShardClientUtil,
} from 'discord.js';
import type { Config } from '../../shared/config.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { ChatCore, type ChatCoreOptions } from '../core/chat.js';
import { ingestPolicy } from '../core/ingest.js';
import type { JobRef } from '../core/job-status.js';
import { OTHER_PROCESS, type Run } from '../core/reply.js';
import type { BotServices } from '../core/services.js';
import type { DiscordContext } from './context.js';
import { ChannelIndexer } from './indexing.js';
import { routeInteraction } from './interactions.js';
import { type ReplyAddress, replyAddressSchema } from './reply-target.js';
import { discordRestAgent } from './rest-agent.js';
import { DiscordSurface } from './surface.js';
import { Words } from './words.js';
import { WorkSlots } from './work-slots.js';

export interface DiscordBotOptions {
  services: BotServices;
  /** config.discord: the token (required), API and CDN origins for proxies and tests. */
  discord: Config['discord'];
  /** Named `bot:discord` by the main. @defaultValue silent */
  logger?: Logger;
  /**
   * Ask for the privileged Message Content intent, which channel search needs to see attachments.
   * An app not approved for it starts without it and says so in the log and in /search.
   * @defaultValue true
   */
  messageContent?: boolean;
  /** A job moves to a channel message this long before its interaction token expires. @defaultValue 60000 */
  tokenMarginMs?: number;
  /** Messages one /settings backfill reads when not told. @defaultValue 1000 */
  backfillLimit?: number;
  /** Pause between two history pages of a backfill (Discord's rate limits). @defaultValue 1000 */
  backfillPauseMs?: number;
  /**
   * Interactions doing their work (after their ack) at once; the rest wait, already acked, so a
   * burst's acks never queue behind its work (work-slots.ts). @defaultValue 16
   */
  workConcurrency?: number;
  /**
   * discord.js shards in this process, of `shardCount` in all; the bot holds no state, so any split
   * over processes works (each guild's events go to shard (guild_id >> 22) % count, DMs to shard 0).
   * @defaultValue discord.shards (DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT), else 'auto': as many as
   * GET /gateway/bot recommends, all here
   */
  shards?: ClientOptions['shards'];
  shardCount?: number;
  /** REST options (tests lower retries and timeouts). */
  rest?: Partial<RESTOptions>;
  /** Overrides of the core's download limits and fetch. */
  core?: Partial<
    Pick<
      ChatCoreOptions,
      'maxImageBytes' | 'maxImagePixels' | 'downloadTimeoutMs' | 'waitTimeoutMs' | 'fetch'
    >
  >;
  /** The clock that interaction tokens expire by. @defaultValue Date.now */
  now?: () => number;
  /** Every REST response (429s included) is counted here (vqclip_chat_api_*). @defaultValue none */
  metrics?: Metrics;
}

export const DefaultDiscordBotOptions = {
  messageContent: true,
  tokenMarginMs: 60_000,
  backfillLimit: 1000,
  backfillPauseMs: 1000,
  workConcurrency: 16,
  shards: 'auto',
} as const satisfies Partial<DiscordBotOptions>;

export interface DiscordBot {
  readonly client: Client;
  readonly core: ChatCore;
  /** Whether the gateway delivers message content (channel search works). */
  readonly messageContent: boolean;
  /** Jobs followed again after the start. */
  readonly reattached: number;
  close(): Promise<void>;
}

// Guilds: READY and the channel cache; GuildMessages: message events for indexing. Interactions
// need no intent. DMs are reached through interactions only (Partials.Channel for their channels).
const BASE_INTENTS = [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages];

/** Logs in, wires the handlers, re-attaches to the jobs in flight; resolves once ready. */
export async function startDiscordBot(options: DiscordBotOptions): Promise<DiscordBot> {
  const token = options.discord.token;
  if (!token) throw new Error('DISCORD_TOKEN is not set');
  const shardCount = options.shardCount ?? options.discord.shards?.count;
  const o: Resolved = {
    messageContent: options.messageContent ?? DefaultDiscordBotOptions.messageContent,
    tokenMarginMs: options.tokenMarginMs ?? DefaultDiscordBotOptions.tokenMarginMs,
    backfillLimit: options.backfillLimit ?? DefaultDiscordBotOptions.backfillLimit,
    backfillPauseMs: options.backfillPauseMs ?? DefaultDiscordBotOptions.backfillPauseMs,
    workConcurrency: options.workConcurrency ?? DefaultDiscordBotOptions.workConcurrency,
    shards: options.shards ?? options.discord.shards?.ids ?? DefaultDiscordBotOptions.shards,
    ...(shardCount === undefined ? {} : { shardCount }),
  };
  const logger = options.logger ?? silentLogger;
  let messageContent = o.messageContent;
  let started: Started;
  try {
    started = await connect(options, o, token, messageContent, logger);
  } catch (error) {
    if (!messageContent || !/disallowed intent/i.test(String((error as Error).message))) throw error;
    messageContent = false;
    logger.warn(
      {},
      'Discord refused the Message Content intent: channel search cannot see attachments of new messages. Turn it on in the Developer Portal (Bot → Privileged Gateway Intents) and restart; everything else works.',
    );
    started = await connect(options, o, token, false, logger);
  }
  if (!messageContent) logger.warn({}, 'running without the Message Content intent: channel indexing is off');
  const reattached = await started.reattach();
  return {
    client: started.client,
    core: started.core,
    messageContent,
    reattached,
    close: started.close,
  };
}

interface Resolved {
  messageContent: boolean;
  tokenMarginMs: number;
  backfillLimit: number;
  backfillPauseMs: number;
  workConcurrency: number;
  shards: NonNullable<ClientOptions['shards']>;
  shardCount?: number;
}

interface Started {
  client: Client;
  core: ChatCore;
  reattach(): Promise<number>;
  close(): Promise<void>;
}

async function connect(
  options: DiscordBotOptions,
  o: Resolved,
  token: string,
  messageContent: boolean,
  logger: Logger,
): Promise<Started> {
  const { services } = options;
  const now = options.now ?? Date.now;
  const client = new Client({
    intents: messageContent ? [...BASE_INTENTS, GatewayIntentBits.MessageContent] : BASE_INTENTS,
    partials: [Partials.Channel, Partials.Message],
    allowedMentions: { parse: [] },
    shards: o.shards,
    ...(o.shardCount === undefined ? {} : { shardCount: o.shardCount }),
    rest: {
      agent: discordRestAgent(),
      ...options.rest,
      ...(options.discord.apiUrl === undefined ? {} : { api: options.discord.apiUrl }),
    },
  });
  // @discordjs/rest emits every response it gets, each retry and each 429 (which it then waits out).
  const metrics = options.metrics;
  if (metrics)
    client.rest.on(RESTEvents.Response, (_request, response) =>
      metrics.chatApiResponse('discord', response.status),
    );
  const core = new ChatCore({
    platform: 'discord',
    jobs: services.jobs,
    indexJobs: services.indexJobs,
    blobs: services.blobs,
    runner: services.runner,
    ingest: ingestPolicy('discord', options.discord.cdnUrl),
    logger,
    ...options.core,
  });
  const indexer = new ChannelIndexer({
    core,
    settings: services.settings,
    rest: client.rest,
    logger,
    messageContent,
    botUserId: () => client.user?.id,
    backfillPauseMs: o.backfillPauseMs,
  });
  const surfaces = new Set<DiscordSurface>();
  const runs = new Set<Run>();
  const surfaceDeps = {
    rest: client.rest,
    blobs: services.blobs,
    jobs: services.jobs,
    runner: services.runner,
    settings: services.settings,
    logger,
    now,
    tokenMarginMs: o.tokenMarginMs,
  };
  const slots = new WorkSlots<Interaction>(o.workConcurrency, undefined, services.acks);
  const ctx: DiscordContext = {
    client,
    core,
    services,
    indexer,
    logger,
    now,
    backfillLimit: o.backfillLimit,
    admit: (i) => slots.admit(i),
    surface(address: ReplyAddress, jobId?: JobRef) {
      const surface = new DiscordSurface(surfaceDeps, address, jobId);
      surfaces.add(surface);
      return surface;
    },
    track(run: Run, surface: DiscordSurface) {
      runs.add(run);
      void run.done.finally(() => {
        runs.delete(run);
        surface.dispose();
        surfaces.delete(surface);
      });
    },
  };
  const guard = (what: string, task: () => Promise<void>) =>
    void task().catch((error: unknown) => logger.warn({ err: error }, `${what} failed`));
  client.on(Events.InteractionCreate, (i) => {
    services.acks.arrived(i);
    guard('interaction', () => routeInteraction(ctx, i).finally(() => slots.release(i)));
  });
  if (messageContent) {
    client.on(Events.MessageCreate, (m) => guard('indexing a message', () => indexer.onCreate(m)));
    client.on(Events.MessageUpdate, (a, b) => guard('re-indexing an edit', () => indexer.onUpdate(a, b)));
  }
  // Deletes arrive without the intent too: an image indexed earlier still leaves the index.
  client.on(Events.MessageDelete, (m) => guard('unindexing a message', () => indexer.onDelete(m)));
  client.on(Events.MessageBulkDelete, (ms) =>
    guard('unindexing messages', () => indexer.onBulkDelete(ms.values())),
  );
  client.on(Events.ShardDisconnect, (event, shard) =>
    logger.warn({ code: event.code, shard }, 'gateway closed'),
  );
  client.on(Events.ShardResume, (shard, replayed) => logger.info({ shard, replayed }, 'gateway resumed'));
  client.on(Events.ShardReconnecting, (shard) => logger.info({ shard }, 'gateway reconnecting'));
  client.on(Events.Error, (error) => logger.warn({ err: error }, 'discord.js error'));

  const ready = once(client, Events.ClientReady);
  try {
    await client.login(token);
    await ready;
  } catch (error) {
    await client.destroy();
    throw error;
  }
  logger.info(
    {
      user: client.user?.tag,
      guilds: client.guilds.cache.size,
      shards: [...client.ws.shards.keys()],
      shardCount: client.options.shardCount,
      messageContent,
    },
    'discord ready',
  );
  if (!messageContent) logger.info({}, Words.contentIntentOff);

  return {
    client,
    core,
    async reattach() {
      const pending = new Map<JobRef, DiscordSurface>();
      // With shards over several processes, each follows the jobs of its own guilds (DMs: shard 0),
      // as Discord sends it their interactions: every process following every job would edit each
      // reply once per process.
      const count = client.options.shardCount ?? 1;
      const mine = new Set(client.ws.shards.keys());
      const reattached = await services.runner.reattach('discord', (entry) => {
        const parsed = replyAddressSchema.safeParse(entry.reply);
        if (!parsed.success) {
          logger.warn({ jobId: entry.jobId }, 'an in-flight job has no Discord reply address; dropping it');
          return undefined;
        }
        if (count > 1) {
          const guildId = parsed.data.guildId;
          const shard = guildId === undefined ? 0 : ShardClientUtil.shardIdForGuildId(guildId, count);
          if (!mine.has(shard)) return OTHER_PROCESS;
        }
        const surface = ctx.surface(parsed.data, entry.jobId);
        pending.set(entry.jobId, surface);
        return surface;
      });
      for (const run of reattached) {
        const surface = run.jobId === undefined ? undefined : pending.get(run.jobId);
        if (surface) ctx.track(run, surface);
      }
      return reattached.length;
    },
    async close() {
      slots.clear();
      for (const run of [...runs]) run.stop();
      for (const surface of surfaces) surface.dispose();
      surfaces.clear();
      await client.destroy();
    },
  };
}
