// undici 7 loaded before discord.js (as by a process whose first import is the address guard or
// Slack's socket mode): it fills the process-wide dispatcher slot undici 6 reads, and
// @discordjs/rest without an agent of its own then sent through undici 7's Agent, which failed
// every file upload with "action is not a function". The REST clients now send through their own
// undici's Agent (src/bots/discord/rest-agent.ts). This file's first import is undici 7, so it
// runs in a process of its own (vitest.config.ts) where nothing was loaded before it.
import { Agent as Undici7Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import { editsOf, isFinal, useDiscordHarness } from './harness.js';

const harness = useDiscordHarness();

describe('Discord uploads with undici 7 loaded first', () => {
  it('still posts the previews and the final image as files', async () => {
    // The premise: undici 7 owns the slot undici 6 (and so @discordjs/rest's default) reads.
    const slot = (globalThis as Record<symbol, unknown>)[Symbol.for('undici.globalDispatcher.1')];
    expect(slot).toBeInstanceOf(Undici7Agent);
    const { fake } = await harness.start();
    const handle = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        options: { prompt: 'a red apple', steps: 60, size: '64', seed: 3 },
      }),
    );
    expect(await handle.waitForAck()).toBe(5);
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
    expect(handle.original()?.attachments.map((a) => a.filename)).toEqual(['vqclip-3.png']);
    expect(editsOf(handle).some((r) => r.files.some((f) => f.filename.startsWith('preview.')))).toBe(true);
  });
});
