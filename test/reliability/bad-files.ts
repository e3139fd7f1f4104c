// The bad files of the reliability tests, made on the fly: truncated and corrupt PNG, JPEG, WebP and
// GIF, files that are no image at all, a PNG header claiming 20000x20000, and an animated GIF of
// 1,000 frames (spliced from a two-frame GIF that sharp writes, since encoding 1,000 frames with
// sharp takes ~20 s of a core).
import { crc32, deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { mulberry32 } from '../helpers/random.js';

export type Format = 'png' | 'jpeg' | 'webp' | 'gif';
export const formats: readonly Format[] = ['png', 'jpeg', 'webp', 'gif'];

export const contentTypes: Record<Format, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
};

/** Seeded RGB noise: compresses badly, so a cut or a flipped byte lands in image data. */
function noise(width: number, height: number, seed: number): Sharp {
  const rand = mulberry32(seed);
  const data = Buffer.from(Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256)));
  return sharp(data, { raw: { width, height, channels: 3 } });
}

/** A good image of each format (96x72 noise); WebP lossless. */
export async function goodImage(format: Format, seed = 7): Promise<Buffer> {
  const img = noise(96, 72, seed);
  switch (format) {
    case 'png':
      return img.png().toBuffer();
    case 'jpeg':
      return img.jpeg({ quality: 90 }).toBuffer();
    case 'webp':
      return img.webp({ lossless: true }).toBuffer();
    case 'gif':
      return img.gif().toBuffer();
  }
}

/** The first half of a file, as an interrupted upload leaves it. */
export function truncated(bytes: Buffer): Buffer {
  return bytes.subarray(0, Math.floor(bytes.length / 2));
}

/**
 * Every 7th byte of the middle 40% flipped: the header still reads, the image data does not (PNG's
 * CRCs, JPEG's markers and GIF's LZW codes notice; WebP's entropy-coded data has no checksum).
 */
export function corrupt(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  for (let i = Math.floor(out.length * 0.3); i < Math.floor(out.length * 0.7); i += 7)
    out[i] = (out[i] ?? 0) ^ 0x5a;
  return out;
}

/** Bytes 20 to 40 flipped: for WebP, the VP8/VP8L chunk header that says how to read the rest. */
export function corruptHeader(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 20; i < 40; i++) out[i] = (out[i] ?? 0) ^ 0x5a;
  return out;
}

/** Lossy WebP with flipped data: VP8 has no checksum, so this one decodes, to garbled pixels. */
export async function corruptLossyWebp(): Promise<Buffer> {
  return corrupt(await noise(96, 72, 7).webp({ quality: 80 }).toBuffer());
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
  return out;
}

/** A valid-looking PNG whose header claims width x height (a few hundred bytes: a decompression bomb's header). */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(4096))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Files that are not images, as people attach them (the names say what they claim to be). */
export const notImages: Readonly<Record<string, Buffer>> = {
  'notes.txt': Buffer.from('shopping list: milk, eggs, a picture of a cat\n'),
  'page.html': Buffer.from('<!doctype html><html><body><img src="cat.png"></body></html>'),
  'drawing.svg': Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"/>'),
  'paper.pdf': Buffer.from(
    '%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n',
  ),
  'clip.mp4': Buffer.concat([
    Buffer.from([0, 0, 0, 0x18]),
    Buffer.from('ftypmp42\0\0\0\0mp42isom', 'latin1'),
    Buffer.alloc(64),
  ]),
  'archive.zip': Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(60)]),
};

/** The byte ranges of a GIF's blocks after its header and global colour table. */
function gifBlocks(gif: Buffer): { start: number; end: number; image: boolean }[] {
  const packed = gif[10] ?? 0;
  let at = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 7) + 1) : 0);
  const blocks: { start: number; end: number; image: boolean }[] = [];
  const skipSubBlocks = () => {
    while ((gif[at] ?? 0) !== 0) at += (gif[at] ?? 0) + 1;
    at++;
  };
  while (at < gif.length && gif[at] !== 0x3b) {
    const start = at;
    if (gif[at] === 0x21) {
      at += 2;
      skipSubBlocks();
      blocks.push({ start, end: at, image: false });
    } else if (gif[at] === 0x2c) {
      const flags = gif[at + 9] ?? 0;
      at += 10 + (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0);
      at++; // LZW minimum code size
      skipSubBlocks();
      blocks.push({ start, end: at, image: true });
    } else {
      throw new Error(`unexpected GIF block 0x${(gif[at] ?? 0).toString(16)} at ${at}`);
    }
  }
  return blocks;
}

/** An animated GIF of `frames` frames of 64x64: the second frame of a sharp GIF, repeated. */
export async function manyFrameGif(frames: number): Promise<Buffer> {
  const w = 64;
  const h = 64;
  const raw = Buffer.alloc(w * h * 2 * 4);
  for (let i = 0; i < w * h * 2; i++)
    raw.set([(i * 7) & 255, (i >> 6) * 4, i < w * h ? 40 : 200, 255], i * 4);
  const two = await sharp(raw, { raw: { width: w, height: h * 2, channels: 4, pageHeight: h } })
    .gif({ delay: [40, 40], loop: 0 })
    .toBuffer();
  const blocks = gifBlocks(two);
  const images = blocks.map((b, i) => (b.image ? i : -1)).filter((i) => i >= 0);
  const secondImage = images[1];
  if (images.length !== 2 || secondImage === undefined) throw new Error('expected a two-frame GIF');
  // A frame is its image block with the graphic control extension right before it.
  const firstFrameStart = blocks[(images[0] ?? 0) - 1]?.image === false ? (images[0] ?? 0) - 1 : images[0];
  const secondStart = blocks[secondImage - 1]?.image === false ? secondImage - 1 : secondImage;
  const head = two.subarray(0, blocks[firstFrameStart ?? 0]?.start ?? 0);
  const first = two.subarray(blocks[firstFrameStart ?? 0]?.start, blocks[secondStart]?.start);
  const second = two.subarray(blocks[secondStart]?.start, blocks[secondImage]?.end);
  return Buffer.concat([
    head,
    first,
    ...Array.from({ length: frames - 1 }, () => second),
    Buffer.from([0x3b]),
  ]);
}
