// Discord sharding, the platform's own way to spread a bot over processes: each process IDENTIFYs
// with `shard: [id, count]` and Discord sends each guild's events to shard (guild_id >> 22) % count
// only, DMs to shard 0. The fake routes as Discord does (unmodified discord.js Clients prove it), and
// the adapter takes its shards from DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT: two bots, one per shard,
// each answer the interactions of their own guilds and never the other's.
import { once } from 'node:events';
import { Client, Events, GatewayIntentBits, type Interaction } from 'discord.js';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startDiscordBot } from '../../../src/bots/discord/discord-adapter.js';
import { discordRestAgent } from '../../../src/bots/discord/rest-agent.js';
import { loadConfig } from '../../../src/shared/config.js';
import { type FakeDiscord, shardOf, startFakeDiscord } from '../../helpers/fake-discord/index.js';
import { useDiscordHarness } from './harness.js';

const GUILDS = [{ name: 'one' }, { name: 'two' }, { name: 'three' }, { name: 'four' }];

describe('sharding in the fake Discord', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });

  async function client(fake: FakeDiscord, shards: number[] | 'auto', shardCount?: number) {
    const c = new Client({
      intents: [GatewayIntentBits.Guilds],
      shards,
      ...(shardCount === undefined ? {} : { shardCount }),
      rest: { agent: discordRestAgent(), api: fake.apiUrl, retries: 0 },
    });
    cleanups.push(() => c.destroy());
    const seen: Interaction[] = [];
    c.on(Events.InteractionCreate, (i) => seen.push(i));
    const ready = once(c, Events.ClientReady);
    await c.login(fake.token);
    await ready;
    return { c, seen };
  }

  it('sends each guild to shard (guild_id >> 22) % count only, and DMs to shard 0', async () => {
    const fake = await startFakeDiscord({ heartbeatIntervalMs: 1_000, rateLimit: false, guilds: GUILDS });
    cleanups.push(() => fake.close());
    const guilds = fake.guilds();
    // Consecutive guilds land on alternate shards (dated 1 ms apart), as guilds in the wild spread.
    expect(guilds.map((g) => shardOf(g.id, 2))).toEqual(
      [0, 1, 0, 1].map((k) => (shardOf(guilds[0]!.id, 2) + k) % 2),
    );
    const zero = await client(fake, [0], 2);
    const one = await client(fake, [1], 2);
    const on = (shard: number) => guilds.filter((g) => shardOf(g.id, 2) === shard).map((g) => g.id);
    expect([...zero.c.guilds.cache.keys()].sort()).toEqual(on(0).sort());
    expect([...one.c.guilds.cache.keys()].sort()).toEqual(on(1).sort());
    expect(fake.sessions().map((s) => s.shard)).toEqual(
      expect.arrayContaining([
        [0, 2],
        [1, 2],
      ]),
    );

    for (const g of guilds) fake.interact(fake.slashCommand({ name: 'queue', channelId: g.channelId }));
    fake.interact(fake.slashCommand({ name: 'queue', where: 'bot-dm' }));
    await fake.waitFor(() => zero.seen.length + one.seen.length === guilds.length + 1);
    expect(zero.seen.filter((i) => i.guildId !== null).map((i) => i.guildId)).toEqual(on(0));
    expect(one.seen.map((i) => i.guildId)).toEqual(on(1));
    // The DM (no guild) went to shard 0 alone.
    expect(zero.seen.filter((i) => i.guildId === null)).toHaveLength(1);
  });

  it("starts GET /gateway/bot's recommended shards with shards: 'auto'", async () => {
    const fake = await startFakeDiscord({
      heartbeatIntervalMs: 1_000,
      rateLimit: false,
      guilds: GUILDS,
      recommendedShards: 2,
      maxConcurrency: 2,
    });
    cleanups.push(() => fake.close());
    const both = await client(fake, 'auto');
    expect([...both.c.ws.shards.keys()].sort()).toEqual([0, 1]);
    expect(both.c.guilds.cache.size).toBe(GUILDS.length);
  });

  it('closes an IDENTIFY with a shard outside its count with 4010', async () => {
    const fake = await startFakeDiscord({ heartbeatIntervalMs: 1_000 });
    cleanups.push(() => fake.close());
    const ws = new WebSocket(`${fake.gatewayUrl}/?v=10&encoding=json`);
    cleanups.push(async () => ws.terminate());
    await once(ws, 'message');
    ws.send(JSON.stringify({ op: 2, d: { token: fake.token, intents: 1, properties: {}, shard: [2, 2] } }));
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(4010);
  });
});

describe('DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT', () => {
  it('parses the shards of this process, all when only the count is set, and says what is wrong', () => {
    expect(loadConfig({ DISCORD_SHARD_IDS: '1,3', DISCORD_SHARD_COUNT: '4' }).discord.shards).toEqual({
      ids: [1, 3],
      count: 4,
    });
    expect(loadConfig({ DISCORD_SHARD_COUNT: '2' }).discord.shards).toEqual({ ids: [0, 1], count: 2 });
    expect(loadConfig({}).discord.shards).toBeUndefined();
    expect(() => loadConfig({ DISCORD_SHARD_IDS: '0' })).toThrow(
      /DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT/,
    );
    expect(() => loadConfig({ DISCORD_SHARD_IDS: '2', DISCORD_SHARD_COUNT: '2' })).toThrow(
      /shard 2 is not below DISCORD_SHARD_COUNT \(2\)/,
    );
    expect(() => loadConfig({ DISCORD_SHARD_IDS: 'one', DISCORD_SHARD_COUNT: '2' })).toThrow(
      /DISCORD_SHARD_IDS: must be shard ids separated by commas/,
    );
  });
});

describe('one bot per shard', () => {
  const harness = useDiscordHarness();

  /** A second bot on the harness's services, shard 1 of 2 from DISCORD_SHARD_IDS / _COUNT. */
  function startShardOne(h: Awaited<ReturnType<typeof harness.start>>) {
    const config = loadConfig({
      DISCORD_TOKEN: h.fake.token,
      DISCORD_APPLICATION_ID: h.fake.applicationId,
      DISCORD_API_URL: h.fake.apiUrl,
      DISCORD_CDN_URL: h.fake.cdnUrl,
      DISCORD_SHARD_IDS: '1',
      DISCORD_SHARD_COUNT: '2',
    });
    return startDiscordBot({
      services: h.stack.services,
      discord: config.discord,
      rest: { retries: 0, timeout: 10_000 },
      now: () => h.fake.clock.now(),
    });
  }

  it('each bot answers its own guilds only, with its shards from the config', async () => {
    const h = await harness.start({
      fake: { guilds: GUILDS },
      bot: { shards: [0], shardCount: 2 },
    });
    const second = await startShardOne(h);
    try {
      expect([...h.bot.client.ws.shards.keys()]).toEqual([0]);
      expect([...second.client.ws.shards.keys()]).toEqual([1]);
      const seen = new Map<string, number>();
      h.bot.client.on(Events.InteractionCreate, (i) => seen.set(i.id, 0));
      second.client.on(Events.InteractionCreate, (i) => seen.set(i.id, 1));
      const handles = h.fake.guilds().map((g) => ({
        shard: shardOf(g.id, 2),
        handle: h.fake.interact(h.fake.slashCommand({ name: 'queue', channelId: g.channelId })),
      }));
      for (const { shard, handle } of handles) {
        await handle.waitForAck();
        expect(seen.get(handle.id)).toBe(shard);
        // Acked once, by the one bot that got it.
        expect(handle.rejected()).toEqual([]);
      }
    } finally {
      await second.close();
    }
  });

  it("re-attaches to its own guilds' jobs only, and leaves the other shard's in flight", async () => {
    const h = await harness.start({ fake: { guilds: GUILDS }, bot: { shards: [0], shardCount: 2 } });
    const inflight = h.stack.services.inflight;
    // Jobs that do not exist: a run that follows one ends by itself; what counts is who follows.
    const entries = h.fake.guilds().map((g, k) => ({
      jobId: `imagine:gone-${k}`,
      guild: g.id,
      shard: shardOf(g.id, 2),
    }));
    for (const e of entries) {
      await inflight.add({
        jobId: e.jobId as never,
        origin: { platform: 'discord', workspace: e.guild, channel: 'c', user: 'u' },
        reply: {
          v: 1,
          applicationId: h.fake.applicationId,
          channelId: 'c',
          canPost: true,
          userId: 'u',
          guildId: e.guild,
          sizeLimit: 10 * 2 ** 20,
          followUps: 0,
        },
        startedAt: Date.now(),
      });
    }
    const others = entries.filter((e) => e.shard === 0).map((e) => e.jobId);
    expect(others.length).toBeGreaterThan(0);
    expect(others.length).toBeLessThan(entries.length);
    // Shard 1's process starts now (shard 0's started before the entries were there).
    const second = await startShardOne(h);
    try {
      expect(second.reattached).toBe(entries.length - others.length);
      // Shard 0's entries are still there for its own process.
      const left = (await inflight.list('discord')).map((e) => e.jobId);
      expect(left).toEqual(expect.arrayContaining(others));
    } finally {
      await second.close();
    }
  });
});
