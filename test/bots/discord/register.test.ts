// `npm run discord:register` against the fake Discord: one PUT of the whole set, so a second run
// leaves the same commands (same ids), and a guild run registers to that guild only.
import { afterEach, describe, expect, it } from 'vitest';
import { commandDefinitions } from '../../../src/bots/discord/commands.js';
import { registerCommands } from '../../../src/bots/discord/register.js';
import { type FakeDiscord, startFakeDiscord } from '../../helpers/fake-discord/index.js';

let fake: FakeDiscord | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

describe('registerCommands', () => {
  it('PUTs the whole set, idempotently, globally or to one guild', async () => {
    fake = await startFakeDiscord();
    const options = {
      token: fake.token,
      applicationId: fake.applicationId,
      apiUrl: fake.apiUrl,
      rest: { retries: 0 },
    };
    const first = await registerCommands(options);
    const second = await registerCommands(options);
    expect(second).toEqual(first);
    expect(first.map((c) => c.name)).toEqual(commandDefinitions().map((c) => c.name));
    expect(first.map((c) => c.type)).toEqual([1, 1, 1, 1, 1, 3, 3]);
    expect(fake.requestsTo('PUT /applications/:app/commands').map((r) => r.status)).toEqual([200, 200]);
    expect(fake.requestsTo('PUT /applications/:app/commands')[0]?.headers.authorization).toBe(
      `Bot ${fake.token}`,
    );

    const inGuild = await registerCommands({ ...options, guildId: fake.guild.id });
    expect(fake.commands(fake.guild.id).map((c) => c.name)).toEqual(inGuild.map((c) => c.name));
    expect(fake.commands().map((c) => c.id)).toEqual(first.map((c) => c.id));
  });

  it('fails loudly on a wrong token', async () => {
    fake = await startFakeDiscord();
    await expect(
      registerCommands({
        token: 'nope',
        applicationId: fake.applicationId,
        apiUrl: fake.apiUrl,
        rest: { retries: 0 },
      }),
    ).rejects.toThrow(/401|Unauthorized/i);
  });
});
