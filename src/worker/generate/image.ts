// Pixels in and out of the generation loop: init images and image prompts become planar tensors,
// planar float images become PNG or WebP previews and finals. The codecs live in src/shared/image
// (sharp); this module only converts layouts. sharp reads raw float input as zeros, so floats go
// to 8 bits here first.
import { type CoverLimits, decodeCover } from '../../shared/image/cover.js';
import { encodePng, encodeWebp } from '../../shared/image/encode.js';

export type ImageFormat = 'png' | 'webp';

export interface EncodedImage {
  readonly bytes: Uint8Array;
  readonly format: ImageFormat;
  readonly width: number;
  readonly height: number;
}

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

/** Planar float [3, H, W] in [0, 1] -> encoded bytes. */
export async function encodeImage(
  chw: Float32Array,
  width: number,
  height: number,
  format: ImageFormat,
  quality = 90,
): Promise<EncodedImage> {
  const img = { data: toRgb8(chw, width, height), width, height };
  const bytes = format === 'png' ? await encodePng(img) : await encodeWebp(img, { quality });
  return { bytes, format, width, height };
}

/**
 * Decodes an image scaled to cover width x height and centre-cropped (see decodeCover) into planar
 * 8-bit RGB [3, H, W]. Kept in 8 bits so a saved generation can carry its init image exactly.
 * Throws NotAnImageError for unreadable bytes and ImageTooLargeError beyond the limits.
 */
export async function decodeImage8(
  bytes: Uint8Array,
  width: number,
  height: number,
  limits: CoverLimits = {},
): Promise<Uint8Array> {
  const { data } = await decodeCover(bytes, width, height, limits);
  const n = width * height;
  const out = new Uint8Array(3 * n);
  for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[c * n + i] = data[3 * i + c]!;
  return out;
}

/** 8-bit values -> floats in [0, 1]. */
export function unitFloats(u8: Uint8Array): Float32Array {
  return Float32Array.from(u8, (v) => v / 255);
}
