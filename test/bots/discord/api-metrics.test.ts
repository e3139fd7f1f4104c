// Discord's REST calls and 429s as the bot process counts them (vqclip_chat_api_*), against what the
// fake Discord itself answered: real discord.js, a real worker, an /imagine whose progress edits run
// into the webhook route's rate limit (discord.js waits each 429 out and tries again).
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../../src/shared/metrics.js';
import { parseMetrics, sample } from '../../helpers/prometheus.js';
import { isFinal, useDiscordHarness } from './harness.js';

const harness = useDiscordHarness();

describe('Discord API metrics', () => {
  it('counts every REST response by status, and each 429 once', { timeout: 90_000 }, async () => {
    const metrics = new Metrics({ processMetrics: false });
    const { fake } = await harness.start({
      fake: { rateLimit: { limit: 2, windowMs: 1_000 } },
      bot: { metrics },
    });
    // The commands were registered before the bot started, by another REST client: not the bot's.
    const before = fake.requests.length;
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a busy street', steps: 40, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 60_000, what: 'the final image' });
    await handle.waitForRequest((r) => r.status === 200 && JSON.stringify(r.body).includes('vq1:reroll:'));
    expect(fake.rateLimitedCount).toBeGreaterThan(0);
    // Responses still on their way back to discord.js are not counted yet: wait until none is.
    const answered = () => fake.requests.slice(before).filter((r) => r.status !== 0);
    const total = async () =>
      (parseMetrics(await metrics.text()).get('vqclip_chat_api_requests_total') ?? []).reduce(
        (s, x) => s + x.value,
        0,
      );
    for (let i = 0; i < 100 && (await total()) !== answered().length; i++)
      await new Promise((r) => setTimeout(r, 20));

    const expected = new Map<string, number>();
    for (const r of answered()) expected.set(String(r.status), (expected.get(String(r.status)) ?? 0) + 1);
    const m = parseMetrics(await metrics.text());
    for (const [status, n] of expected) {
      expect(sample(m, 'vqclip_chat_api_requests_total', { platform: 'discord', status }), status).toBe(n);
    }
    expect(await total()).toBe(answered().length);
    expect(sample(m, 'vqclip_chat_api_rate_limited_total', { platform: 'discord' })).toBe(
      fake.rateLimitedCount,
    );
  });
});
