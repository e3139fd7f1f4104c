// /whatis and the "What is this?" shortcut against the fake Slack and a real worker: the latest image
// of the channel, a pasted permalink, a shortcut's message; files fetched from url_private with the
// bot token after files.info; every bad input answered privately with the core's sentence.
import { describe, expect, it } from 'vitest';
import { useBotStack } from '../../helpers/bot-stack.js';
import { permalink, type SlackMessage } from '../../helpers/fake-slack/index.js';
import { buttonOf, finished, type Harness, noisePng, nthJobMessage, useSlackHarness } from './harness.js';

// A small default vocabulary: "What is this?" has no labels, and CLIP's full one (>1000 labels x 80
// templates) costs the tiny models 10-16 s to embed.
const stack = useBotStack({
  classifier: {
    defaultLabels: ['cat', 'dog', 'car', 'tree', 'house', 'bicycle', 'apple'],
    defaultTemplates: ['a photo of a {}.'],
  },
});
const slack = useSlackHarness(stack);

/** A user posts an image in the channel: the message in the fake, and its event to the bot. */
async function postImage(
  h: Harness,
  bytes: Buffer,
  name: string,
  options: { mimetype?: string; indexed?: boolean } = {},
): Promise<SlackMessage> {
  const { mimetype } = options;
  const file = h.fake.addFile(bytes, { name, channel: h.channel, ...(mimetype ? { mimetype } : {}) });
  const message = h.fake.messages(h.channel).find((m) => m.files?.[0]?.id === file.id);
  if (!message) throw new Error('seeded message missing');
  await h.event(h.fake.build.events.message({ files: [file], ts: message.ts }));
  // Events are acked before they are handled: wait until indexing has looked at it (and recorded it).
  if (options.indexed !== false)
    await h.fake.waitFor(() => h.fake.downloads.some((d) => d.fileId === file.id));
  return message;
}

const shortcut = (h: Harness, callback_id: string, message: SlackMessage) =>
  h.send('interactive', h.fake.build.messageAction({ callback_id, message }));

/** The label lines of a /whatis answer (inside its code block). */
function labelsOf(h: Harness, n: number): string[] {
  const blocks = (h.fake.ephemerals[n - 1]?.blocks ?? []) as { text?: { text?: string } }[];
  const code = blocks.map((b) => b.text?.text ?? '').find((t) => t.startsWith('```')) ?? '';
  return code
    .replaceAll('```', '')
    .split('\n')
    .map((l) => l.split(/\s{2,}/)[0]?.trim() ?? '');
}

describe('/whatis', () => {
  it('labels the latest image, a permalink’s image, and a shortcut’s message; with given labels', {
    timeout: 120_000,
  }, async () => {
    const h = await slack.start();
    await h.command('/whatis', '');
    expect(await h.nextEphemeral(1)).toBe(
      'I found no recent image in this channel. Post one, or attach it to the command.',
    );

    const first = await postImage(h, await noisePng(1), 'first.png');
    const latest = await postImage(h, await noisePng(2), 'latest.png');
    await h.command('/whatis', 'cat, dog, human');
    await h.nextEphemeral(2);
    expect(h.fake.ephemerals[1]?.blocks?.[0]).toMatchObject({ text: { text: '*What I see in latest.png*' } });
    expect(labelsOf(h, 2).sort()).toEqual(['cat', 'dog', 'human']);
    const latestId = latest.files?.[0]?.id;
    // Posting indexed both images (a download each); the answer downloaded the latest once more.
    expect(h.fake.downloads.at(-1)).toMatchObject({
      fileId: latestId,
      authorized: true,
      contentType: 'image/png',
    });

    // A permalink picks that message; what is left of the text are the labels.
    await h.command('/whatis', `<${permalink(h.fake.baseUrl, h.channel, first.ts)}> a tree, a house`);
    await h.nextEphemeral(3);
    expect(h.fake.ephemerals[2]?.text).toMatch(/^(a tree|a house) \(\d+%\)$/);
    expect(h.fake.downloads.at(-1)?.fileId).toBe(first.files?.[0]?.id);

    // No labels: the default vocabulary (this file's small one), top 5.
    await shortcut(h, 'what_is_this', first);
    await h.nextEphemeral(4);
    expect(labelsOf(h, 4)).toHaveLength(5);
    expect(h.fake.callsTo('files.info').length).toBeGreaterThanOrEqual(3);
    expect(h.fake.ephemerals.every((e) => e.user === h.fake.defaultUserId)).toBe(true);
  });

  it('finds a permalink’s message through history when it never saw it, in HTTP mode', async () => {
    const h = await slack.start({ mode: 'http' });
    const file = h.fake.addFile(await noisePng(3), { name: 'old.png', channel: h.channel });
    const old = h.fake.messages(h.channel).find((m) => m.files?.[0]?.id === file.id);
    await h.command('/whatis', `${permalink(h.fake.baseUrl, h.channel, old?.ts ?? '')} sky, sea`);
    await h.nextEphemeral(1);
    expect(labelsOf(h, 1).sort()).toEqual(['sea', 'sky']);
    expect(h.fake.callsTo('conversations.history')).toMatchObject([
      { ok: true, args: { latest: old?.ts, inclusive: 'true', limit: '1' } },
    ]);
  });
});

describe('bad inputs to /whatis and its shortcut', () => {
  it('answers each in plain words, privately, and downloads nothing it should not', async () => {
    const h = await slack.start({ bot: { maxImageBytes: 2000 } });
    const say = async (n: number, act: () => Promise<unknown>) => {
      await act();
      return h.nextEphemeral(n);
    };
    const text = await postImage(h, Buffer.from('just words'), 'notes.txt', {
      mimetype: 'text/plain',
      indexed: false,
    });
    expect(await say(1, () => shortcut(h, 'what_is_this', text))).toBe(
      'That file is not an image I can read. Try a PNG, JPEG, WebP or GIF.',
    );
    const fakePng = await postImage(h, Buffer.from('not a png at all'), 'fake.png');
    expect(await say(2, () => shortcut(h, 'what_is_this', fakePng))).toBe(
      'That file is not an image I can read. Try a PNG, JPEG, WebP or GIF.',
    );
    const big = await postImage(h, await noisePng(4, 96), 'big.png', { indexed: false });
    const bigId = big.files?.[0]?.id ?? '';
    expect(await say(3, () => shortcut(h, 'what_is_this', big))).toMatch(
      /^That image is \d+ KiB; the limit is 2 KiB\. Please send a smaller one\.$/,
    );
    expect(h.fake.downloads.some((d) => d.fileId === bigId)).toBe(false);

    const small = await postImage(h, await noisePng(5, 8), 'small.png');
    const smallFile = h.fake.file(small.files?.[0]?.id ?? '');
    const realUrl = smallFile?.file.url_private_download ?? '';
    if (smallFile) smallFile.file.url_private_download = 'https://files.example.com/a.png';
    expect(await say(4, () => shortcut(h, 'what_is_this', small))).toBe(
      'I can only read images uploaded to Slack; links to other sites are not fetched. Please attach the image.',
    );
    if (smallFile) smallFile.file.url_private_download = realUrl;

    const plain = h.fake.seedMessage(h.channel, { text: 'no picture here' });
    expect(await say(5, () => shortcut(h, 'what_is_this', plain))).toBe(
      'That message has no image I can read.',
    );

    const other = h.fake.addChannel({ name: 'other' }).id;
    const link = permalink(h.fake.baseUrl, other, small.ts);
    expect(await say(6, () => h.command('/whatis', link))).toBe('You are not allowed to do that.');

    const downloads = h.fake.downloads.length;
    h.fake.setScopes(h.fake.botToken, ['chat:write', 'commands', 'channels:history', 'users:read']);
    expect(await say(7, () => shortcut(h, 'what_is_this', small))).toBe(
      'The app is missing the `files:read` permission for this. An admin needs to reinstall or re-invite it.',
    );
    expect(h.fake.downloads).toHaveLength(downloads);
    expect(h.ephemeralTexts()).toHaveLength(7);
  });

  it('reads Slack’s HTML login page (no token reached the file host) as the missing files:read scope', async () => {
    // A proxy that drops the Authorization header: Slack then serves its sign-in page with 200.
    const stripping: typeof fetch = (input, init) => {
      const headers = new Headers(init?.headers);
      headers.delete('authorization');
      return fetch(input, { ...init, headers });
    };
    const h = await slack.start({ bot: { fetch: stripping } });
    const message = await postImage(h, await noisePng(6), 'cat.png');
    await shortcut(h, 'what_is_this', message);
    expect(await h.nextEphemeral(1)).toBe(
      'The app is missing the `files:read` permission for this. An admin needs to reinstall or re-invite it.',
    );
    // Indexing the post and the answer: both got the page, neither decoded it.
    expect(h.fake.downloads.map((d) => [d.authorized, d.contentType])).toEqual([
      [false, 'text/html'],
      [false, 'text/html'],
    ]);
  });

  it('shows a worker’s failure on the job’s message (a saved state the worker cannot read)', async () => {
    const h = await slack.start();
    await h.command('/imagine', 'a broken clock --steps 3 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, message.ts);
    const cont = buttonOf(done, 'continue');
    const jobId = cont.slice('vq1:continue:'.length) as `imagine:${string}`;
    const status = await h.stack.services.jobs.status(jobId);
    if (status.state !== 'completed' || !status.result.latentBlob) throw new Error('no saved state');
    await h.stack.services.connection.hset(status.result.latentBlob, 'data', Buffer.from('garbage'));
    await h.press(done, cont);
    const next = await nthJobMessage(h.fake, 2);
    const failed = await h.fake.waitFor(() => {
      const m = h.fake.message(h.channel, next.ts);
      return m && !/Queued|Starting|Step/.test(m.text) ? m : undefined;
    }, 20_000);
    expect(failed.text).toMatch(/^a broken clock: (That request is not valid|Something went wrong)/);
    expect(failed.blocks).toHaveLength(1);
  });
});
