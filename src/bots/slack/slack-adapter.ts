// The Slack bot: Bolt (unmodified) in Socket Mode when an app token is set, else in HTTP mode with
// request signatures verified, and the same handlers in both. It wires the core (ChatCore, the run
// loop, settings) to Slack's widgets and re-attaches to the jobs a previous process was following.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  App,
  type Logger as BoltLogger,
  HTTPReceiver,
  LogLevel,
  type Receiver,
  SocketModeReceiver,
} from '@slack/bolt';
import type { Config } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { ChatCore } from '../core/chat.js';
import { ingestPolicy } from '../core/ingest.js';
import { RecentJobs } from '../core/recent-jobs.js';
import type { Run } from '../core/reply.js';
import type { BotServices } from '../core/services.js';
import { Backfills } from './backfill.js';
import { registerCommands } from './commands.js';
import type { SlackContext, SlackIdentity } from './context.js';
import { FileLedger } from './file-ledger.js';
import { SlackFiles } from './files.js';
import { HistoryReader } from './history.js';
import { registerHome } from './home.js';
import { ChannelIndexer, registerIndexing } from './indexing.js';
import { registerInteractions } from './interactions.js';
import { PreviewUrls } from './preview-urls.js';
import { type SlackClock, systemClock, UpdateBudget } from './rate-limits.js';
import { replayGuard, signatureProperty } from './replay-guard.js';
import { parseReply, SlackSurface, type SurfaceDeps } from './surface.js';

export interface SlackBotOptions {
  /** From createBotServices: jobs, runner, blobs, settings, quota, the Redis connection. */
  services: BotServices;
  /** config.slack: botToken (required), appToken (Socket Mode), signingSecret (HTTP mode), apiUrl, port. */
  slack: Config['slack'];
  logger: Logger;
  /** Address HTTP mode listens on. @defaultValue '0.0.0.0' */
  host?: string;
  /** For downloads of url_private files (tests inject one). @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  /** Rate-limit time: edit budget, Retry-After and history waits. @defaultValue the system clock */
  clock?: SlackClock;
  /** Web API retries on network errors and 5xx (never on 429). @defaultValue Bolt's policy (10 over ~30 min) */
  apiRetries?: number;
  /** chat.update calls per minute per workspace, all jobs together (Tier 3 is ~50). @defaultValue 30 */
  updatesPerMinute?: number;
  /** Least time between two preview images of a job. @defaultValue 10000 */
  previewIntervalMs?: number;
  /** Least time between two conversations.history calls (some apps get 1 a minute). @defaultValue 60000 */
  historyIntervalMs?: number;
  /** Messages per history page (15 is the most such apps get). @defaultValue 15 */
  historyPageSize?: number;
  /** Largest image downloaded. @defaultValue ChatCore's (25 MiB) */
  maxImageBytes?: number;
  /** How long an upload may take to be shared before the message goes on without it. @defaultValue 20000 */
  shareTimeoutMs?: number;
  /** Socket Mode: how long to wait for a pong before reconnecting. @defaultValue Bolt's (5000) */
  socketPingTimeoutMs?: number;
  /** Every Web API response (429s included) is counted here (vqclip_chat_api_*). @defaultValue none */
  metrics?: Metrics;
}

export const DefaultSlackBotOptions = {
  host: '0.0.0.0',
  updatesPerMinute: 30,
  previewIntervalMs: 10_000,
  historyIntervalMs: 60_000,
  historyPageSize: 15,
  shareTimeoutMs: 20_000,
} as const satisfies Partial<SlackBotOptions>;

export interface SlackBot {
  readonly app: App;
  readonly mode: 'socket' | 'http';
  /** HTTP mode: the port listened on (useful with port 0). */
  readonly port?: number;
  /** The runs re-attached at start (jobs a previous process was following). */
  readonly reattached: readonly Run[];
  /** Stops receiving, stops following (jobs go on; a next start re-attaches), stops backfills. */
  close(): Promise<void>;
}

/** Bolt's logger interface over ours; Bolt's own lines never carry tokens. */
function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.INFO;
  const line = (msg: unknown[]) =>
    msg
      .map((m) => (m instanceof Error ? m.message : typeof m === 'string' ? m : JSON.stringify(m)))
      .join(' ');
  return {
    debug: (...m: unknown[]) => logger.debug({ bolt: true }, line(m)),
    info: (...m: unknown[]) => logger.info({ bolt: true }, line(m)),
    warn: (...m: unknown[]) => logger.warn({ bolt: true }, line(m)),
    error: (...m: unknown[]) => logger.error({ bolt: true }, line(m)),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

export async function startSlackBot(options: SlackBotOptions): Promise<SlackBot> {
  const o = { ...DefaultSlackBotOptions, ...options };
  const { services, slack, logger } = o;
  const token = slack.botToken;
  if (!token) throw new ConfigError([{ variable: 'SLACK_BOT_TOKEN', message: 'is not set' }]);
  const mode = slack.appToken ? 'socket' : 'http';
  if (mode === 'http' && !slack.signingSecret) {
    throw new ConfigError([
      {
        variable: 'SLACK_SIGNING_SECRET',
        message: 'is needed in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)',
      },
    ]);
  }
  const clock = o.clock ?? systemClock;
  const boltLog = boltLogger(logger);
  // We wait out 429s ourselves (rejectRateLimitedCalls): the WebClient's own wait would stall a
  // progress edit that should simply be skipped.
  const clientOptions = {
    ...(slack.apiUrl === undefined ? {} : { slackApiUrl: slack.apiUrl }),
    rejectRateLimitedCalls: true,
    ...(o.apiRetries === undefined ? {} : { retryConfig: { retries: o.apiRetries } }),
    // The WebClient sends every call (each retry too) through this fetch: the one place to count them.
    ...(o.metrics === undefined ? {} : { fetch: o.metrics.countingFetch('slack') }),
  };
  const receiver: Receiver =
    mode === 'socket'
      ? new SocketModeReceiver({
          appToken: slack.appToken ?? '',
          logger: boltLog,
          installerOptions: { clientOptions },
          ...(o.socketPingTimeoutMs === undefined ? {} : { clientPingTimeout: o.socketPingTimeoutMs }),
        })
      : new HTTPReceiver({
          signingSecret: slack.signingSecret ?? '',
          endpoints: '/slack/events',
          logger: boltLog,
          customPropertiesExtractor: signatureProperty,
        });
  // deferInitialization: otherwise Bolt fires auth.test from the constructor and nobody awaits it.
  const app = new App({ token, receiver, logger: boltLog, clientOptions, deferInitialization: true });
  await app.init();
  if (mode === 'http') {
    app.use(replayGuard({ connection: services.connection, prefix: services.prefix, logger }));
  }
  const auth = await app.client.auth.test();
  const identity: SlackIdentity = {
    teamId: auth.team_id ?? '',
    botUserId: auth.user_id ?? '',
    botId: auth.bot_id,
    url: auth.url ?? 'https://slack.com/',
  };

  const core = new ChatCore({
    platform: 'slack',
    jobs: services.jobs,
    indexJobs: services.indexJobs,
    blobs: services.blobs,
    runner: services.runner,
    ingest: ingestPolicy('slack', slack.apiUrl),
    logger,
    ...(o.fetch === undefined ? {} : { fetch: o.fetch }),
    ...(o.maxImageBytes === undefined ? {} : { maxImageBytes: o.maxImageBytes }),
  });
  const closing = new AbortController();
  const runs = new Set<Run>();
  const background = new Set<Promise<unknown>>();
  const admins = new Map<string, { admin: boolean; at: number }>();
  const files = new SlackFiles({ client: app.client, token, logger, shareTimeoutMs: o.shareTimeoutMs });
  const budget = new UpdateBudget({ perMinute: o.updatesPerMinute, clock });
  const recent = new RecentJobs({ connection: services.connection, prefix: services.prefix });
  const ledger = new FileLedger({ connection: services.connection, prefix: services.prefix });
  const surfaceDeps: SurfaceDeps = {
    client: app.client,
    files,
    blobs: services.blobs,
    runner: services.runner,
    budget,
    clock,
    recent,
    ledger,
    logger,
    safetyMode: (team) => services.settings.safetyMode('slack', team),
    actionId: (action, jobId) => core.actionId(action, jobId),
    previewIntervalMs: o.previewIntervalMs,
    closing: closing.signal,
    previewUrls: new PreviewUrls({
      blobs: services.blobs,
      enabled: options.slack.previewImageUrls === true,
      logger,
    }),
  };

  const ctx: SlackContext = {
    client: app.client,
    core,
    services,
    files,
    ledger,
    recent,
    history: new HistoryReader({ client: app.client, clock, intervalMs: o.historyIntervalMs, logger }),
    budget,
    clock,
    logger,
    identity,
    closing: closing.signal,
    historyPageSize: o.historyPageSize,
    async isAdmin(user) {
      const cached = admins.get(user);
      if (cached && Date.now() - cached.at < 5 * 60_000) return cached.admin;
      const info = await app.client.users.info({ user }).catch((error: unknown) => {
        logger.warn({ err: error }, 'users.info failed; treating the user as not an admin');
        return undefined;
      });
      const u = info?.user;
      const admin = u?.is_admin === true || u?.is_owner === true || u?.is_primary_owner === true;
      if (info) admins.set(user, { admin, at: Date.now() });
      return admin;
    },
    surface: ({ prompt, user, reply, ephemeral }) =>
      new SlackSurface(surfaceDeps, { header: { prompt, user }, reply, ephemeral }),
    track(run) {
      runs.add(run);
      void run.done.finally(() => runs.delete(run));
    },
    background(name, work) {
      const p = work().catch((error: unknown) =>
        logger.warn({ err: error, task: name }, 'slack task failed'),
      );
      background.add(p);
      void p.finally(() => background.delete(p));
    },
  };

  const indexer = new ChannelIndexer(ctx);
  const backfills = new Backfills(ctx, indexer);
  registerCommands(app, ctx, backfills);
  registerInteractions(app, ctx);
  registerIndexing(app, ctx, indexer, backfills);
  registerHome(app, ctx);
  app.error(async (error) => {
    logger.error({ err: error }, 'slack handler failed');
  });

  let port: number | undefined;
  if (mode === 'socket') await app.start();
  else {
    const server = (await app.start({ port: slack.port, host: o.host })) as Server;
    port = (server.address() as AddressInfo).port;
  }
  logger.info({ mode, team: identity.teamId, ...(port === undefined ? {} : { port }) }, 'slack bot started');

  // Jobs a previous process was following: go on editing their messages.
  const reattached = await services.runner.reattach('slack', async (entry) => {
    const reply = parseReply(entry.reply);
    if (!reply) return undefined;
    const data = await services.jobs.data(entry.jobId);
    const user = entry.origin.user;
    return ctx.surface({
      prompt: (data as { prompt?: string } | undefined)?.prompt ?? '',
      user,
      reply,
      ephemeral: async (body) => {
        await app.client.chat.postEphemeral({ channel: reply.channel, user, ...body });
      },
    });
  });
  for (const run of reattached) ctx.track(run);
  await backfills.resumeAll();

  let closed: Promise<void> | undefined;
  return {
    app,
    mode,
    ...(port === undefined ? {} : { port }),
    reattached,
    close() {
      closed ??= (async () => {
        // A Socket Mode client caught reconnecting can wait on a socket that never closes.
        await within(app.stop(), 5000).catch((error: unknown) =>
          logger.warn({ err: error }, 'stopping bolt failed'),
        );
        closing.abort(new Error('the slack bot is closing'));
        for (const run of [...runs]) run.stop();
        await backfills.idle();
        await Promise.allSettled([...background]);
      })();
      return closed;
    },
  };
}

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
