// RGB pixels -> PNG / WebP bytes (still or animated), for results, previews, timelapses and test
// fixtures. Pixels go to sharp as 8-bit raw input (float input to sharp came out all zero in our
// measurements, see FACTS).
import sharp, { type Sharp } from 'sharp';
import type { RgbImage } from './decode.js';

/** Throws RangeError unless `img` holds width x height packed RGB pixels. */
export function checkRgb(img: RgbImage): void {
  if (
    !Number.isSafeInteger(img.width) ||
    !Number.isSafeInteger(img.height) ||
    img.width <= 0 ||
    img.height <= 0
  ) {
    throw new RangeError(`bad image size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`${img.data.length} bytes do not hold ${img.width}x${img.height} RGB pixels`);
  }
}

function input(img: RgbImage): Sharp {
  checkRgb(img);
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
}

export interface PngOptions {
  /** zlib level 0-9; 6 is sharp's default and a good size/speed trade. @defaultValue 6 */
  readonly compressionLevel?: number;
}

export async function encodePng(img: RgbImage, options: PngOptions = {}): Promise<Uint8Array> {
  return new Uint8Array(
    await input(img)
      .png({ compressionLevel: options.compressionLevel ?? 6 })
      .toBuffer(),
  );
}

export interface WebpOptions {
  /** @defaultValue 90 */
  readonly quality?: number;
  /** @defaultValue false */
  readonly lossless?: boolean;
}

export async function encodeWebp(img: RgbImage, options: WebpOptions = {}): Promise<Uint8Array> {
  return new Uint8Array(
    await input(img)
      .webp({ quality: options.quality ?? 90, lossless: options.lossless ?? false })
      .toBuffer(),
  );
}

export interface JpegOptions {
  /** @defaultValue 90 */
  readonly quality?: number;
}

export async function encodeJpeg(img: RgbImage, options: JpegOptions = {}): Promise<Uint8Array> {
  return new Uint8Array(
    await input(img)
      .jpeg({ quality: options.quality ?? 90 })
      .toBuffer(),
  );
}

export interface AnimatedWebpOptions {
  /** @defaultValue 75 */
  readonly quality?: number;
  /** How long each frame shows, one entry per frame. @defaultValue 100 ms each */
  readonly delaysMs?: readonly number[];
}

/** Frames of one size -> an animated WebP that loops forever. */
export async function encodeAnimatedWebp(
  frames: readonly RgbImage[],
  options: AnimatedWebpOptions = {},
): Promise<Uint8Array> {
  const first = frames[0];
  if (!first) throw new RangeError('an animation needs at least one frame');
  const { width, height } = first;
  const delay = options.delaysMs ? [...options.delaysMs] : frames.map(() => 100);
  if (delay.length !== frames.length) {
    throw new RangeError(`${delay.length} delays for ${frames.length} frames`);
  }
  // One tall raw image whose pageHeight marks the frames.
  const frameBytes = width * height * 3;
  const tall = new Uint8Array(frames.length * frameBytes);
  frames.forEach((f, i) => {
    checkRgb(f);
    if (f.width !== width || f.height !== height) {
      throw new RangeError(`frame ${i} is ${f.width}x${f.height}, frame 0 is ${width}x${height}`);
    }
    tall.set(f.data, i * frameBytes);
  });
  return new Uint8Array(
    await sharp(tall, { raw: { width, height: height * frames.length, channels: 3, pageHeight: height } })
      .webp({ quality: options.quality ?? 75, loop: 0, delay })
      .toBuffer(),
  );
}

export interface ShrunkAnimation {
  bytes: Uint8Array;
  width: number;
  /** Height of one frame. */
  height: number;
  quality: number;
}

// Quality before size, as for still images; an animation's frames are all resized alike.
const ANIMATION_SCALES = [1, 0.75, 0.5, 0.35, 0.25] as const;
const ANIMATION_QUALITIES = [60, 40, 25] as const;

/**
 * An animated WebP (a timelapse) re-encoded at falling quality, then smaller, until it fits
 * `maxBytes`; undefined when even the smallest try is too large. Frames and delays are kept.
 */
export async function shrinkAnimatedWebp(
  bytes: Uint8Array,
  maxBytes: number,
): Promise<ShrunkAnimation | undefined> {
  const meta = await sharp(bytes, { animated: true }).metadata();
  const width = meta.width;
  const frameHeight = meta.pageHeight ?? meta.height;
  if (!width || !frameHeight) return undefined;
  for (const scale of ANIMATION_SCALES) {
    const w = Math.max(16, Math.round(width * scale));
    for (const quality of ANIMATION_QUALITIES) {
      const out = await sharp(bytes, { animated: true })
        .resize({ width: w })
        .webp({ quality, loop: 0, ...(meta.delay ? { delay: meta.delay } : {}) })
        .toBuffer();
      if (out.byteLength <= maxBytes) {
        return {
          bytes: new Uint8Array(out),
          width: w,
          height: Math.round((frameHeight * w) / width),
          quality,
        };
      }
    }
  }
  return undefined;
}
