// The Discord adapter across process and connection loss: a bot restarted mid-job re-attaches and
// posts the result once, buttons posted by the old process work in the new one, and the gateway
// closing (resumable or not) does not stop commands.
import type { APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { FakeDiscord, InteractionHandle } from '../../helpers/fake-discord/index.js';
import { editsOf, ephemeralOf, eventually, isFinal, jobRefOf, textOf, useDiscordHarness } from './harness.js';

const harness = useDiscordHarness();

function running(handle: InteractionHandle): boolean {
  return editsOf(handle).some((r) => r.files.some((f) => f.filename.startsWith('preview.')));
}

/** Bot messages of a channel other than interaction replies. */
function _botPosts(fake: FakeDiscord, channelId: string, except: string | undefined): APIMessage[] {
  return fake.channelMessages(channelId).filter((m) => m.author.id === fake.applicationId && m.id !== except);
}

describe('the Discord bot over time', () => {
  it('re-attaches after a restart, posts the result once, and old buttons still work', async () => {
    const h = await harness.start();
    const { fake } = h;
    const parentHandle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'an old map', steps: 3, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(parentHandle.original()), {
      timeoutMs: 20_000,
      what: 'the first image',
    });
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a long voyage', steps: 40, size: '64' } }),
    );
    await fake.waitFor(() => running(handle), { timeoutMs: 20_000, what: 'a preview' });
    const bot = await h.restart();
    expect(bot.reattached).toBe(1);
    await fake.waitFor(() => isFinal(handle.original()), {
      timeoutMs: 30_000,
      what: 'the re-attached result',
    });
    await eventually(async () => (await bot.core.runner.inflightOf('discord', fake.user.id)).length === 0, {
      what: 'the in-flight entry dropped',
    });
    const finals = editsOf(handle).filter((r) => JSON.stringify(r.body).includes('vq1:reroll:'));
    expect(finals).toHaveLength(1);

    // Buttons posted by the first process, pressed in the second.
    const parent = parentHandle.original() as APIMessage;
    const cont = fake.interact(
      fake.buttonClick({ customId: `vq1:variations:${jobRefOf(parent)}`, message: parent }),
    );
    const reroll = fake.interact(
      fake.buttonClick({ customId: `vq1:reroll:${jobRefOf(parent)}`, message: parent }),
    );
    await fake.waitFor(() => isFinal(cont.original()) && isFinal(reroll.original()), {
      timeoutMs: 30_000,
      what: 'the follow-ups after the restart',
    });
    expect(textOf(reroll.original())).toContain('an old map');
  });

  it('keeps answering after the gateway closes (resume) and after a non-resumable close (identify)', async () => {
    const { fake } = await harness.start();
    fake.closeGateway(4000);
    await fake.waitForResume(1, { timeoutMs: 10_000 });
    const first = fake.interact(fake.slashCommand({ name: 'queue' }));
    await fake.waitFor(() => ephemeralOf(first), { what: 'the /queue answer after RESUME' });
    fake.closeGateway(4007);
    await fake.waitForReady(2, { timeoutMs: 15_000 });
    const second = fake.interact(fake.slashCommand({ name: 'queue' }));
    await fake.waitFor(() => ephemeralOf(second), { what: 'the /queue answer after IDENTIFY' });
    expect(textOf(ephemeralOf(second))).toContain('no pictures in progress');
  });
});
