// Pixels in and out of the generation loop, with sharp: decoding init images and image prompts
// into planar float tensors (capped in bytes and pixels before decoding), and encoding planar float
// images as PNG or WebP previews and finals. sharp reads raw float input as zeros, so we convert to
// uint8 ourselves.
import sharp from 'sharp';
import { ImageTooLargeError, NotAnImageError } from '../../shared/errors.js';

export type ImageFormat = 'png' | 'webp';

export interface EncodedImage {
  readonly bytes: Uint8Array;
  readonly format: ImageFormat;
  readonly width: number;
  readonly height: number;
}

export interface DecodeLimits {
  /** Largest input accepted, in bytes. @defaultValue 20 MiB */
  readonly maxBytes?: number;
  /** Largest input accepted, in pixels (width * height), checked by sharp before decoding. @defaultValue 40 megapixels */
  readonly maxPixels?: number;
}

export const DefaultDecodeLimits = {
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 40_000_000,
} as const satisfies Required<DecodeLimits>;

/** Planar float [3, H, W] in [0, 1] (values outside are clamped) -> interleaved 8-bit RGB. */
export function toRgb8(chw: Float32Array, width: number, height: number): Uint8Array {
  const n = width * height;
  if (chw.length !== 3 * n) throw new RangeError(`toRgb8: ${chw.length} values are not 3x${height}x${width}`);
  const out = new Uint8Array(3 * n);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      const v = chw[c * n + i]!;
      // NaN lands on 0 through the comparisons.
      out[3 * i + c] = v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0;
    }
  }
  return out;
}

/** Interleaved 8-bit RGB -> encoded bytes. */
export async function encodeRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  format: ImageFormat,
  quality = 90,
): Promise<EncodedImage> {
  const img = sharp(rgb, { raw: { width, height, channels: 3 } });
  const buf = format === 'png' ? await img.png().toBuffer() : await img.webp({ quality }).toBuffer();
  return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), format, width, height };
}

/** Planar float [3, H, W] in [0, 1] -> encoded bytes. */
export function encodeImage(
  chw: Float32Array,
  width: number,
  height: number,
  format: ImageFormat,
  quality = 90,
): Promise<EncodedImage> {
  return encodeRgb(toRgb8(chw, width, height), width, height, format, quality);
}

/** Resizes interleaved 8-bit RGB (area-averaging when shrinking). */
export async function resizeRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  toWidth: number,
  toHeight: number,
): Promise<Uint8Array> {
  if (toWidth === width && toHeight === height) return rgb;
  const buf = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .resize(toWidth, toHeight, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Decodes any image sharp reads, scales it to cover width x height and crops the centre (CLIP's
 * resize-shortest-side + centre-crop when square), and returns planar 8-bit RGB [3, H, W]. Kept in
 * 8 bits so a saved generation can carry its init image exactly. Throws NotAnImageError for
 * unreadable bytes and ImageTooLargeError beyond the limits.
 */
export async function decodeImage8(
  bytes: Uint8Array,
  width: number,
  height: number,
  limits: DecodeLimits = {},
): Promise<Uint8Array> {
  const o = { ...DefaultDecodeLimits, ...limits };
  if (bytes.byteLength > o.maxBytes)
    throw new ImageTooLargeError({ bytes: bytes.byteLength, maxBytes: o.maxBytes });
  let raw: Buffer;
  try {
    raw = await sharp(bytes, { limitInputPixels: o.maxPixels, failOn: 'error' })
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
  const out = new Uint8Array(3 * n);
  for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[c * n + i] = raw[channels * i + c]!;
  return out;
}

/** 8-bit values -> floats in [0, 1]. */
export function unitFloats(u8: Uint8Array): Float32Array {
  return Float32Array.from(u8, (v) => v / 255);
}
