// Bad image files on their whole way: the bot's download (ingest: magic bytes, completeness, header
// probe) and then the worker's two decoders (decodeImage for /whatis, search and indexing;
// decodeCover for init images and image prompts). Each file is refused with the same plain sentence
// at the first place that can tell, and a file one reader refuses is never used by another.
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DownloadOptions, downloadImage } from '../../src/bots/core/ingest.js';
import { renderError } from '../../src/bots/core/render.js';
import { CodedError } from '../../src/shared/errors.js';
import { decodeCover } from '../../src/shared/image/cover.js';
import { decodeImage } from '../../src/shared/image/decode.js';
import {
  contentTypes,
  corrupt,
  corruptHeader,
  corruptLossyWebp,
  type Format,
  goodImage,
  manyFrameGif,
  notImages,
  pngBomb,
  truncated,
} from './bad-files.js';

const NOT_AN_IMAGE = 'That file is not an image I can read. Try a PNG, JPEG, WebP or GIF.';

const files = new Map<string, { bytes: Buffer; type: string }>();
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/chunked-100mb') return streamPng(res, 100 * 1024 * 1024);
    const file = files.get(req.url ?? '');
    if (!file) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.bytes.length }).end(file.bytes);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

/** Bytes the server managed to send of the last stream, and whether it got to the end. */
const streamed = { bytes: 0, finished: false, closed: Promise.resolve() };

/** `total` bytes that start like a PNG, in 64 KiB chunks without a Content-Length (each after the last is flushed). */
function streamPng(res: ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'image/png' });
  const chunk = Buffer.alloc(64 * 1024);
  chunk.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  streamed.bytes = 0;
  streamed.finished = false;
  streamed.closed = once(res, 'close').then(() => {});
  const next = (): void => {
    if (res.destroyed) return;
    if (streamed.bytes >= total) {
      res.end(() => {
        streamed.finished = true;
      });
      return;
    }
    res.write(chunk, (err) => {
      if (err) return;
      streamed.bytes += chunk.length;
      next();
    });
  };
  next();
}

/** Discord's rules with this server as the CDN, and ChatCore's caps (25 MiB, 40 MP). */
function options(): DownloadOptions {
  return {
    allowedHosts: [],
    allowedOrigins: [base],
    platform: 'discord',
    maxBytes: 25 * 1024 * 1024,
    maxPixels: 40_000_000,
    timeoutMs: 10_000,
  };
}

async function refusal(p: Promise<unknown>): Promise<CodedError | undefined> {
  try {
    await p;
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    return error as CodedError;
  }
}

/**
 * Serves `bytes`, downloads them as the bot does, and when the download takes them, decodes them as
 * the worker does. Returns where the file was stopped and the errors there.
 */
async function journey(name: string, bytes: Buffer, type: string) {
  files.set(`/${name}`, { bytes, type });
  const atDownload = await refusal(downloadImage(`${base}/${name}`, options()));
  if (atDownload) return { stage: 'download' as const, errors: [atDownload] };
  const [whatis, init] = await Promise.all([
    refusal(decodeImage(bytes, { maxPixels: 40_000_000 })),
    refusal(decodeCover(bytes, 64, 64)),
  ]);
  const errors = [whatis, init].filter((e) => e !== undefined);
  return { stage: errors.length === 2 ? ('worker' as const) : ('nowhere' as const), errors };
}

describe('truncated and corrupt images', () => {
  // Where each is caught: the download checks what it can without decoding (a PNG's IEND, a WebP's
  // RIFF length, a header sharp cannot read); the rest only a decoder finds.
  const cases: [string, Format, (b: Buffer) => Buffer, 'download' | 'worker'][] = [
    ['a truncated png', 'png', truncated, 'download'],
    ['a truncated jpeg', 'jpeg', truncated, 'worker'],
    ['a truncated webp', 'webp', truncated, 'download'],
    ['a truncated gif', 'gif', truncated, 'download'],
    ['a corrupt png (CRCs broken)', 'png', corrupt, 'worker'],
    ['a corrupt jpeg (scan data broken)', 'jpeg', corrupt, 'worker'],
    ['a corrupt webp (its VP8L header broken)', 'webp', corruptHeader, 'download'],
    ['a corrupt gif (LZW codes broken)', 'gif', corrupt, 'download'],
  ];

  it.each(cases)(
    '%s is refused in plain words, by the download or by every worker decoder',
    async (name, format, damage, stage) => {
      const good = await goodImage(format);
      // The undamaged file goes through everywhere: the damage is what is refused.
      expect(await journey(`good.${format}`, good, contentTypes[format])).toEqual({
        stage: 'nowhere',
        errors: [],
      });
      const got = await journey(`${name.replaceAll(' ', '-')}.${format}`, damage(good), contentTypes[format]);
      expect(got.stage).toBe(stage);
      for (const error of got.errors) {
        expect(error.code).toBe('not_an_image');
        expect(renderError(error)).toBe(NOT_AN_IMAGE);
      }
    },
  );

  it('a webp with broken image data decodes to garbled pixels (no checksum to tell), and nothing fails', async () => {
    for (const [name, bytes] of [
      ['lossy.webp', await corruptLossyWebp()],
      ['lossless.webp', corrupt(await goodImage('webp'))],
    ] as const) {
      const got = await journey(name, bytes, 'image/webp');
      expect(got, name).toEqual({ stage: 'nowhere', errors: [] });
      expect((await decodeImage(bytes)).width, name).toBe(96);
    }
  });
});

describe('files that are not images', () => {
  it.each(Object.keys(notImages))('%s is refused before any decoder sees it', async (name) => {
    const bytes = notImages[name] as Buffer;
    // Labelled as an image, as a client that guesses by extension or lies would send it.
    const got = await journey(name, bytes, 'image/png');
    expect(got.stage).toBe('download');
    const [error] = got.errors;
    expect(error?.code).toBe('not_an_image');
    expect(renderError(error as CodedError)).toBe(NOT_AN_IMAGE);
  });
});

describe('images too large to decode', () => {
  it('a 20000x20000 PNG of a few KiB is refused from its header by the download and by both decoders', async () => {
    const bomb = pngBomb(20_000, 20_000);
    expect(bomb.length).toBeLessThan(8 * 1024);
    const sentence = 'That image has 400 MP; the limit is 40 MP. Please send a smaller one.';
    const got = await journey('bomb.png', bomb, 'image/png');
    expect(got.stage).toBe('download');
    expect(renderError(got.errors[0] as CodedError)).toBe(sentence);
    const whatis = await refusal(decodeImage(bomb, { maxPixels: 40_000_000 }));
    expect(renderError(whatis as CodedError)).toBe(sentence);
    const init = await refusal(decodeCover(bomb, 64, 64));
    expect(init?.code).toBe('image_too_large');
    expect(renderError(init as CodedError)).toBe('That image is too large. Please send a smaller one.');
  });

  it('a 100 MB body without a Content-Length is cut off just past the cap, and said in words', async () => {
    const error = await refusal(downloadImage(`${base}/chunked-100mb`, options()));
    expect(renderError(error as CodedError)).toBe(
      'That image is larger than 25 MiB. Please send a smaller one.',
    );
    await streamed.closed;
    expect(streamed.finished).toBe(false);
    // Loopback socket buffers hold a few MiB beyond what was read.
    expect(streamed.bytes).toBeLessThan(40 * 1024 * 1024);
  });

  it('an animated GIF of 1,000 frames is read by its first frame only, everywhere', async () => {
    const gif = await manyFrameGif(1000);
    files.set('/frames.gif', { bytes: gif, type: 'image/gif' });
    const downloaded = await downloadImage(`${base}/frames.gif`, options());
    expect(downloaded).toMatchObject({ format: 'gif', width: 64, height: 64 });
    const first = await decodeImage(gif);
    expect([first.width, first.height, first.data.length]).toEqual([64, 64, 64 * 64 * 3]);
    // The first frame's colour, not a blend or a later frame (frame 2 onwards has blue 200).
    expect(first.data[2]).toBeLessThan(100);
    const cover = await decodeCover(gif, 32, 32);
    expect(cover.data.length).toBe(32 * 32 * 3);
  });
});
