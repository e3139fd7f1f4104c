// Discord's limits on a reply: a job outliving its 15-minute interaction token moves to a channel
// message the reply links to (a DM where the app is only user-installed), and uploads fit the
// interaction's attachment_size_limit.
import type { APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { FakeDiscord, InteractionHandle } from '../../helpers/fake-discord/index.js';
import { editsOf, eventually, isFinal, textOf, useDiscordHarness, V2 } from './harness.js';

const harness = useDiscordHarness();

function running(handle: InteractionHandle): boolean {
  return editsOf(handle).some((r) => r.files.some((f) => f.filename.startsWith('preview.')));
}

/** Bot messages of a channel other than interaction replies. */
function botPosts(fake: FakeDiscord, channelId: string, except: string | undefined): APIMessage[] {
  return fake.channelMessages(channelId).filter((m) => m.author.id === fake.applicationId && m.id !== except);
}

describe('the limits of an interaction reply', () => {
  it('moves a job outliving its token to a channel message that the reply links to', async () => {
    const { fake, stack } = await harness.start();
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a slow sunrise', steps: 40, size: '64' } }),
    );
    await fake.waitFor(() => running(handle), { timeoutMs: 20_000, what: 'a preview' });
    // Inside the bot's 60 s margin: the reply can still be edited to link to the new message.
    fake.clock.advance(14.5 * 60_000);
    const moved = await fake.waitFor(() => botPosts(fake, fake.channel.id, handle.original()?.id)[0], {
      timeoutMs: 10_000,
      what: 'the channel message',
    });
    const link = `https://discord.com/channels/${fake.guild.id}/${fake.channel.id}/${moved.id}`;
    await fake.waitFor(() => textOf(handle.original()).includes(link), { what: 'the link from the reply' });
    await fake.waitFor(() => isFinal(fake.message(moved.id)), {
      timeoutMs: 30_000,
      what: 'the final in the channel',
    });
    expect((fake.message(moved.id)?.flags ?? 0) & V2).toBe(V2);
    expect(handle.rejected()).toEqual([]);
    await eventually(async () => (await stack.services.inflight.list('discord')).length === 0, {
      what: 'the in-flight entry dropped',
    });
  });

  it('goes on in a DM where the app is only user-installed and the token has expired', async () => {
    // The bot's own clock does not see the jump, so it learns of the expiry from Discord's 401.
    const { fake } = await harness.start({ bot: { now: Date.now } });
    const handle = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        where: 'foreign-guild',
        options: { prompt: 'a far island', steps: 40, size: '64' },
      }),
    );
    await fake.waitFor(() => running(handle), { timeoutMs: 20_000, what: 'a preview' });
    fake.clock.advance(15 * 60_000 + 1_000);
    const dm = await fake.waitFor(() => botPosts(fake, fake.dmChannel(), undefined)[0], {
      timeoutMs: 10_000,
      what: 'the DM',
    });
    await fake.waitFor(() => isFinal(fake.message(dm.id)), {
      timeoutMs: 30_000,
      what: 'the final in the DM',
    });
    expect(textOf(fake.message(dm.id))).toContain('a far island');
    // The expired token was tried once, refused, and never again; no follow-up was spent.
    expect(handle.rejected().map((r) => r.status)).toEqual([401]);
    expect(handle.followUps()).toEqual([]);
  });

  it('re-encodes a final image larger than the attachment size limit, and says so', async () => {
    const { fake } = await harness.start();
    const handle = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        attachmentSizeLimit: 2_500,
        options: { prompt: 'a noisy field', steps: 3, size: '128', seed: 4 },
      }),
    );
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
    const final = handle.original();
    expect(final?.attachments.map((a) => a.filename)).toEqual(['vqclip-4.jpg']);
    expect(textOf(final)).toMatch(/re-encoded as JPEG .* to fit this chat's upload limit of 2\.4 KiB/);
    expect(handle.rejected()).toEqual([]);
  });
});
