// The README's picture of /imagine in Slack: the message real Bolt posted to the fake Slack for one
// job on the tiny models (edited with a preview and Cancel while it paints, then the final image
// with its buttons), drawn in Slack's look and photographed in Chromium. Saves
// (UPDATE_SCREENSHOTS=1) docs/screenshots/slack-imagine.png.
import { describe, expect, it } from 'vitest';
import { useBotStack } from '../../helpers/bot-stack.js';
import {
  chromiumAvailable,
  type Drawn,
  dataUri,
  photograph,
  type SlackMessageLike,
  savePicture,
  slackPage,
} from '../../helpers/chat-pictures.js';
import type { FakeSlack } from '../../helpers/fake-slack/index.js';
import { actionIdsOf, finished, imageFilesOf, jobMessages, useSlackHarness } from './harness.js';

const SCREENSHOT = new URL('../../../docs/screenshots/slack-imagine.png', import.meta.url).pathname;
const stack = useBotStack();
const slack = useSlackHarness(stack);

/** The message with the bytes of the files its image blocks name, read while they still exist. */
function drawn(fake: FakeSlack, caption: string, message: SlackMessageLike): Drawn<SlackMessageLike> {
  const images = new Map<string, string>();
  for (const id of imageFilesOf(message as Parameters<typeof imageFilesOf>[0])) {
    const file = fake.file(id);
    expect(file?.bytes).toBeDefined();
    images.set(id, dataUri(file!.bytes!, file!.file.mimetype ?? 'image/png'));
  }
  return { caption, message: structuredClone(message), images };
}

describe.skipIf(!chromiumAvailable)('Slack, as a member of the channel sees it', () => {
  it('/imagine: a preview with Cancel while it paints, then the final image with its buttons', async () => {
    const h = await slack.start({ mode: 'socket' });
    const prompt = 'a watercolor lighthouse at dusk';
    await h.command('/imagine', `${prompt} --steps 40 --size 128 --seed 7`);
    const first = await h.fake.waitFor(() => jobMessages(h.fake)[0], 15_000);
    const painting = await h.fake.waitFor(() => {
      const m = h.fake.message(h.channel, first.ts);
      const preview = imageFilesOf(m)[0];
      return preview !== undefined && h.fake.file(preview)?.bytes && actionIdsOf(m).length === 1
        ? m
        : undefined;
    }, 60_000);
    const panes = [drawn(h.fake, 'While it paints', painting)];
    panes.push(drawn(h.fake, 'When it is done', await finished(h.fake, first.ts, h.channel, 60_000)));

    const users = new Map([[h.fake.defaultUserId, 'alice']]);
    const shot = await photograph(slackPage(panes, users), 1260);
    expect(shot.text).toContain(prompt);
    expect(shot.text).toContain('@alice');
    expect(shot.buttons[0]).toEqual(['Cancel']);
    expect(shot.buttons[1]).toEqual(['Re-roll', 'Variations', 'Continue', 'Timelapse']);
    expect(shot.images).toHaveLength(2);
    expect(shot.images.every((i) => i.naturalWidth > 0)).toBe(true);
    expect(shot.images[1]).toEqual({ naturalWidth: 128, naturalHeight: 128 });
    await savePicture(SCREENSHOT, shot.png);
  });
});
