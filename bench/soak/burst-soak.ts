// `npm run soak -- burst`: the burst of bench/soak/burst.ts at full scale: 1,000 requests from 200
// people at once (150 on Discord, 49 on Slack, the playground's one), one imagine each accepted (200
// followed at once by the bot) and three what-is each, drained by three worker processes on the
// tiny models. `--discord-processes=N` runs the bot in N Discord shard processes (Slack and the
// playground in the first, or in their own with `--slack-process`), over `--discord-guilds=G`
// guilds (1 and 4 by default); 0 runs it in the soak's own process, beside the fakes, as the
// first soaks did. Prints acks and their stages, quotas, positions, finals, chat edits, Redis
// commands, heap and CPU; the figures go to docs/RELIABILITY.md.
import type { Row } from '../lib.js';
import { BOT_PART_OF_ACK, type BurstOptions, burstFailures, runBurst, summarizeAcks } from './burst.js';
import type { SoakModule } from './lib.js';

export const FULL_BURST: Omit<BurstOptions, 'log'> = {
  discordUsers: 150,
  slackUsers: 49,
  requestsPerUser: 5,
  imaginePerUser: 2,
  imagineLimit: 1,
  lightLimit: 3,
  steps: 8,
  workers: 3,
  slackChannels: 7,
  timeoutMs: 9 * 60_000,
  // The bot in one process of its own, as `npm run bot` runs it: on 2 cores the fastest (two shard
  // processes and the soak's fakes are three busy processes on two cores; docs/RELIABILITY.md).
  discordProcesses: 1,
  discordGuilds: 4,
};

const QUICK_BURST: Omit<BurstOptions, 'log'> = {
  ...FULL_BURST,
  discordUsers: 15,
  slackUsers: 5,
  workers: 2,
  slackChannels: 2,
  timeoutMs: 4 * 60_000,
};

/** 200 imagine jobs, one per person, sent over 6 s (so every ack can land), followed at once. */
export const FOLLOW_BURST: Omit<BurstOptions, 'log'> = {
  ...FULL_BURST,
  requestsPerUser: 1,
  imaginePerUser: 1,
  steps: 12,
  spreadMs: 6_000,
  timeoutMs: 6 * 60_000,
};

export const burstSoak: SoakModule = {
  name: 'burst',
  description: '1,000 requests from 200 people on Discord, Slack and the playground at once, then the drain',
  async run(options) {
    const base = options.flags.follow !== undefined ? FOLLOW_BURST : options.quick ? QUICK_BURST : FULL_BURST;
    // `--discord-users=N` etc.: a burst of another size (what fits the 3 s ack on a machine).
    const num = (name: string, fallback: number) => {
      const v = options.flags[name];
      return v === undefined ? fallback : Number(v);
    };
    const o = {
      ...base,
      discordUsers: num('discord-users', base.discordUsers),
      slackUsers: num('slack-users', base.slackUsers),
      workers: num('workers', base.workers),
      ...(options.flags['discord-work-concurrency'] === undefined
        ? {}
        : { discordWorkConcurrency: num('discord-work-concurrency', 16) }),
      // `--discord-processes=0`: the bot in the soak's own process, beside the fakes (the first runs).
      discordProcesses: num('discord-processes', base.discordProcesses ?? 0),
      slackProcess: options.flags['slack-process'] !== undefined || base.slackProcess === true,
      discordGuilds: num('discord-guilds', base.discordGuilds ?? 1),
    };
    for (const [name, v] of Object.entries({
      'discord-processes': o.discordProcesses,
      'discord-guilds': o.discordGuilds,
    }))
      if (!Number.isInteger(v) || v < 0 || (name === 'discord-guilds' && v < 1))
        throw new Error(`--${name} must be a whole number (at least ${name === 'discord-guilds' ? 1 : 0})`);
    const f = await runBurst({ ...o, log: (line) => console.log(`  ${line}`) });
    const ackRows: Row[] = (['discord', 'slack', 'web'] as const).map((platform) => {
      const s = summarizeAcks(f.ackMs[platform]);
      return { name: platform, cells: { acks: s.n, 'p50 ms': s.p50, 'p99 ms': s.p99, 'max ms': s.max } };
    });
    const all = summarizeAcks([...f.ackMs.discord, ...f.ackMs.slack, ...f.ackMs.web]);
    ackRows.push({
      name: 'all',
      cells: { acks: all.n, 'p50 ms': all.p50, 'p99 ms': all.p99, 'max ms': all.max },
    });
    const botPart = f.discordAckStages.find((st) => st.stage === BOT_PART_OF_ACK);
    const stageRows: Row[] = f.discordAckStages.map((st) => ({
      name: st.stage,
      cells: { 'p50 ms': st.p50, 'p99 ms': st.p99 },
    }));
    const checks: Row[] = [
      { name: 'requests / people', cells: { value: `${f.requests.total} / ${f.requests.users}` } },
      { name: 'Discord interactions never acked (3 s passed)', cells: { value: f.missedAcks } },
      {
        name: 'accepted imagine / classify',
        cells: { value: `${f.accepted.imagine} / ${f.accepted.classify}` },
      },
      { name: 'quota violations', cells: { value: f.quotaViolations.length } },
      {
        name: 'positions right (imagine, classify)',
        cells: {
          value: `${f.positions.imagine.distinct}/${f.positions.imagine.told}, ${f.positions.classify.distinct}/${f.positions.classify.told}`,
        },
      },
      { name: 'jobs unfinished / failed', cells: { value: `${f.unfinished} / ${f.failedJobs}` } },
      {
        name: 'finals discord imagine / whatis',
        cells: {
          value: `${f.finals.discord}/${f.finals.expected.discord}, ${f.finals.discordWhatis}/${f.finals.expected.discordWhatis}`,
        },
      },
      {
        name: 'finals slack / web whatis',
        cells: {
          value: `${f.finals.slack}/${f.finals.expected.slack}, ${f.finals.web}/${f.finals.expected.web}`,
        },
      },
      { name: 'discord jobs posted twice', cells: { value: f.doubleFinals } },
      {
        name: 'discord edits: max per job / max in 5 s / 429s',
        cells: {
          value: `${f.discordEdits.maxPerJob} / ${f.discordEdits.maxIn5s} / ${f.discordEdits.rateLimited}`,
        },
      },
      {
        name: 'slack chat.update: total / max per 60 s / 429s',
        cells: {
          value: `${f.slackUpdates.total} / ${f.slackUpdates.maxPerMinute} / ${f.slackUpdates.rateLimited}`,
        },
      },
      {
        name: 'bot Redis commands/s: mean / peak (server, all clients)',
        cells: {
          value: `${f.redis.perSecond.toFixed(0)} / ${f.redis.peakPerSecond} (${f.redis.serverPerSecond.toFixed(0)})`,
        },
      },
      {
        name: 'bot heap MiB: start / after burst / end',
        cells: {
          value: `${f.heapMb.start.toFixed(0)} / ${f.heapMb.afterBurst.toFixed(0)} / ${f.heapMb.end.toFixed(0)}`,
        },
      },
      { name: 'drain seconds', cells: { value: f.drainSeconds.toFixed(0) } },
      {
        name: 'CPU ms from the first request to the last ack: bot / harness (window ms)',
        cells: {
          value: `${f.cpu.botMs.toFixed(0)} / ${f.cpu.harnessMs.toFixed(0)} (${f.cpu.windowMs.toFixed(0)})`,
        },
      },
      ...f.botProcesses.map((p) => ({
        name: `bot process ${p.name}: Discord interactions / heap MiB at the end / CPU s in all`,
        cells: { value: `${p.interactions} / ${p.heapMb.toFixed(0)} / ${(p.cpuMs / 1000).toFixed(1)}` },
      })),
      {
        name: '/metrics: jobs completed imagine / classify; failures',
        cells: {
          value: `${f.fromMetrics.completed.imagine} / ${f.fromMetrics.completed.classify}; ${f.fromMetrics.failures}`,
        },
      },
      {
        name: '/metrics: chat API calls (429s) discord / slack',
        cells: {
          value: `${f.fromMetrics.chatRequests.discord} (${f.fromMetrics.chatRateLimited.discord}) / ${f.fromMetrics.chatRequests.slack} (${f.fromMetrics.chatRateLimited.slack})`,
        },
      },
    ];
    return {
      tables: [
        {
          title: 'ack time (slash command to deferred ack; playground: POST /api/imagine to its 202)',
          rows: ackRows,
        },
        { title: 'where a Discord ack goes (fake dispatch to callback at the fake)', rows: stageRows },
        { title: 'burst checks', rows: checks },
      ],
      failures: burstFailures(f),
      notes: [
        `goal p99 ack <= 500 ms: ${all.p99 <= 500 ? 'met' : 'NOT met'} (${all.p99.toFixed(0)} ms)`,
        ...(botPart === undefined
          ? []
          : [
              `the bot's part of a Discord ack (dispatch to its callback sent) p99 ${botPart.p99.toFixed(0)} ms; the rest is the fake reading it on the same cores`,
            ]),
        ...f.quotaViolations.slice(0, 10),
      ],
      details: { options: o, figures: f },
    };
  },
};
