// Slack's Web API calls and 429s as the bot process counts them (vqclip_chat_api_*), against what
// the fake Slack itself answered: real Bolt in HTTP mode, a real worker, an /imagine whose progress
// edits run into chat.update's per-minute limit.
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../../src/shared/metrics.js';
import { useBotStack } from '../../helpers/bot-stack.js';
import { parseMetrics, sample } from '../../helpers/prometheus.js';
import { actionIdsOf, botMessages, useSlackHarness } from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

describe('Slack API metrics', () => {
  it('counts every Web API response by status, and each 429 once', { timeout: 90_000 }, async () => {
    const metrics = new Metrics({ processMetrics: false });
    // Two edits a second, fewer than the adapter's budget allows: progress edits meet 429.
    const h = await slack.start({
      mode: 'http',
      fake: { rateLimits: { 'chat.update': { limit: 2, windowMs: 1000 } } },
      bot: { metrics, updatesPerMinute: 600 },
    });
    await h.send(
      'slash_commands',
      h.fake.build.slashCommand({ command: '/imagine', text: 'a red apple --steps 30 --size 64 --seed 3' }),
    );
    const message = await h.fake.waitFor(() =>
      botMessages(h.fake).find((m) => m.thread_ts === undefined || m.thread_ts === m.ts),
    );
    await h.fake.waitFor(() => {
      const m = h.fake.message(h.channel, message.ts);
      return actionIdsOf(m).some((id) => id.startsWith('vq1:reroll:')) ? m : undefined;
    }, 60_000);
    expect(h.fake.rateLimited.length).toBeGreaterThan(0);

    const expectedNow = () => {
      const expected = new Map<string, number>();
      for (const call of h.fake.calls)
        expected.set(String(call.status), (expected.get(String(call.status)) ?? 0) + 1);
      // The upload host's POSTs go through the same WebClient fetch.
      expected.set('200', (expected.get('200') ?? 0) + h.fake.uploads.length);
      return expected;
    };
    const total = (counts: Iterable<number>) => [...counts].reduce((s, n) => s + n, 0);
    const countedNow = async () =>
      (parseMetrics(await metrics.text()).get('vqclip_chat_api_requests_total') ?? []).reduce(
        (s, x) => s + x.value,
        0,
      );
    // The fake records a call when it answers; the bot counts it once the answer is read, and the
    // bot may still be tidying up (the last preview's deletion) after the final edit: wait until
    // both sides have settled on the same total.
    for (let i = 0; i < 100 && (await countedNow()) !== total(expectedNow().values()); i++)
      await new Promise((r) => setTimeout(r, 50));
    const expected = expectedNow();
    const m = parseMetrics(await metrics.text());
    for (const [status, n] of expected) {
      expect(sample(m, 'vqclip_chat_api_requests_total', { platform: 'slack', status }), status).toBe(n);
    }
    const counted = (m.get('vqclip_chat_api_requests_total') ?? []).reduce((s, x) => s + x.value, 0);
    expect(counted).toBe(total(expected.values()));
    expect(sample(m, 'vqclip_chat_api_rate_limited_total', { platform: 'slack' })).toBe(
      h.fake.rateLimited.length,
    );
  });
});
