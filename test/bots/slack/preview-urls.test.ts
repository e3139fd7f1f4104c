// Previews by presigned image_url (SLACK_PREVIEW_IMAGE_URLS with blobs in S3): real Bolt against the
// fake Slack, which downloads every image_url as Slack's servers do when a message is posted or
// edited, and a real worker writing its previews into s3rver on loopback. Previews arrive as
// image_url blocks the fake downloaded as PNGs, no preview is uploaded, the final image is still a
// file; a store the fake cannot reach is refused once, logged once, and previews are uploaded as
// before. The fake's own image_url rules (http(s), 3000 characters, the download) are checked first.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { App, LogLevel } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isImageUrlRefusal, PreviewUrls } from '../../../src/bots/slack/preview-urls.js';
import { S3BlobStore } from '../../../src/shared/blobs/s3-blob-store.js';
import type { BlobStore } from '../../../src/shared/blobs.js';
import { loadConfig } from '../../../src/shared/config.js';
import { decodeImage, probeImage } from '../../../src/shared/image/decode.js';
import { encodeWebp } from '../../../src/shared/image/encode.js';
import { keys } from '../../../src/shared/queues.js';
import { holdAfterFirstPreview } from '../../helpers/blob-gate.js';
import { useBotStack } from '../../helpers/bot-stack.js';
import { startFakeSlack } from '../../helpers/fake-slack/index.js';
import { useS3 } from '../../helpers/s3.js';
import { noisePng } from '../../helpers/worker-process.js';
import { finished, imageFilesOf, nthJobMessage, testLogger, useSlackHarness } from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);
const s3 = useS3();

const FALLBACK_LOG = 'Slack could not show a preview from the blob store';

/** A tiny PNG (magic bytes, then anything) and a page that is not an image, served on loopback. */
let images: Server;
let imagesUrl = '';
beforeAll(async () => {
  images = createServer((req, res) => {
    if (req.url === '/a.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]));
    } else if (req.url === '/page.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end('<html>sign in first</html>');
    } else {
      res.writeHead(404).end('no such key');
    }
  });
  await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
  imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => images.close(resolve));
});

const silentBoltLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  setLevel: () => {},
  getLevel: () => LogLevel.ERROR,
  setName: () => {},
};

type ImageBlock = { type: string; image_url?: string; slack_file?: { id: string } };
const blocksOf = (c: { args: Record<string, unknown> }) =>
  JSON.parse(String(c.args.blocks ?? '[]')) as ImageBlock[];
const imageUrlsOf = (c: { args: Record<string, unknown> }) =>
  blocksOf(c)
    .filter((b) => b.type === 'image' && b.image_url !== undefined)
    .map((b) => b.image_url ?? '');

type Fake = Awaited<ReturnType<typeof startFakeSlack>>;
type Call = ReturnType<Fake['callsTo']>[number];
const showsFile = (c: Call) => c.ok && blocksOf(c).some((b) => b.slack_file);
/** Edits that showed a preview: by image_url (taken or refused), or an uploaded file while running. */
const previewEdits = (fake: Fake) =>
  fake.callsTo('chat.update').filter((c) => imageUrlsOf(c).length > 0 || showsFile(c)).length;
/** Edits that showed a preview as an uploaded file (Slack accepted them). */
const filePreviewEdits = (fake: Fake) => fake.callsTo('chat.update').filter(showsFile).length;

/**
 * Holds the worker after its first preview until the bot has edited a preview into the message, so
 * a tiny job cannot end before the bot read its progress: otherwise whether a run shows a preview
 * at all depends on the machine's pace against the follower's reads. `shown` counts the edits that
 * count (by default any preview edit, refused ones included).
 */
const untilPreviewShown =
  (fake: () => Fake | undefined, shown: (fake: Fake) => number = previewEdits) =>
  (blobs: BlobStore): BlobStore =>
    holdAfterFirstPreview(blobs, async () => {
      const f = fake();
      if (f) await f.waitFor(() => shown(f) >= 1, 15_000);
    });

describe('the fake Slack downloads image_url as Slack does', () => {
  it('accepts a PNG it downloaded, refuses a 404, a page that is not an image, a non-http URL and one over 3000 characters', async () => {
    const fake = await startFakeSlack();
    const app = new App({
      logger: silentBoltLogger,
      token: fake.botToken,
      signingSecret: fake.signingSecret,
      clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } },
      deferInitialization: true,
    });
    try {
      const post = (image_url: string) =>
        app.client.chat
          .postMessage({
            channel: fake.defaultChannelId,
            text: 'x',
            blocks: [{ type: 'image', image_url, alt_text: 'a' }],
          })
          .then(
            () => 'ok',
            (e: { data?: { error?: string; response_metadata?: { messages?: string[] } } }) =>
              `${e.data?.error}: ${e.data?.response_metadata?.messages?.join(' ')}`,
          );
      expect(await post(`${imagesUrl}/a.png`)).toBe('ok');
      const refused = 'invalid_blocks: [ERROR] downloading image failed [json-pointer:/blocks/0/image_url]';
      expect(await post(`${imagesUrl}/missing.png`)).toBe(refused);
      expect(await post(`${imagesUrl}/page.png`)).toBe(refused);
      expect(await post('ftp://example.com/a.png')).toBe(
        'invalid_blocks: [ERROR] invalid_url [json-pointer:/blocks/0/image_url]',
      );
      expect(await post(`${imagesUrl}/a.png?${'x'.repeat(3000)}`)).toBe(
        'invalid_blocks: [ERROR] invalid_url [json-pointer:/blocks/0/image_url]',
      );
      // Downloaded once each, when posted: the invalid ones never.
      expect(fake.imageFetches.map((f) => [new URL(f.url).pathname, f.ok, f.reason ?? f.kind])).toEqual([
        ['/a.png', true, 'png'],
        ['/missing.png', false, 'HTTP 404'],
        ['/page.png', false, 'not an image'],
      ]);
      // chat.update downloads again: the edit is refused when the image is gone.
      const posted = await app.client.chat.postMessage({ channel: fake.defaultChannelId, text: 'y' });
      const edit = (image_url: string) =>
        app.client.chat
          .update({
            channel: fake.defaultChannelId,
            ts: posted.ts ?? '',
            text: 'y',
            blocks: [{ type: 'image', image_url, alt_text: 'a' }],
          })
          .then(
            () => 'ok',
            (e: { data?: { error?: string } }) => e.data?.error,
          );
      expect(await edit(`${imagesUrl}/a.png`)).toBe('ok');
      expect(await edit(`${imagesUrl}/gone.png`)).toBe('invalid_blocks');
    } finally {
      await fake.close();
    }
  });
});

describe('PreviewUrls', () => {
  it('presigns a PNG preview itself, a WebP one as a JPEG copy, and turns off once, logged once', async () => {
    const store = new S3BlobStore({ s3: s3.config({ keyPrefix: 'preview-unit' }), prefix: 'pu' });
    const warnings: string[] = [];
    const logger = { ...testLogger(), warn: (_o: unknown, msg?: string) => warnings.push(String(msg ?? _o)) };
    try {
      const urls = new PreviewUrls({ blobs: store, enabled: true, logger });
      const png = await noisePng(16, 16, 1);
      const pngKey = await store.put(png, { contentType: 'image/png' });
      const asPng = await urls.linkOf(pngKey, 'slack-preview:job:1');
      expect(asPng).toMatchObject({ key: pngKey, copy: false });
      expect(await (await fetch(asPng?.url ?? '')).arrayBuffer().then((b) => Buffer.from(b))).toEqual(
        Buffer.from(png),
      );

      const webp = await encodeWebp(await decodeImage(png));
      const webpKey = await store.put(webp, { contentType: 'image/webp' });
      const asWebp = await urls.linkOf(webpKey, 'slack-preview:job:2');
      expect(asWebp?.copy).toBe(true);
      expect(asWebp?.key).toMatch(/:blob:slack-preview:job:2$/);
      const fetched = new Uint8Array(await (await fetch(asWebp?.url ?? '')).arrayBuffer());
      expect(await probeImage(fetched)).toMatchObject({ format: 'jpeg', width: 16, height: 16 });
      expect(await store.ttl(asWebp?.key ?? '')).toBeLessThanOrEqual(900);
      await urls.forget(asWebp);
      expect(await store.get(asWebp?.key ?? '')).toBeUndefined();
      expect(await store.get(webpKey)).toBeDefined();
      // A blob that is gone has no link.
      expect(await urls.linkOf(keys.blob('pu', 'never-written'), 'x')).toBeUndefined();

      urls.off('test');
      urls.off('again');
      expect(urls.on).toBe(false);
      expect(await urls.linkOf(pngKey, 'slack-preview:job:3')).toBeUndefined();
      expect(warnings).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  it('is configured by SLACK_PREVIEW_IMAGE_URLS, off by default', () => {
    expect(loadConfig({}).slack.previewImageUrls).toBeUndefined();
    expect(loadConfig({ SLACK_PREVIEW_IMAGE_URLS: 'true' }).slack.previewImageUrls).toBe(true);
    expect(loadConfig({ SLACK_PREVIEW_IMAGE_URLS: '0' }).slack.previewImageUrls).toBeUndefined();
    expect(() => loadConfig({ SLACK_PREVIEW_IMAGE_URLS: 'yes' })).toThrow(
      /SLACK_PREVIEW_IMAGE_URLS.*must be true or false/,
    );
  });

  it('tells an image_url refusal from other invalid_blocks', () => {
    const refusal = (errors: string[]) => ({
      code: 'slack_webapi_platform_error',
      data: { ok: false, error: 'invalid_blocks', errors },
    });
    expect(isImageUrlRefusal(refusal(['downloading image failed [json-pointer:/blocks/1/image_url]']))).toBe(
      true,
    );
    expect(isImageUrlRefusal(refusal(['invalid slack file [json-pointer:/blocks/1/slack_file]']))).toBe(
      false,
    );
    expect(isImageUrlRefusal({ code: 'slack_webapi_platform_error', data: { error: 'ratelimited' } })).toBe(
      false,
    );
  });
});

describe('previews by presigned image_url', () => {
  it('shows previews from the store by URL, uploads none of them, and still uploads the final image', async () => {
    let h: Awaited<ReturnType<typeof slack.start>> | undefined;
    h = await slack.start({
      stack: { env: s3.env('slack-urls'), wrapWorkerBlobs: untilPreviewShown(() => h?.fake) },
      slack: { previewImageUrls: true },
      bot: { updatesPerMinute: 600 },
    });
    await h.command('/imagine', 'a yellow kite --steps 65 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, message.ts);

    const updates = h.fake.callsTo('chat.update');
    expect(updates.every((c) => c.ok)).toBe(true);
    const urls = updates.flatMap(imageUrlsOf);
    // Previews (how many depends on the machine's pace), each a fresh presigned GET of the bucket,
    // short-lived.
    expect(new Set(urls).size).toBeGreaterThanOrEqual(1);
    for (const url of urls) {
      expect(url.startsWith(`${s3.endpoint}/`)).toBe(true);
      expect(new URL(url).searchParams.get('X-Amz-Expires')).toBe('900');
    }
    // The fake downloaded every one of them when the message was edited: JPEG copies of the
    // worker's WebP previews (Slack shows no WebP), one object per job, gone once the job ended.
    const fetched = new Map(h.fake.imageFetches.map((f) => [f.url, f]));
    for (const url of new Set(urls)) expect(fetched.get(url)).toMatchObject({ ok: true, kind: 'jpeg' });
    const copies = [...new Set(urls)].map((u) =>
      decodeURIComponent(new URL(u).pathname.split('/').slice(3).join('/')),
    );
    expect(new Set(copies).size).toBe(new Set(urls).size);
    for (const copy of copies) expect(copy).toMatch(/:blob:slack-preview:imagine:[^:]+:\d+$/);
    await vi.waitFor(
      async () => {
        for (const copy of copies) expect(await h.stack.services.blobs.get(copy)).toBeUndefined();
      },
      { timeout: 10_000 },
    );
    // One upload in all: the final image, shown from its file; nothing deleted, nothing left behind.
    expect(h.fake.callsTo('files.completeUploadExternal')).toHaveLength(1);
    expect(h.fake.callsTo('files.delete')).toHaveLength(0);
    const [finalFile] = imageFilesOf(done);
    expect(finalFile).toBeTruthy();
    expect(h.fake.file(finalFile ?? '')?.deleted).toBeFalsy();
    expect(blocksOf({ args: { blocks: JSON.stringify(done.blocks) } }).some((b) => b.image_url)).toBe(false);
    expect(h.logger.lines.filter((l) => l.includes(FALLBACK_LOG))).toEqual([]);
    console.log(
      `image_url previews: ${new Set(urls).size} shown, ${h.fake.imageFetches.length} downloads, ${updates.length} chat.update, 1 upload`,
    );
  });

  it('falls back to uploads, logged once, when Slack cannot reach the store', async () => {
    let h: Awaited<ReturnType<typeof slack.start>> | undefined;
    h = await slack.start({
      // Held until a preview is shown as a file: the refused image_url edit alone would let a fast
      // tiny job end before the bot uploaded one (a fresh-clone CI run saw none).
      stack: {
        env: s3.env('slack-unreachable'),
        wrapWorkerBlobs: untilPreviewShown(() => h?.fake, filePreviewEdits),
      },
      slack: { previewImageUrls: true },
      bot: { updatesPerMinute: 600 },
      fake: { unreachableImageHosts: [new URL(s3.endpoint).host] },
    });
    await h.command('/imagine', 'a green boat --steps 45 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, message.ts);

    // One edit with an image_url: refused, as Slack refuses what it cannot download.
    const updates = h.fake.callsTo('chat.update');
    const withUrl = updates.filter((c) => imageUrlsOf(c).length > 0);
    expect(withUrl).toHaveLength(1);
    expect(withUrl[0]).toMatchObject({ ok: false, error: 'invalid_blocks' });
    expect(updates.filter((c) => !c.ok)).toHaveLength(1);
    expect(h.fake.imageFetches).toHaveLength(1);
    expect(h.fake.imageFetches[0]).toMatchObject({ ok: false });
    // Then previews are uploaded and shown as files, and the message ends as it always did.
    const shownFiles = updates.filter((c) => c.ok).flatMap((c) => blocksOf(c).map((b) => b.slack_file?.id));
    const [finalFile] = imageFilesOf(done);
    const previewFiles = new Set(shownFiles.filter((id) => id !== undefined && id !== finalFile));
    expect(previewFiles.size).toBeGreaterThanOrEqual(1);
    expect(h.fake.callsTo('files.completeUploadExternal').length).toBe(previewFiles.size + 1);
    await h.fake.waitFor(() => [...previewFiles].every((id) => h.fake.file(id ?? '')?.deleted));
    expect(h.logger.lines.filter((l) => l.includes(FALLBACK_LOG))).toHaveLength(1);
  });

  it('with blobs in Redis, says at start that previews are uploaded, and uploads them', async () => {
    const h = await slack.start({ slack: { previewImageUrls: true }, bot: { updatesPerMinute: 600 } });
    expect(
      h.logger.lines.filter((l) => l.includes('SLACK_PREVIEW_IMAGE_URLS is on but blobs are in Redis')),
    ).toHaveLength(1);
    await h.command('/imagine', 'a blue cup --steps 25 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    await finished(h.fake, message.ts);
    expect(h.fake.callsTo('chat.update').flatMap(imageUrlsOf)).toEqual([]);
    expect(h.fake.callsTo('files.completeUploadExternal').length).toBeGreaterThanOrEqual(2);
  });
});
