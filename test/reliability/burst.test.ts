// The soak's burst (bench/soak/burst.ts) at small scale in `npm test`: people on Discord (real
// discord.js), Slack (real Bolt) and the playground send /imagine and /whatis at once against the
// bot in two processes of its own (bot-process.ts: one Discord shard each, Slack and the playground
// in the first), with no worker running yet, then two worker processes drain it. The people are in
// two guilds, one on each shard, so each process gets exactly its guild's interactions. Quotas hold exactly,
// every position told is the number of jobs ahead, every job ends and is posted once, and the chat
// edits stay inside the limits the fakes enforce. (The full scale and its figures: `npm run soak`.)
import { describe, expect, it } from 'vitest';
import { BOT_PART_OF_ACK, burstFailures, runBurst } from '../../bench/soak/burst.js';

describe('a burst on every adapter at once', () => {
  it('holds quotas exactly, tells positions right, ends and posts every job once, within chat limits', async () => {
    const figures = await runBurst({
      discordUsers: 4,
      slackUsers: 2,
      requestsPerUser: 5,
      imaginePerUser: 2,
      imagineLimit: 1,
      lightLimit: 3,
      steps: 6,
      workers: 2,
      slackChannels: 2,
      discordProcesses: 2,
      discordGuilds: 2,
      timeoutMs: 150_000,
      // The ack time is the soak's figure; here every request must be acked and handled.
      lateAcksAccepted: true,
    });
    expect(figures.requests.total).toBe(35);
    // Sharded: 2 people x 5 requests in each guild, each guild on its own shard and process.
    expect(figures.botProcesses.map((p) => p.interactions)).toEqual([10, 10]);
    expect(figures.missedAcks).toBe(0);
    expect(figures.quotaViolations).toEqual([]);
    // One imagine per person (the window's budget), every what-is (within the light budget).
    expect(figures.accepted).toEqual({ imagine: 7, classify: 4 * 3 + 3 });
    expect(figures.positions.imagine).toMatchObject({ ok: true, told: 7 });
    expect(figures.positions.classify).toMatchObject({ ok: true, told: 15 });
    expect(figures.unfinished).toBe(0);
    // The workers' and the bot's /metrics say the same.
    expect(figures.fromMetrics.completed).toEqual(figures.accepted);
    expect(figures.fromMetrics.failures).toBe(0);
    expect(figures.fromMetrics.chatRequests.discord).toBeGreaterThan(0);
    expect(figures.fromMetrics.chatRequests.slack).toBeGreaterThan(0);
    expect(figures.fromMetrics.chatRateLimited).toEqual({ discord: 0, slack: 0 });
    expect(figures.failedJobs).toBe(0);
    expect(figures.finals.discord).toBe(figures.finals.expected.discord);
    expect(figures.finals.discordWhatis).toBe(figures.finals.expected.discordWhatis);
    expect(figures.finals.slack).toBe(figures.finals.expected.slack);
    expect(figures.finals.web).toBe(figures.finals.expected.web);
    expect(figures.doubleFinals).toBe(0);
    expect(figures.discordEdits.maxIn5s).toBeLessThanOrEqual(5);
    expect(figures.discordEdits.rateLimited).toBe(0);
    expect(figures.slackUpdates.maxPerMinute).toBeLessThanOrEqual(50);
    expect(figures.slackUpdates.rateLimited).toBe(0);
    expect(figures.ackMs.discord.every(Number.isFinite)).toBe(true);
    expect(figures.ackMs.slack.every(Number.isFinite)).toBe(true);
    // Every stage of a Discord ack was timed in the bot processes, the callback's sending included,
    // and the bot's part of an ack is no longer than the ack the fake saw.
    for (const st of figures.discordAckStages) {
      expect(Number.isFinite(st.p99), st.stage).toBe(true);
      expect(st.p50, st.stage).toBeGreaterThanOrEqual(0);
    }
    const botPart = figures.discordAckStages.find((st) => st.stage === BOT_PART_OF_ACK);
    expect(botPart?.p99).toBeLessThanOrEqual(Math.max(...figures.ackMs.discord));
    // The soak's exit status reads the same figures.
    expect(burstFailures(figures)).toEqual([]);
  }, 200_000);
});
