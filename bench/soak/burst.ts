// A burst of requests from many people on every adapter at once, against the bot (discord.js and
// Bolt unmodified against the local fakes, and the playground over HTTP) and worker processes on the
// tiny models. The bot runs in processes of its own (bot-process.ts; `discordProcesses` Discord
// shard processes, Slack and the playground beside), so the fakes and the load generator of this
// process, which stand for Discord's and Slack's servers and their users, do not share its event
// loop; `discordProcesses: 0` runs it in this process as the first soaks did. The burst lands while
// no worker runs, so each job's queue position can be checked exactly (the jobs ahead of it, 0..n-1
// per queue); then the workers start and every accepted job is followed to its end at once. What it
// measures: acks (slash command to deferred ack) and where a Discord ack's time goes, quotas (each
// person's accepted jobs, exactly their budget), the bot's Redis commands (every ioredis command of
// the bot processes counted), its heap and CPU, the chat edits per job against the platforms'
// limits (the fakes enforce them and record every call), and that every job ends and is posted once.
// `npm run soak -- burst` runs it at full scale; test/reliability/burst.test.ts at small scale.
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import type { APIMessage, APIUser } from 'discord-api-types/v10';
import { Redis } from 'ioredis';
import { freePort, type PrivateRedis, spawnRedis } from '../../src/app/redis-server.js';
import { createBotServices } from '../../src/bots/core/services.js';
import { type DiscordBot, startDiscordBot } from '../../src/bots/discord/discord-adapter.js';
import { registerCommands } from '../../src/bots/discord/register.js';
import { startBotObservability } from '../../src/bots/observability.js';
import { type SlackBot, startSlackBot } from '../../src/bots/slack/slack-adapter.js';
import { Library } from '../../src/bots/web/library.js';
import { type RunningPlayground, startPlayground } from '../../src/bots/web/server.js';
import { loadConfig } from '../../src/shared/config.js';
import { type JobKind, quotaUserId } from '../../src/shared/jobs.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import { silentLogger } from '../../src/shared/logger.js';
import { keys } from '../../src/shared/queues.js';
import {
  type FakeDiscord,
  type InteractionHandle,
  startFakeDiscord,
} from '../../test/helpers/fake-discord/index.js';
import { DefaultRateLimitOptions } from '../../test/helpers/fake-discord/rate-limit.js';
import {
  DefaultFakeSlackOptions,
  type FakeSlack,
  startFakeSlack,
} from '../../test/helpers/fake-slack/index.js';
import { parseMetrics, type Samples } from '../../test/helpers/prometheus.js';
import {
  noisePng,
  pgliteTemplate,
  spawnWorker,
  tempDir,
  type WorkerProcess,
  writeTinyModels,
} from '../../test/helpers/worker-process.js';
import { percentile } from '../lib.js';
import { type BotProcess, type BotProcessSpec, startBotProcess } from './bot-processes.js';
import { type AckStageTimes, countRedisCommands, recordAckStages } from './lib.js';

/** The stage of the ack table that is the bot's alone: from the dispatch to its callback sent. */
export const BOT_PART_OF_ACK = "dispatch -> callback sent (the bot's part of the ack)";

export interface BurstOptions {
  /** People on each adapter; the playground is one person (its quota identity is the keyboard's). */
  discordUsers: number;
  slackUsers: number;
  /** Requests per person: /imagine, then /whatis (Discord and the playground; Slack sends /imagine only). */
  requestsPerUser: number;
  imaginePerUser: number;
  /** Jobs per person per window (the quotas under test). */
  imagineLimit: number;
  lightLimit: number;
  /** Imagine steps (64x64, tiny models). */
  steps: number;
  /** Worker processes once the burst is in. */
  workers: number;
  /** Slack channels the Slack people are spread over. */
  slackChannels: number;
  /** Everything must end within this. */
  timeoutMs: number;
  /**
   * The fake Discord accepts acks after its 3 s (tests on a loaded machine, where the ack time is
   * not what they check; the soak measures it). @defaultValue false
   */
  lateAcksAccepted?: boolean;
  /** Send the requests evenly over this long instead of at once. @defaultValue 0 */
  spreadMs?: number;
  /** Bot progress throttle (the runner's least time between two edits of one job). @defaultValue 3000 */
  throttleMs?: number;
  /** The Discord adapter's work slots (its default when absent; a huge number: none, for an A/B). */
  discordWorkConcurrency?: number;
  /**
   * Where the bot runs. 0: in this process, beside the fakes and the load (the first arrangement).
   * N >= 1: in child processes (bot-process.ts), apart from the fakes: N Discord processes, one
   * gateway shard each of N, and Slack with the playground in the first of them, or in a process of
   * their own with `slackProcess`. @defaultValue 0
   */
  discordProcesses?: number;
  /** Slack and the playground in their own bot process (with discordProcesses >= 1). @defaultValue false */
  slackProcess?: boolean;
  /** Guilds the Discord people are spread over (person i in guild i % guilds). @defaultValue 1 */
  discordGuilds?: number;
  log?: (line: string) => void;
}

export interface BurstFigures {
  requests: { discord: number; slack: number; web: number; total: number; users: number };
  ackMs: { discord: number[]; slack: number[]; web: number[] };
  /**
   * Where a Discord ack's time goes, p50/p99 ms: the fake's dispatch to the packet reaching
   * discord.js in the bot (the socket, and the bot's event loop busy with what came before), to
   * interactionCreate (discord.js builds the interaction), to the callback reaching the fake (the
   * adapter's deferReply through @discordjs/rest, undici and the loopback).
   */
  discordAckStages: { stage: string; p50: number; p99: number }[];
  /** Discord interactions that got no ack at all (Discord's 3 s passed). */
  missedAcks: number;
  accepted: Record<'imagine' | 'classify', number>;
  /** Per person and budget: what was accepted, against min(asked, limit). */
  quotaViolations: string[];
  /** Per queue: whether the positions told at submit were exactly 0..n-1. */
  positions: Record<'imagine' | 'classify', { ok: boolean; told: number; distinct: number }>;
  /** Jobs not ended (waiting, active, delayed) when the run stopped. */
  unfinished: number;
  failedJobs: number;
  finals: {
    discord: number;
    discordWhatis: number;
    slack: number;
    web: number;
    expected: { discord: number; discordWhatis: number; slack: number; web: number };
  };
  doubleFinals: number;
  discordEdits: { maxPerJob: number; maxIn5s: number; rateLimited: number };
  slackUpdates: { total: number; maxPerMinute: number; rateLimited: number };
  redis: {
    botCommands: number;
    drainSeconds: number;
    perSecond: number;
    peakPerSecond: number;
    serverPerSecond: number;
  };
  /** Heap after a full GC, MiB, summed over the bot processes. */
  heapMb: { start: number; afterBurst: number; end: number };
  /** CPU time from the first request to the last ack: the bot processes' together, and this one's. */
  cpu: { botMs: number; harnessMs: number; windowMs: number };
  /** Each bot process (none when the bot runs in this one): its adapters, heap and CPU in all. */
  botProcesses: { name: string; heapMb: number; cpuMs: number; interactions: number }[];
  /** Read back from the workers' and the bot's /metrics. */
  fromMetrics: {
    completed: Record<'imagine' | 'classify', number>;
    failures: number;
    chatRequests: Record<'discord' | 'slack', number>;
    chatRateLimited: Record<'discord' | 'slack', number>;
  };
  drainSeconds: number;
}

/**
 * What must hold in a burst whatever the machine (`npm run soak` exits 1 otherwise; the ack time
 * is a figure, not a failure): every interaction acked, quotas and positions exact, every job
 * ended, posted once, counted by /metrics, and both platforms' rate limits kept.
 */
export function burstFailures(f: BurstFigures): string[] {
  const failures: string[] = [];
  const fail = (failed: boolean, what: string) => {
    if (failed) failures.push(what);
  };
  fail(f.missedAcks > 0, `${f.missedAcks} Discord interactions never acked`);
  fail(f.quotaViolations.length > 0, `${f.quotaViolations.length} quota violations`);
  fail(!f.positions.imagine.ok || !f.positions.classify.ok, 'queue positions wrong');
  fail(f.unfinished > 0 || f.failedJobs > 0, `jobs unfinished / failed: ${f.unfinished} / ${f.failedJobs}`);
  fail(
    (['discord', 'discordWhatis', 'slack', 'web'] as const).some((k) => f.finals[k] !== f.finals.expected[k]),
    'finals missing',
  );
  fail(f.doubleFinals > 0, `${f.doubleFinals} Discord jobs posted twice`);
  fail(
    f.fromMetrics.completed.imagine !== f.accepted.imagine ||
      f.fromMetrics.completed.classify !== f.accepted.classify ||
      f.fromMetrics.failures > 0,
    '/metrics disagree with the jobs',
  );
  fail(
    f.discordEdits.maxIn5s > DefaultRateLimitOptions.limit || f.discordEdits.rateLimited > 0,
    `Discord edits over ${DefaultRateLimitOptions.limit} in 5 s, or answered 429`,
  );
  fail(
    f.slackUpdates.maxPerMinute > DefaultFakeSlackOptions.chatUpdatePerMinute ||
      f.slackUpdates.rateLimited > 0,
    `Slack chat.update over ${DefaultFakeSlackOptions.chatUpdatePerMinute} a minute, or answered 429`,
  );
  fail(
    f.fromMetrics.chatRateLimited.discord > 0 || f.fromMetrics.chatRateLimited.slack > 0,
    '/metrics counted 429s',
  );
  return failures;
}

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(what: string, deadline: number, check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`soak: ${what} did not happen in time`);
    await sleep(200);
  }
}

function buttonIds(message: APIMessage | undefined): string[] {
  const out: string[] = [];
  const walk = (nodes: unknown): void => {
    if (!Array.isArray(nodes)) return;
    for (const node of nodes as Record<string, unknown>[]) {
      if (typeof node.custom_id === 'string') out.push(node.custom_id);
      walk(node.components);
      if (node.accessory) walk([node.accessory]);
    }
  };
  walk(message?.components);
  return out;
}

/** Most events in any window of `windowMs` (times sorted or not). */
function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

export async function runBurst(o: BurstOptions): Promise<BurstFigures> {
  const log = o.log ?? (() => {});
  const undo = new UndoStack(silentLogger);
  const deadline = Date.now() + o.timeoutMs;
  // Ctrl-C of `npm run soak` must not leave worker processes or Redis behind.
  const interrupted = () => {
    void undo.release().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  undo.push('signal handlers', async () => {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  });
  try {
    const redis: PrivateRedis = await spawnRedis();
    undo.push('redis', () => redis.stop());
    const prefix = `soak${randomBytes(6).toString('hex')}`;
    const models = await tempDir('soak-models');
    undo.push('models', models.remove);
    writeTinyModels(models.path);
    const data = await tempDir('soak-data');
    undo.push('data', data.remove);
    const config = loadConfig({ QUEUE_PREFIX: prefix, DATA_DIR: data.path });
    const quota = {
      imagine: { concurrent: 0, perWindow: o.imagineLimit },
      light: { concurrent: 0, perWindow: o.lightLimit },
    };
    const throttleMs = o.throttleMs ?? 3000;
    const discordFake: FakeDiscord = await startFakeDiscord({
      heartbeatIntervalMs: 5_000,
      guilds: Array.from({ length: o.discordGuilds ?? 1 }, (_, i) => ({ name: `soak ${i}` })),
      // Every shard process identifies at once (Discord's buckets: shard_id % max_concurrency).
      maxConcurrency: 16,
      ...(o.lateAcksAccepted ? { disabledRules: ['ack-window'] as const } : {}),
    });
    undo.push('fake discord', () => discordFake.close());
    await registerCommands({
      token: discordFake.token,
      applicationId: discordFake.applicationId,
      apiUrl: discordFake.apiUrl,
      rest: { retries: 0 },
    });
    const slackFake: FakeSlack = await startFakeSlack({ teamId: 'TSOAK0001' });
    undo.push('fake slack', () => slackFake.close());
    slackFake.setScopes(slackFake.botToken, [
      'chat:write',
      'commands',
      'files:read',
      'files:write',
      'channels:history',
      'groups:history',
      'im:history',
      'users:read',
      'reactions:read',
    ]);
    const discordConfig = {
      token: discordFake.token,
      applicationId: discordFake.applicationId,
      apiUrl: discordFake.apiUrl,
      cdnUrl: discordFake.cdnUrl,
    };
    const slackConfig = {
      botToken: slackFake.botToken,
      signingSecret: slackFake.signingSecret,
      appToken: slackFake.appToken,
      apiUrl: slackFake.apiUrl,
    };
    const bot =
      (o.discordProcesses ?? 0) === 0
        ? await inProcessBot({
            o,
            config,
            quota,
            redis,
            throttleMs,
            undo,
            discordFake,
            discordConfig,
            slackConfig,
          })
        : await botProcesses({
            o,
            spec: { redisUrl: redis.url, prefix, dataDir: data.path, quota, throttleMs },
            undo,
            discordConfig,
            slackConfig,
            log,
          });
    slackFake.deliverEventsTo('socket');
    const slackChannels = Array.from({ length: o.slackChannels }, (_, i) =>
      i === 0 ? slackFake.defaultChannelId : slackFake.addChannel({ name: `soak-${i}`, is_member: true }).id,
    );
    const web = { url: bot.webUrl };
    const connection = bot.connection;

    // --- the burst ----------------------------------------------------------------------------
    const png = await noisePng(32, 32, 5);
    const attachment = discordFake.addAttachment(png, { filename: 'pet.png', contentType: 'image/png' });
    const discordUsers: APIUser[] = Array.from({ length: o.discordUsers }, (_, i) =>
      discordFake.addUser(`soak${i}`),
    );
    // Each person in one of the guilds (so over every shard): the i-th in guild i % guilds.
    const guildChannels = discordFake.guilds().map((g) => g.channelId);
    const channelOf = new Map(discordUsers.map((u, i) => [u.id, guildChannels[i % guildChannels.length]!]));
    const slackUsers = Array.from(
      { length: o.slackUsers },
      (_, i) => slackFake.addUser({ name: `soak${i}` }).id,
    );
    const imagineText = (i: number) => `a soak lighthouse ${i}`;
    const handles: { handle: InteractionHandle; kind: 'imagine' | 'whatis'; user: string }[] = [];
    const slackAcks: Promise<number>[] = [];
    const webAcks: Promise<{ ms: number; status: number; jobId?: string; kind: string }>[] = [];
    let n = 0;
    const cpuBefore = { bot: await bot.cpuMs(), harness: cpuMsOfThisProcess() };
    const burstStart = performance.now();
    // Spread over spreadMs instead of all at once (0: at once).
    const gapMs = (o.spreadMs ?? 0) / ((o.discordUsers + o.slackUsers + 1) * o.requestsPerUser);
    const pace = () => (gapMs > 0 ? sleep(gapMs) : undefined);
    for (let r = 0; r < o.requestsPerUser; r++) {
      const imagine = r < o.imaginePerUser;
      for (const user of discordUsers) {
        await pace();
        const i = n++;
        const handle = discordFake.interact(
          imagine
            ? discordFake.slashCommand({
                name: 'imagine',
                options: { prompt: imagineText(i), steps: o.steps, size: '64' },
                user,
                channelId: channelOf.get(user.id)!,
              })
            : discordFake.slashCommand({
                name: 'whatis',
                options: { image: attachment, labels: 'cat, dog' },
                user,
                channelId: channelOf.get(user.id)!,
              }),
        );
        handles.push({ handle, kind: imagine ? 'imagine' : 'whatis', user: user.id });
      }
      for (const [u, user] of slackUsers.entries()) {
        await pace();
        const i = n++;
        slackAcks.push(
          slackFake.socket
            .send(
              'slash_commands',
              slackFake.build.slashCommand({
                command: '/imagine',
                text: `${imagineText(i)} --steps ${o.steps} --size 64`,
                user_id: user,
                channel_id: slackChannels[u % slackChannels.length]!,
              }),
            )
            .then((outcome) => ('latencyMs' in outcome ? outcome.latencyMs : Number.NaN)),
        );
      }
      await pace();
      const t0 = performance.now();
      webAcks.push(
        (imagine
          ? fetch(`${web.url}/api/imagine`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ prompt: imagineText(n++), steps: o.steps, width: 64, height: 64 }),
            })
          : fetch(`${web.url}/api/whatis?labels=cat,dog`, {
              method: 'POST',
              headers: { 'content-type': 'image/png' },
              body: png,
            })
        ).then(async (res) => {
          const body = (await res.json().catch(() => ({}))) as { jobId?: string };
          return {
            ms: performance.now() - t0,
            status: res.status,
            kind: imagine ? 'imagine' : 'whatis',
            ...(body.jobId ? { jobId: body.jobId } : {}),
          };
        }),
      );
      if (!imagine) n++;
    }
    const total = n;
    log(`burst: ${total} requests sent in ${(performance.now() - burstStart).toFixed(0)} ms`);
    // Acks: Discord's deferred callback, Slack's envelope ack; the playground's imagine answers at
    // once (202), its what-is only with the labels, so only its imagines count as acks.
    // Discord gives 3 s: an interaction not acked by then never will be (the fake answers 10062).
    await until('every Discord ack', Math.min(deadline, Date.now() + 15_000), () =>
      handles.every(({ handle }) => handle.ackType !== undefined),
    ).catch(() => {});
    const missedAcks = handles.filter(({ handle }) => handle.ackType === undefined).length;
    if (missedAcks > 0) {
      const statuses = new Map<string, number>();
      for (const { handle } of handles)
        for (const r of handle.requests()) {
          const key = `${r.route} ${r.status}`;
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
        }
      log(
        `burst: ${missedAcks} Discord interactions not acked; their requests: ${JSON.stringify([...statuses])}`,
      );
    }
    const discordAckMs = handles.map(({ handle }) => {
      const callback = handle.requests().find((r) => r.route === 'POST /interactions/:id/:token/callback');
      return (callback?.at ?? Number.NaN) - handle.dispatchedAt;
    });
    const slackAckMs = await Promise.all(slackAcks);
    const botStages = await bot.stages();
    const stageTimes = handles.map(({ handle }) => {
      const [raw, created, written] = botStages.get(handle.id) ?? [Number.NaN, Number.NaN, Number.NaN];
      const callback = handle.requests().find((r) => r.route === 'POST /interactions/:id/:token/callback');
      return { sent: handle.dispatchedAt, raw, created, written, acked: callback?.at ?? Number.NaN };
    });
    const stage = (name: string, ms: (t: (typeof stageTimes)[number]) => number) => {
      const s = summarizeAcks(stageTimes.map(ms));
      return { stage: name, p50: s.p50, p99: s.p99 };
    };
    const discordAckStages = [
      stage('dispatch -> packet at discord.js', (t) => t.raw - t.sent),
      stage('packet -> interactionCreate', (t) => t.created - t.raw),
      stage('interactionCreate -> callback sent by the bot', (t) => t.written - t.created),
      stage('callback sent -> read by the fake', (t) => t.acked - t.written),
      stage(BOT_PART_OF_ACK, (t) => t.written - t.sent),
    ];
    const ackWindowMs = performance.now() - burstStart;
    log(
      `burst: acked (${ackWindowMs.toFixed(0)} ms; epoch ${Math.round(performance.timeOrigin + burstStart)} to ${Math.round(performance.timeOrigin + burstStart + ackWindowMs)})`,
    );
    // CPU over the burst up to the last ack (a 15 s wait for missing acks counts idle time only).
    const cpu = {
      botMs: (await bot.cpuMs()) - cpuBefore.bot,
      harnessMs: cpuMsOfThisProcess() - cpuBefore.harness,
      windowMs: ackWindowMs,
    };
    const heapAfterBurst = await bot.heapMb();

    // --- positions and quotas, before any worker ---------------------------------------------
    const queues = {
      imagine: new Queue('imagine', { connection, prefix }),
      classify: new Queue('classify', { connection, prefix }),
    };
    // Acked Discord interactions work in the adapter's bounded slots after their ack: an /imagine
    // has been submitted once its deferred reply is edited (its position, or a refusal in a private
    // follow-up). A what-is is answered only with its labels, after the drain: the settling below
    // covers those.
    await until('every acked Discord /imagine answered', Math.min(deadline, Date.now() + 60_000), () =>
      handles.every(
        ({ handle, kind }) =>
          kind !== 'imagine' ||
          handle.ackType === undefined ||
          handle.requests().some((r) => /^(PATCH|POST) \/webhooks\//.test(r.route) && r.status < 300),
      ),
    ).catch(() => log('burst: some acked Discord /imagine were never answered'));
    // Submissions still in flight (whatis downloads the attachment first): wait until they settle.
    let last = -1;
    await until('the submissions to settle', deadline, async () => {
      const count = (await queues.imagine.count()) + (await queues.classify.count());
      const settled = count === last;
      last = count;
      if (!settled) await sleep(800);
      return settled;
    });
    const told = await bot.told();
    const positions = {} as BurstFigures['positions'];
    const accepted = {} as BurstFigures['accepted'];
    // Each person's accepted jobs per budget, from the jobs themselves (their origin).
    const perUser = new Map<
      string,
      { imagine: number; light: number; quotaId?: string; asked: { imagine: number; light: number } }
    >();
    const ask = (id: string, imagine: number, light: number) =>
      perUser.set(id, { imagine: 0, light: 0, asked: { imagine, light } });
    // A Discord request that was never acked (Discord's 3 s passed) never reached the core: the
    // budget is checked against the requests that did.
    for (const u of discordUsers) {
      const mine = handles.filter((h) => h.user === u.id && h.handle.ackType !== undefined);
      ask(
        `discord:${u.id}`,
        mine.filter((h) => h.kind === 'imagine').length,
        mine.filter((h) => h.kind === 'whatis').length,
      );
    }
    for (const u of slackUsers) ask(`slack:${u}`, o.requestsPerUser, 0);
    ask('web', o.imaginePerUser, o.requestsPerUser - o.imaginePerUser);
    const quotaViolations: string[] = [];
    for (const kind of ['imagine', 'classify'] as const) {
      // Waiting jobs, oldest (next) first: the position a job was told is the number of jobs ahead of it.
      const waiting = await queues[kind].getWaiting(0, -1);
      accepted[kind] = waiting.length;
      let right = 0;
      waiting.forEach((job, ahead) => {
        if (told.get(`${kind}:${job.id}`) === ahead) right++;
      });
      positions[kind] = {
        ok: right === waiting.length && told.size > 0,
        told: waiting.length,
        distinct: right,
      };
      if (right !== waiting.length)
        log(`positions ${kind}: ${waiting.map((j, i) => `${i}:${told.get(`${kind}:${j.id}`)}`).join(' ')}`);
      for (const job of waiting) {
        const origin = (job.data as { origin?: Parameters<typeof quotaUserId>[0] }).origin;
        const key =
          origin === undefined
            ? 'anonymous'
            : origin.platform === 'web'
              ? 'web'
              : `${origin.platform}:${origin.user}`;
        const entry = perUser.get(key);
        if (!entry || origin === undefined) {
          quotaViolations.push(`${key}: a job from nobody in the burst`);
          continue;
        }
        // The playground's identity is its keyboard's (startPlayground's userId), not the job's origin.
        entry.quotaId = origin.platform === 'web' ? 'web:soak' : quotaUserId(origin);
        entry[kind === 'imagine' ? 'imagine' : 'light']++;
      }
    }
    for (const [id, e] of perUser) {
      const want = {
        imagine: Math.min(e.asked.imagine, o.imagineLimit),
        light: Math.min(e.asked.light, o.lightLimit),
      };
      if (e.imagine !== want.imagine)
        quotaViolations.push(`${id}: ${e.imagine} imagine accepted, budget says ${want.imagine}`);
      if (e.light !== want.light)
        quotaViolations.push(`${id}: ${e.light} light accepted, budget says ${want.light}`);
      // The limiter's own count agrees.
      if (e.quotaId !== undefined) {
        const inWindow = await connection.zcard(keys.quotaWindow(prefix, 'imagine', e.quotaId));
        if (inWindow !== e.imagine)
          quotaViolations.push(`${id}: quota window holds ${inWindow}, jobs ${e.imagine}`);
      }
    }
    const webResults = await Promise.all(webAcks.filter((_, i) => i < o.imaginePerUser));
    log(
      `burst: ${accepted.imagine} imagine and ${accepted.classify} classify jobs accepted; quota problems: ${quotaViolations.join('; ') || 'none'}`,
    );

    // --- the drain: workers on, every job followed at once -------------------------------------
    const template = await pgliteTemplate(await embeddingDim(models.path));
    const commandsBefore = (await bot.redis()).total;
    const serverBefore = await serverCommands(connection);
    const drainStart = performance.now();
    const workers: WorkerProcess[] = [];
    const workerMetrics: string[] = [];
    for (let i = 0; i < o.workers; i++) {
      const metricsPort = await freePort();
      workerMetrics.push(`http://127.0.0.1:${metricsPort}/metrics`);
      const dir = await tempDir(`soak-worker-${i}`);
      undo.push(`worker dir ${i}`, dir.remove);
      const worker = await spawnWorker({
        redisUrl: redis.url,
        prefix,
        modelsDir: models.path,
        dataDir: dir.path,
        dataTemplate: template,
        env: {
          WORKER_QUEUES: 'imagine,classify',
          LOG_LEVEL: 'info',
          WORKER_METRICS_PORT: String(metricsPort),
        },
      });
      undo.push(`worker ${i}`, () => worker.stop());
      workers.push(worker);
    }
    log(`drain: ${o.workers} workers up (${((performance.now() - drainStart) / 1000).toFixed(1)} s)`);
    const pending = async () => {
      let left = 0;
      for (const q of Object.values(queues)) {
        const c = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized');
        left += (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
      }
      return left;
    };
    let lastLog = 0;
    await until('every job to end', deadline, async () => {
      const left = await pending();
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now();
        log(`drain: ${left} jobs left (${((performance.now() - drainStart) / 1000).toFixed(0)} s)`);
      }
      return left === 0;
    });
    // Every final posted: Discord's imagine replies, Slack's job messages, the playground's what-is.
    const isFinal = (handle: InteractionHandle) =>
      buttonIds(handle.original()).some((b) => b.startsWith('vq1:reroll:'));
    const discordImagine = () => handles.filter((h) => h.kind === 'imagine' && isFinal(h.handle));
    const discordWhatis = () =>
      handles.filter((h) => h.kind === 'whatis' && /```/.test(textOf(h.handle.original())));
    // What the quotas let through of the acked requests (the rest never reached the core).
    let expectedImagine = 0;
    let expectedWhatis = 0;
    for (const u of discordUsers) {
      const e = perUser.get(`discord:${u.id}`)!;
      expectedImagine += Math.min(e.asked.imagine, o.imagineLimit);
      expectedWhatis += Math.min(e.asked.light, o.lightLimit);
    }
    const expectedDiscord = { imagine: expectedImagine, whatis: expectedWhatis };
    const slackJobs = () =>
      slackChannels.flatMap((c) =>
        slackFake.messages(c).filter((m) => m.bot_id === slackFake.botId && /Seed \d+/.test(m.text ?? '')),
      );
    const expectedSlack = o.slackUsers * Math.min(o.requestsPerUser, o.imagineLimit);
    let lastFinals = 0;
    await until('every final post', deadline, () => {
      const imagineDone = discordImagine().length;
      const whatisDone = discordWhatis().length;
      const slackDone = slackJobs().filter((m) => /steps/.test(m.text ?? '')).length;
      if (Date.now() - lastFinals > 10_000) {
        lastFinals = Date.now();
        log(
          `finals: discord imagine ${imagineDone}/${expectedDiscord.imagine}, whatis ${whatisDone}/${expectedDiscord.whatis}, slack ${slackDone}/${expectedSlack}`,
        );
      }
      return (
        imagineDone >= expectedDiscord.imagine &&
        whatisDone >= expectedDiscord.whatis &&
        slackDone >= expectedSlack
      );
      // Missing finals are a figure of the run (the small test fails on them), not a crash of it.
    }).catch((error: unknown) => {
      const statuses = new Map<number, number>();
      for (const c of slackFake.callsTo('chat.update'))
        statuses.set(c.status, (statuses.get(c.status) ?? 0) + 1);
      const stuck = slackChannels.flatMap((c) =>
        slackFake
          .messages(c)
          .filter((m) => m.bot_id === slackFake.botId && !/Seed \d+.*steps/.test(m.text ?? '')),
      );
      log(
        `finals: ${(error as Error).message}; counting what arrived. chat.update statuses ${JSON.stringify([...statuses])}; ` +
          `${stuck.length} Slack job messages without a final, e.g. ${JSON.stringify(stuck[0]?.text ?? '').slice(0, 200)}`,
      );
    });
    const drainSeconds = (performance.now() - drainStart) / 1000;
    const webWhatis = await Promise.all(webAcks.filter((_, i) => i >= o.imaginePerUser));
    const commands = await bot.redis();
    const botCommands = commands.total - commandsBefore;
    const serverCommandsDrain = (await serverCommands(connection)) - serverBefore;
    const drainBuckets = [...commands.perSecond.entries()]
      .filter(([s]) => s * 1000 >= Date.now() - drainSeconds * 1000)
      .map(([, c]) => c);

    // --- chat limits ---------------------------------------------------------------------------
    let maxPerJob = 0;
    let maxIn5s = 0;
    let doubleFinals = 0;
    for (const { handle } of discordImagine()) {
      const edits = handle
        .requests()
        .filter((r) => r.route === 'PATCH /webhooks/:app/:token/messages/@original' && r.status === 200);
      maxPerJob = Math.max(maxPerJob, edits.length);
      maxIn5s = Math.max(
        maxIn5s,
        maxInWindow(
          edits.map((r) => r.at),
          5_000,
        ),
      );
      const finals = edits.filter((r) => JSON.stringify(r.body).includes('vq1:reroll:')).length;
      if (finals !== 1) doubleFinals++;
    }
    const limited = discordFake.requests.filter((r) => r.status === 429);
    const discordRateLimited = limited.length;
    if (limited.length > 0) log(`discord 429s: ${[...new Set(limited.map((r) => r.route))].join(', ')}`);
    const updates = slackFake.callsTo('chat.update');
    const unfinished = await pending();
    // The same counts from /metrics (shared/metrics.ts), so that the figures and the metrics agree.
    const scraped = await Promise.all(workerMetrics.map((url) => scrape(url)));
    const fromMetrics = {
      completed: { imagine: 0, classify: 0 },
      failures: 0,
      chatRequests: { discord: 0, slack: 0 },
      chatRateLimited: { discord: 0, slack: 0 },
    };
    for (const samples of scraped) {
      for (const s of samples.get('vqclip_job_duration_seconds_count') ?? [])
        if (s.labels.outcome === 'completed' && (s.labels.kind === 'imagine' || s.labels.kind === 'classify'))
          fromMetrics.completed[s.labels.kind] += s.value;
      for (const s of samples.get('vqclip_job_failures_total') ?? []) fromMetrics.failures += s.value;
    }
    for (const url of bot.metricsUrls) {
      const scrapedBot = await scrape(url);
      for (const s of scrapedBot.get('vqclip_chat_api_requests_total') ?? [])
        if (s.labels.platform === 'discord' || s.labels.platform === 'slack')
          fromMetrics.chatRequests[s.labels.platform] += s.value;
      for (const s of scrapedBot.get('vqclip_chat_api_rate_limited_total') ?? [])
        if (s.labels.platform === 'discord' || s.labels.platform === 'slack')
          fromMetrics.chatRateLimited[s.labels.platform] += s.value;
    }
    const failedJobs =
      (await queues.imagine.getJobCounts('failed')).failed! +
      (await queues.classify.getJobCounts('failed')).failed!;
    for (const q of Object.values(queues)) await q.close();

    const figures: BurstFigures = {
      requests: {
        discord: handles.length,
        slack: slackAcks.length,
        web: webAcks.length,
        total,
        users: o.discordUsers + o.slackUsers + 1,
      },
      ackMs: {
        discord: discordAckMs,
        slack: slackAckMs,
        web: webResults.filter((r) => r.kind === 'imagine').map((r) => r.ms),
      },
      discordAckStages,
      missedAcks,
      accepted,
      quotaViolations,
      positions,
      unfinished,
      failedJobs,
      finals: {
        discord: discordImagine().length,
        discordWhatis: discordWhatis().length,
        slack: slackJobs().length,
        web: webWhatis.filter((r) => r.status === 200).length,
        expected: {
          discord: expectedDiscord.imagine,
          discordWhatis: expectedDiscord.whatis,
          slack: expectedSlack,
          web: Math.min(o.requestsPerUser - o.imaginePerUser, o.lightLimit),
        },
      },
      doubleFinals,
      discordEdits: { maxPerJob, maxIn5s, rateLimited: discordRateLimited },
      slackUpdates: {
        total: updates.length,
        maxPerMinute: maxInWindow(
          updates.map((c) => c.at),
          60_000,
        ),
        rateLimited: slackFake.rateLimited.length,
      },
      redis: {
        botCommands,
        drainSeconds,
        perSecond: botCommands / drainSeconds,
        peakPerSecond: Math.max(0, ...drainBuckets),
        serverPerSecond: serverCommandsDrain / drainSeconds,
      },
      heapMb: { start: bot.heapStartMb, afterBurst: heapAfterBurst, end: await bot.heapMb() },
      cpu,
      botProcesses: bot.processes,
      fromMetrics,
      drainSeconds,
    };
    return figures;
  } finally {
    await undo.release();
  }
}

function cpuMsOfThisProcess(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** What the harness needs of the bot, wherever it runs. */
interface BotSide {
  /** The harness's own Redis connection (queues, quota windows, INFO). */
  connection: Redis;
  webUrl: string;
  metricsUrls: string[];
  heapStartMb: number;
  told(): Promise<Map<string, number>>;
  /** Per Discord interaction: its packet at discord.js, its interactionCreate, its callback sent. */
  stages(): Promise<Map<string, AckStageTimes>>;
  /** The bot's ioredis commands: in all and per second. */
  redis(): Promise<{ total: number; perSecond: Map<number, number> }>;
  heapMb(): Promise<number>;
  cpuMs(): Promise<number>;
  readonly processes: BurstFigures['botProcesses'];
}

type DiscordConnection = { token: string; applicationId: string; apiUrl: string; cdnUrl: string };
type SlackConnection = { botToken: string; signingSecret: string; appToken: string; apiUrl: string };

/** The bot in this process, as the soak first ran it: its CPU is shared with the fakes and the load. */
async function inProcessBot(a: {
  o: BurstOptions;
  config: ReturnType<typeof loadConfig>;
  quota: ReturnType<typeof loadConfig>['quota'];
  redis: PrivateRedis;
  throttleMs: number;
  undo: UndoStack;
  discordFake: FakeDiscord;
  discordConfig: DiscordConnection;
  slackConfig: SlackConnection;
}): Promise<BotSide> {
  const { o, undo } = a;
  // Every ioredis command of this process (the harness's own reads of the queues too).
  const commands = countRedisCommands();
  undo.push('command count', async () => commands.stop());
  const heapStartMb = heapMb();
  const services = await createBotServices(
    { ...a.config, quota: a.quota, redisUrl: a.redis.url },
    { logger: silentLogger, undo, throttleMs: a.throttleMs },
  );
  // The bot's /metrics, as `npm run bot` serves it: chat API calls and 429s per platform, heap.
  const observability = await startBotObservability(
    { metrics: { host: '127.0.0.1', port: 0 }, queuePrefix: a.config.queuePrefix },
    services,
    { undo, logger: silentLogger },
  );
  const metrics = observability?.metrics;
  // The position each submission was told (every adapter submits through this one client).
  const told = new Map<string, number>();
  const submit = services.jobs.submit.bind(services.jobs);
  services.jobs.submit = (async (...args: Parameters<typeof submit>) => {
    const out = await submit(...args);
    told.set(out.jobId, out.position);
    return out;
  }) as typeof submit;
  const discord: DiscordBot = await startDiscordBot({
    services,
    discord: a.discordConfig,
    logger: silentLogger,
    now: () => a.discordFake.clock.now(),
    ...(metrics === undefined ? {} : { metrics }),
    ...(o.discordWorkConcurrency === undefined ? {} : { workConcurrency: o.discordWorkConcurrency }),
  });
  undo.push('discord bot', () => discord.close());
  const { stages, stop: stopStages } = recordAckStages(discord.client);
  undo.push('ack stages', () => stopStages());
  const slack: SlackBot = await startSlackBot({
    services,
    slack: { ...a.slackConfig, port: 0 },
    logger: silentLogger,
    host: '127.0.0.1',
    apiRetries: 0,
    ...(metrics === undefined ? {} : { metrics }),
  });
  undo.push('slack bot', () => slack.close());
  const web: RunningPlayground = await startPlayground({
    jobs: services.jobs,
    indexJobs: services.indexJobs,
    blobs: services.blobs,
    library: new Library(`${a.config.dataDir}/library`),
    admin: false,
    userId: 'web:soak',
    port: 0,
    host: '127.0.0.1',
  });
  undo.push('playground', () => web.close());
  return {
    connection: services.connection,
    webUrl: web.url,
    metricsUrls: observability ? [`${observability.url}/metrics`] : [],
    heapStartMb,
    told: async () => told,
    stages: async () => stages,
    redis: async () => ({ total: commands.total(), perSecond: commands.perSecond }),
    heapMb: async () => heapMb(),
    cpuMs: async () => cpuMsOfThisProcess(),
    processes: [],
  };
}

/** The bot in child processes: Discord over shards, one per process; Slack and the playground beside. */
async function botProcesses(a: {
  o: BurstOptions;
  spec: Omit<BotProcessSpec, 'discord' | 'slack' | 'web'>;
  undo: UndoStack;
  discordConfig: DiscordConnection;
  slackConfig: SlackConnection;
  log: (line: string) => void;
}): Promise<BotSide> {
  const { o, undo } = a;
  const count = o.discordProcesses ?? 1;
  const specs: { name: string; spec: BotProcessSpec }[] = Array.from({ length: count }, (_, shard) => ({
    name: `discord shard ${shard}/${count}${!o.slackProcess && shard === 0 ? ' + slack + web' : ''}`,
    spec: {
      ...a.spec,
      discord: {
        ...a.discordConfig,
        shards: { ids: [shard], count },
        ...(o.discordWorkConcurrency === undefined ? {} : { workConcurrency: o.discordWorkConcurrency }),
      },
      ...(!o.slackProcess && shard === 0 ? { slack: a.slackConfig, web: { userId: 'web:soak' } } : {}),
    },
  }));
  if (o.slackProcess)
    specs.push({
      name: 'slack + web',
      spec: { ...a.spec, slack: a.slackConfig, web: { userId: 'web:soak' } },
    });
  // Started together: each loads its modules and logs in on its own core time.
  const started = await Promise.allSettled(specs.map(({ name, spec }) => startBotProcess(name, spec)));
  const children: BotProcess[] = [];
  for (const r of started) if (r.status === 'fulfilled') children.push(r.value);
  for (const child of children) undo.push(`bot process ${child.name}`, () => child.close());
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  a.log(`bot: ${children.length} processes (${children.map((c) => c.name).join('; ')})`);
  const connection = new Redis(a.spec.redisUrl, { maxRetriesPerRequest: null });
  undo.push('harness redis', async () => {
    await connection.quit();
  });
  const all = () => Promise.all(children.map((c) => c.figures()));
  const first = await all();
  const processes: BurstFigures['botProcesses'] = children.map((c) => ({
    name: c.name,
    heapMb: 0,
    cpuMs: 0,
    interactions: 0,
  }));
  const latest = async () => {
    const figures = await all();
    figures.forEach((f, i) => {
      processes[i]!.heapMb = f.heapMb;
      processes[i]!.cpuMs = f.cpuMs;
      processes[i]!.interactions = f.interactions;
    });
    return figures;
  };
  const webUrl = children.find((c) => c.webUrl !== undefined)?.webUrl;
  if (webUrl === undefined) throw new Error('soak: no bot process runs the playground');
  return {
    connection,
    webUrl,
    metricsUrls: children.flatMap((c) => (c.metricsUrl === undefined ? [] : [c.metricsUrl])),
    heapStartMb: first.reduce((sum, f) => sum + f.heapStartMb, 0),
    async told() {
      return new Map((await latest()).flatMap((f) => f.told));
    },
    async stages() {
      return new Map(
        (await latest()).flatMap((f) =>
          // NaN (not timed) crosses the IPC channel's JSON as null.
          f.stages.map(([id, ...times]) => [id, times.map((t) => t ?? Number.NaN) as AckStageTimes] as const),
        ),
      );
    },
    async redis() {
      const figures = await latest();
      const perSecond = new Map<number, number>();
      for (const f of figures)
        for (const [sec, c] of f.redisPerSecond) perSecond.set(sec, (perSecond.get(sec) ?? 0) + c);
      return { total: figures.reduce((sum, f) => sum + f.redisCommands, 0), perSecond };
    },
    async heapMb() {
      return (await latest()).reduce((sum, f) => sum + f.heapMb, 0);
    },
    async cpuMs() {
      return (await latest()).reduce((sum, f) => sum + f.cpuMs, 0);
    },
    processes,
  };
}

function textOf(message: APIMessage | undefined): string {
  return JSON.stringify(message ?? {});
}

async function embeddingDim(modelsDir: string): Promise<number> {
  const { loadModels } = await import('../../src/worker/runtime/models.js');
  const models = await loadModels(modelsDir, { intraOpThreads: 1 });
  try {
    return models.embeddingDim;
  } finally {
    await models.close();
  }
}

async function scrape(url: string): Promise<Samples> {
  const res = await fetch(url);
  return parseMetrics(await res.text());
}

/** Commands the Redis server ran so far (every client). */
async function serverCommands(connection: Redis): Promise<number> {
  const info = await connection.info('stats');
  return Number(/^total_commands_processed:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}

export function summarizeAcks(ms: readonly number[]): { p50: number; p99: number; max: number; n: number } {
  const sorted = ms.filter(Number.isFinite).sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
    n: sorted.length,
  };
}

export type { JobKind };
