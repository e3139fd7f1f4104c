// The README's picture of /imagine in Discord: the messages real discord.js sent to the fake
// Discord for one job on the tiny models (a preview with Cancel while it paints, then the final
// image with its buttons), drawn in Discord's look and photographed in Chromium. Saves
// (UPDATE_SCREENSHOTS=1) docs/screenshots/discord-imagine.png.
import type { APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import {
  chromiumAvailable,
  type DiscordMessageLike,
  type Drawn,
  dataUri,
  discordPage,
  photograph,
  savePicture,
} from '../../helpers/chat-pictures.js';
import { isFinal, useDiscordHarness } from './harness.js';

const SCREENSHOT = new URL('../../../docs/screenshots/discord-imagine.png', import.meta.url).pathname;
const harness = useDiscordHarness();

/** The message with its attachments' bytes, fetched from the fake CDN while they still exist. */
async function drawn(caption: string, message: APIMessage): Promise<Drawn<DiscordMessageLike>> {
  const images = new Map<string, string>();
  for (const a of message.attachments) {
    const res = await fetch(a.url);
    expect(res.status).toBe(200);
    images.set(a.url, dataUri(new Uint8Array(await res.arrayBuffer()), a.content_type ?? 'image/png'));
  }
  return { caption, message: structuredClone(message), images };
}

describe.skipIf(!chromiumAvailable)('Discord, as a member sees it', () => {
  it('/imagine: a preview with Cancel while it paints, then the final image with its buttons', async () => {
    const { fake } = await harness.start();
    const prompt = 'a watercolor lighthouse at dusk';
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt, steps: 40, size: '128', seed: 7 } }),
    );
    await handle.waitForAck();
    const painting = await fake.waitFor(
      () => {
        const m = handle.original();
        return m?.attachments.some((a) => a.filename.startsWith('preview.')) ? m : undefined;
      },
      { timeoutMs: 60_000, what: 'a preview' },
    );
    const panes = [await drawn('While it paints', painting)];
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 60_000, what: 'the final image' });
    panes.push(await drawn('When it is done', handle.original()!));

    const shot = await photograph(discordPage(panes, 'imagine'), 1240);
    expect(shot.text).toContain(prompt);
    expect(shot.text).toMatch(/Step \d+\/40 · loss [\d.]+ · done in /);
    expect(shot.buttons[0]).toContain('Cancel');
    expect(shot.buttons[1]).toEqual(['Re-roll', 'Variations', 'Continue (+50)', 'Remix', 'Timelapse']);
    // Both images are real PNGs the browser decoded: the preview and the 128 px final.
    expect(shot.images).toHaveLength(2);
    expect(shot.images.every((i) => i.naturalWidth > 0)).toBe(true);
    expect(shot.images[1]).toEqual({ naturalWidth: 128, naturalHeight: 128 });
    await savePicture(SCREENSHOT, shot.png);
  });
});
