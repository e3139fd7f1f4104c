// Untrusted image bytes -> exactly width x height RGB, scaled to cover the size and centre-cropped:
// the init images and image prompts of a generation. Byte and pixel caps apply before decoding.
import sharp from 'sharp';
import { ImageTooLargeError, NotAnImageError } from '../errors.js';
import type { RgbImage } from './decode.js';

export interface CoverLimits {
  /** Largest input accepted, in bytes. @defaultValue 20 MiB */
  readonly maxBytes?: number;
  /** Largest input accepted, in pixels (width * height), checked by sharp before decoding. @defaultValue 40 megapixels */
  readonly maxPixels?: number;
}

export const DefaultCoverLimits = {
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 40_000_000,
} as const satisfies Required<CoverLimits>;

/**
 * Decodes any image sharp reads (EXIF orientation applied, alpha dropped, sRGB), scales it to cover
 * width x height and crops the centre (CLIP's resize-shortest-side + centre-crop when square).
 * Throws NotAnImageError for unreadable, truncated or damaged bytes and ImageTooLargeError beyond the limits.
 */
export async function decodeCover(
  bytes: Uint8Array,
  width: number,
  height: number,
  limits: CoverLimits = {},
): Promise<RgbImage> {
  const o = { ...DefaultCoverLimits, ...limits };
  if (bytes.byteLength > o.maxBytes)
    throw new ImageTooLargeError({ bytes: bytes.byteLength, maxBytes: o.maxBytes });
  let raw: Buffer;
  try {
    // failOn 'warning', as decodeImage: libjpeg and libwebp report damaged data as warnings, and an
    // init image that /whatis refuses as damaged must not be painted from either.
    raw = await sharp(bytes, { limitInputPixels: o.maxPixels, failOn: 'warning' })
      .rotate() // honour EXIF orientation
      .removeAlpha()
      .toColourspace('srgb')
      .resize(width, height, { fit: 'cover', position: 'centre', kernel: 'cubic' })
      .raw()
      .toBuffer();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) throw new ImageTooLargeError({ maxPixels: o.maxPixels });
    throw new NotAnImageError(`the image could not be read (${message})`);
  }
  const n = width * height;
  const channels = raw.length / n;
  if (!Number.isInteger(channels) || channels < 3) {
    throw new NotAnImageError(`the image decoded to ${raw.length} bytes, not ${width}x${height} RGB`);
  }
  if (channels === 3) return { data: new Uint8Array(raw.buffer, raw.byteOffset, raw.length), width, height };
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) data[3 * i + c] = raw[channels * i + c]!;
  return { data, width, height };
}
