// The pure parts of the Discord adapter, without I/O: the Components V2 messages built from the
// core's views (buttons, spoilers, withheld images, notes, escaping), the command set, uploads fitted
// to a size limit, and the arguments of `npm run discord:register`.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { DoneView, RunningView } from '../../../src/bots/core/view.js';
import { CommandNames, commandDefinitions } from '../../../src/bots/discord/commands.js';
import {
  codeBlockText,
  failedMessage,
  finalActions,
  finalMessage,
  progressMessage,
  promptLine,
  remixModal,
  searchMessage,
  statusLine,
  whatisMessage,
} from '../../../src/bots/discord/components.js';
import { fitMedia } from '../../../src/bots/discord/media.js';
import { parseRegisterArgs } from '../../../src/bots/discord/register.js';
import { jumpLink } from '../../../src/bots/discord/reply-target.js';
import { decodeImage } from '../../../src/shared/image/decode.js';
import { encodeAnimatedWebp, encodePng } from '../../../src/shared/image/encode.js';

const JOB = 'imagine:11111111-2222-4333-8444-555555555555' as const;
const V2 = 1 << 15;

function done(overrides: Partial<NonNullable<DoneView['imagine']>> = {}): DoneView {
  return {
    state: 'done',
    jobId: JOB,
    kind: 'imagine',
    text: 'Seed 3 · 30 steps · 64×64 · loss 0.900 → 0.800 · 1.0 s',
    result: {} as DoneView['result'],
    imagine: {
      finalBlob: 'b:final',
      latentBlob: 'b:latent',
      timelapseBlob: 'b:timelapse',
      seed: 3,
      steps: 30,
      width: 64,
      height: 64,
      preset: 'normal',
      ...overrides,
    },
  };
}

const image = { name: 'vqclip-3.png', data: new Uint8Array([1, 2, 3]), contentType: 'image/png' };

type Node = {
  type: number;
  components?: Node[];
  items?: { media: { url: string }; spoiler?: boolean }[];
} & Record<string, unknown>;

function walk(nodes: unknown): Node[] {
  const out: Node[] = [];
  for (const node of (nodes as Node[]) ?? []) {
    out.push(node);
    out.push(...walk(node.components));
  }
  return out;
}

const texts = (body: Record<string, unknown>) =>
  walk(body.components)
    .filter((n) => n.type === 10)
    .map((n) => String(n.content))
    .join('\n');
const buttons = (body: Record<string, unknown>) =>
  walk(body.components)
    .filter((n) => n.type === 2)
    .map((n) => [n.label, n.custom_id]);

describe('job messages', () => {
  it('progress: V2 flag, the escaped prompt, the step line with a relative ETA, the preview, Cancel', () => {
    const view: RunningView = {
      state: 'running',
      jobId: JOB,
      step: 10,
      steps: 40,
      loss: 0.91234,
      etaSeconds: 30,
      text: 'Step 10/40',
    };
    const message = progressMessage({
      view,
      prompt: 'a *bold* <@123> cat',
      preview: { name: 'preview.png', data: new Uint8Array([9]), contentType: 'image/png' },
      nowMs: 1_700_000_000_000,
    });
    expect(message.body.flags).toBe(V2);
    expect(texts(message.body)).toBe(
      '**a \\*bold\\* <\u200b@123\\> cat**\nStep 10/40 · loss 0.912 · done <t:1700000030:R>',
    );
    expect(message.body.attachments).toEqual([{ id: 0, filename: 'preview.png' }]);
    expect(message.files.map((f) => f.name)).toEqual(['preview.png']);
    const gallery = walk(message.body.components).find((n) => n.type === 12);
    expect(gallery?.items?.[0]?.media.url).toBe('attachment://preview.png');
    expect(buttons(message.body)).toEqual([['Cancel', `vq1:cancel:${JOB}`]]);
  });

  it('queued: the view text as it is, no gallery and no attachments left', () => {
    const message = progressMessage({
      view: { state: 'queued', jobId: JOB, position: 2, text: 'Queued: 2 jobs ahead' },
      prompt: 'x',
      nowMs: 0,
    });
    expect(texts(message.body)).toBe('**x**\nQueued: 2 jobs ahead');
    expect(message.body.attachments).toEqual([]);
    expect(walk(message.body.components).some((n) => n.type === 12)).toBe(false);
  });

  it('final: gallery first, caption, and the five follow-up buttons', () => {
    const message = finalMessage({ view: done(), prompt: 'a cat', image, presentation: 'show' });
    expect(message.body.flags).toBe(V2);
    expect(message.body).not.toHaveProperty('content');
    const nodes = walk(message.body.components);
    expect(nodes[0]?.type).toBe(17);
    expect(nodes[1]?.type).toBe(12);
    expect(texts(message.body)).toBe(`**a cat**\n${done().text}`);
    expect(buttons(message.body)).toEqual([
      ['Re-roll', `vq1:reroll:${JOB}`],
      ['Variations', `vq1:variations:${JOB}`],
      ['Continue (+50)', `vq1:continue:${JOB}`],
      ['Remix', `vq1:remix:${JOB}`],
      ['Timelapse', `vq1:timelapse:${JOB}`],
    ]);
  });

  it('final: buttons need the saved state and the timelapse they act on', () => {
    const bare = done();
    if (bare.imagine) {
      delete bare.imagine.latentBlob;
      delete bare.imagine.timelapseBlob;
    }
    expect(finalActions(bare, 'show')).toEqual([`vq1:reroll:${JOB}`]);
  });

  it('safety: a spoiler blurs the item and the file; withheld posts no image and no timelapse', () => {
    const spoiler = finalMessage({
      view: done(),
      image,
      presentation: 'spoiler',
      notes: ['The safety check flagged this image: it is hidden behind a spoiler.'],
    });
    const item = walk(spoiler.body.components).find((n) => n.type === 12)?.items?.[0];
    expect(item).toMatchObject({ spoiler: true, media: { url: 'attachment://SPOILER_vqclip-3.png' } });
    expect(spoiler.files.map((f) => f.name)).toEqual(['SPOILER_vqclip-3.png']);
    expect(texts(spoiler.body)).toContain('-# The safety check flagged this image');

    const withheld = finalMessage({ view: done(), image, presentation: 'withhold', notes: ['withheld'] });
    expect(withheld.files).toEqual([]);
    expect(withheld.body.attachments).toEqual([]);
    expect(walk(withheld.body.components).some((n) => n.type === 12)).toBe(false);
    expect(buttons(withheld.body).map(([label]) => label)).not.toContain('Timelapse');
  });

  it('failed: the sentence, Try again unless cancelled', () => {
    const failed = failedMessage({
      view: {
        state: 'failed',
        jobId: JOB,
        code: 'internal',
        text: 'Something went wrong.',
        cancelled: false,
      },
      prompt: 'p',
    });
    expect(texts(failed.body)).toBe('**p**\nSomething went wrong.');
    expect(buttons(failed.body)).toEqual([['Try again', `vq1:reroll:${JOB}`]]);
    const cancelled = failedMessage({
      view: { state: 'failed', jobId: JOB, code: 'cancelled', text: 'Cancelled.', cancelled: true },
    });
    expect(buttons(cancelled.body)).toEqual([]);
    expect(texts(cancelled.body)).toBe('Cancelled.');
  });

  it('stays within Discord limits: custom ids <= 100, at most 40 components, prompt shortened', () => {
    const long = 'word '.repeat(500);
    const message = finalMessage({ view: done(), prompt: long, image, presentation: 'show' });
    expect(walk(message.body.components).length).toBeLessThanOrEqual(40);
    for (const [, id] of buttons(message.body)) expect(String(id).length).toBeLessThanOrEqual(100);
    expect(promptLine(long)?.length).toBeLessThanOrEqual(304);
    expect(statusLine({ state: 'running', jobId: JOB, text: 'Starting…' }, 0)).toBe('Starting…');
  });
});

describe('other replies', () => {
  it('whatis: labels in a code block nothing can close, and a Share button', () => {
    const message = whatisMessage({
      labels: [
        { label: 'cat ```', prob: 0.8 },
        { label: 'dog', prob: 0.2 },
      ],
      fileName: 'my_pet.png',
      share: true,
    });
    const content = String(message.body.content);
    expect(content.startsWith('**What is this?** my\\_pet.png\n```\n')).toBe(true);
    expect(content.match(/```/g)).toHaveLength(2);
    expect(content).toContain('80.0%');
    expect(JSON.stringify(message.body.components)).toContain('vqd:share');
    expect(codeBlockText('a`b\u001b[31m')).toBe('a\u02cbb');
  });

  it('search: a gallery of fresh URLs, jump links with scores, the low-confidence line', () => {
    const message = searchMessage({
      query: 'red @everyone',
      hits: [
        {
          url: 'https://cdn.discordapp.com/a/1.png',
          link: 'https://discord.com/channels/1/2/3',
          score: 0.31,
        },
        {
          url: 'https://cdn.discordapp.com/a/2.png',
          link: 'https://discord.com/channels/1/2/4',
          score: 0.3,
          spoiler: true,
          duplicates: 2,
        },
      ],
      lowConfidence: true,
    });
    const all = texts(message.body);
    expect(all).toContain('**Search:** red @\u200beveryone');
    expect(all).toContain('2 matches, best first. Low confidence');
    expect(all).toContain('2. [jump to message](https://discord.com/channels/1/2/4) · 0.300 (+2 similar)');
    const items = walk(message.body.components).find((n) => n.type === 12)?.items ?? [];
    expect(items.map((i) => [i.media.url, i.spoiler ?? false])).toEqual([
      ['https://cdn.discordapp.com/a/1.png', false],
      ['https://cdn.discordapp.com/a/2.png', true],
    ]);
    expect(texts(searchMessage({ hits: [] }).body)).toContain('No matching images in this channel yet.');
  });

  it('remix modal: the button id, the prompt prefilled, a title Discord accepts', () => {
    const modal = remixModal(`vq1:remix:${JOB}`, 'a forest').toJSON();
    expect(modal.custom_id).toBe(`vq1:remix:${JOB}`);
    expect(modal.title.length).toBeLessThanOrEqual(45);
    expect(JSON.stringify(modal.components)).toContain('"value":"a forest"');
  });

  it('jump links: guild channels, and @me for DMs', () => {
    expect(jumpLink({ guildId: '1', channelId: '2' }, '3')).toBe('https://discord.com/channels/1/2/3');
    expect(jumpLink({ channelId: '2' }, '3')).toBe('https://discord.com/channels/@me/2/3');
  });
});

describe('the command set and its registration arguments', () => {
  it('defines every command once, within Discord limits, with user installs where they make sense', () => {
    const commands = commandDefinitions();
    expect(commands.map((c) => c.name)).toEqual(Object.values(CommandNames));
    const imagine = commands.find((c) => c.name === 'imagine') as {
      integration_types?: number[];
      contexts?: number[];
    };
    expect(imagine.integration_types).toEqual([0, 1]);
    expect(imagine.contexts).toEqual([0, 1, 2]);
    const settings = commands.find((c) => c.name === 'settings') as { default_member_permissions?: string };
    expect(settings.default_member_permissions).toBe(String(1n << 5n));
    const search = commands.find((c) => c.name === 'search') as { contexts?: number[] };
    expect(search.contexts).toEqual([0]);
  });

  it('parses --guild ID, --guild=ID and --global; refuses the rest', () => {
    expect(parseRegisterArgs([])).toEqual({ global: false });
    expect(parseRegisterArgs(['--guild', '123456789012345678'])).toEqual({
      guildId: '123456789012345678',
      global: false,
    });
    expect(parseRegisterArgs(['--guild=123456789012345678'])).toEqual({
      guildId: '123456789012345678',
      global: false,
    });
    expect(parseRegisterArgs(['--global'])).toEqual({ global: true });
    expect(() => parseRegisterArgs(['--guild', 'abc'])).toThrow(/server id/);
    expect(() => parseRegisterArgs(['--force'])).toThrow(/unknown argument/);
  });
});

describe('uploads fitted to the size limit', () => {
  it('keeps what fits, re-encodes a still image as JPEG (smaller if need be), and an animation it cannot shrink enough is refused in words', async () => {
    const png = await readFile(new URL('../../fixtures/images/down-smooth-640x480.png', import.meta.url));
    const kept = await fitMedia(png, 'image/png', png.length);
    expect(kept).toMatchObject({ ok: true, media: { ext: 'png', contentType: 'image/png' } });
    expect(kept.ok && kept.media.note).toBeUndefined();

    const fitted = await fitMedia(png, 'image/png', 8_000);
    if (!fitted.ok) throw new Error(fitted.note);
    expect(fitted.media.data.byteLength).toBeLessThanOrEqual(8_000);
    expect(fitted.media.contentType).toBe('image/jpeg');
    expect(fitted.media.note).toMatch(/^The image was re-encoded as JPEG \(42 KiB → [\d.]+ KiB/);
    const decoded = await decodeImage(fitted.media.data);
    expect(decoded.source.format).toBe('jpeg');

    const tiny = await fitMedia(
      await encodePng({ data: new Uint8Array(64 * 64 * 3).fill(7), width: 64, height: 64 }),
      'image/png',
      10,
    );
    expect(tiny).toEqual({ ok: false, note: expect.stringMatching(/more than the 10 B this chat accepts/) });
    const animation = await fitMedia(png, 'image/png', 100, { animated: true, what: 'timelapse' });
    expect(animation).toEqual({
      ok: false,
      note: expect.stringMatching(/^The timelapse is 42 KiB, more than the 100 B/),
    });
  });

  it('re-encodes a timelapse over the limit as a smaller animated WebP, keeping every frame', async () => {
    // 12 frames of noise at 256x256: hard to compress, so the first try does not fit 40 KiB.
    const frames = Array.from({ length: 12 }, (_, f) => {
      const data = new Uint8Array(256 * 256 * 3);
      let x = f * 7919 + 1;
      for (let i = 0; i < data.length; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        data[i] = x >>> 24;
      }
      return { data, width: 256, height: 256 };
    });
    const webp = await encodeAnimatedWebp(frames, { quality: 90 });
    const limit = 40 * 1024;
    expect(webp.byteLength).toBeGreaterThan(limit);
    const fitted = await fitMedia(webp, 'image/webp', limit, { animated: true, what: 'timelapse' });
    if (!fitted.ok) throw new Error(fitted.note);
    expect(fitted.media.data.byteLength).toBeLessThanOrEqual(limit);
    expect(fitted.media).toMatchObject({ contentType: 'image/webp', ext: 'webp' });
    expect(fitted.media.note).toMatch(/^The timelapse was re-encoded smaller \(.+ → .+, \d+×\d+\) to fit/);
    const meta = await sharp(fitted.media.data, { animated: true }).metadata();
    expect(meta.pages).toBe(12);
  });
});
