// Untrusted image bytes -> RGB pixels, for everything that reads uploads (classify, indexing, init
// images). Limits are enforced before any pixel is decoded: bytes first, then the dimensions the
// header declares (a 20000x20000 PNG of a few hundred bytes never reaches the decoder).
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { ImageTooLargeError, NotAnImageError } from '../errors.js';

export interface ImageLimits {
  /** Largest encoded input accepted, checked before sharp sees the bytes. @defaultValue 32 MiB */
  readonly maxBytes?: number;
  /**
   * Largest width x height (of the first frame) accepted; also passed to sharp as `limitInputPixels`.
   * @defaultValue 8192 * 8192 (covers 50-megapixel phone photos; ~200 MB of RGB at most)
   */
  readonly maxPixels?: number;
}

export const DefaultImageLimits = {
  maxBytes: 32 * 1024 * 1024,
  maxPixels: 8192 * 8192,
} as const satisfies Required<ImageLimits>;

/**
 * Raster formats we decode. SVG and PDF are refused although sharp renders them: a vector file
 * declares any size it likes, and rendering documents from strangers is not this bot's job.
 */
export const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'avif', 'heif', 'tiff'] as const;
export type ImageFormat = (typeof ACCEPTED_FORMATS)[number];

export interface ImageInfo {
  readonly format: ImageFormat;
  /** Width as displayed, after the EXIF orientation is applied. */
  readonly width: number;
  /** Height as displayed, after the EXIF orientation is applied (first frame only for animations). */
  readonly height: number;
  readonly bytes: number;
}

/** 8-bit RGB, rows top to bottom, pixels packed RGBRGB... (HWC). */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export interface DecodePlan {
  /** Resample the whole (oriented) image to exactly this size with sharp's cubic (Catmull-Rom) kernel. */
  readonly resize?: { readonly width: number; readonly height: number };
  /** Then keep only this region (of the resized image when `resize` is set). */
  readonly extract?: {
    readonly left: number;
    readonly top: number;
    readonly width: number;
    readonly height: number;
  };
}

export interface DecodeOptions extends ImageLimits {
  /**
   * Picks resampling and cropping from the probed size, so callers decide with the real dimensions
   * and sharp does the work in one pass (JPEG shrink-on-load; only the extracted region is computed).
   * @defaultValue no resize, no crop
   */
  readonly plan?: (info: ImageInfo) => DecodePlan | undefined;
  /**
   * Colour that transparent pixels are composited onto. White, as most viewers show a transparent
   * PNG; Hugging Face's convert('RGB') drops alpha instead, which shows whatever colour the
   * transparent pixels happen to store (often black).
   * @defaultValue '#ffffff'
   */
  readonly background?: string;
}

export interface DecodedImage extends RgbImage {
  /** The probed source image, before any resize or crop. */
  readonly source: ImageInfo;
}

function limitsOf(options: ImageLimits): Required<ImageLimits> {
  const o = {
    maxBytes: options.maxBytes ?? DefaultImageLimits.maxBytes,
    maxPixels: options.maxPixels ?? DefaultImageLimits.maxPixels,
  };
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  return o;
}

function checkBytes(bytes: Uint8Array, maxBytes: number): void {
  if (bytes.length === 0) throw new NotAnImageError('the file is empty', { reason: 'empty' });
  if (bytes.length > maxBytes) throw new ImageTooLargeError({ bytes: bytes.length, maxBytes });
}

/** sharp's messages are libvips's; keep them as details for logs, never as the user's sentence. */
function sharpMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isAccepted(format: string): format is ImageFormat {
  return (ACCEPTED_FORMATS as readonly string[]).includes(format);
}

/**
 * Reads only the header: format and declared size. Throws `not_an_image` for bytes no decoder
 * recognises (or a format we refuse) and `image_too_large` for too many bytes or pixels.
 */
export async function probeImage(bytes: Uint8Array, limits: ImageLimits = {}): Promise<ImageInfo> {
  const o = limitsOf(limits);
  checkBytes(bytes, o.maxBytes);
  let meta: Metadata;
  try {
    // No pixel limit here: we want the declared size, to report it, and check it ourselves below.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new NotAnImageError('the file is not an image we can read', { reason: sharpMessage(err) });
  }
  if (!isAccepted(meta.format)) {
    throw new NotAnImageError(`${meta.format} files are not accepted; send a JPEG, PNG, WebP or GIF`, {
      format: meta.format,
    });
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0 && height > 0)) {
    throw new NotAnImageError('the image has no pixels', { format: meta.format, width, height });
  }
  if (width * height > o.maxPixels) {
    throw new ImageTooLargeError({ pixels: width * height, maxPixels: o.maxPixels });
  }
  return { format: meta.format, width, height, bytes: bytes.length };
}

/**
 * Decodes the first frame to 8-bit sRGB, EXIF orientation applied, transparency flattened, then
 * resizes and crops as `plan` says. Damaged or truncated files fail with `not_an_image`
 * (sharp's `failOn: 'warning'` turns libpng/libjpeg warnings about missing data into errors).
 */
export async function decodeImage(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodedImage> {
  const o = limitsOf(options);
  const source = await probeImage(bytes, o);
  const plan = options.plan?.(source);
  checkPlan(plan, source);
  let img = sharp(bytes, {
    limitInputPixels: o.maxPixels,
    failOn: 'warning',
    autoOrient: true,
    pages: 1,
  });
  img = img.flatten({ background: options.background ?? '#ffffff' }).toColourspace('srgb');
  if (plan?.resize) {
    img = img.resize(plan.resize.width, plan.resize.height, {
      fit: 'fill',
      kernel: 'cubic',
      // Shrink-on-load at its most aggressive trades accuracy (moiré) for speed; the remaining
      // shrink-on-load still skips most of a large JPEG's pixels.
      fastShrinkOnLoad: false,
    });
  }
  if (plan?.extract) img = img.extract(plan.extract);
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await img.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    const message = sharpMessage(err);
    if (/pixel limit/i.test(message)) {
      throw new ImageTooLargeError({ pixels: source.width * source.height, maxPixels: o.maxPixels });
    }
    throw new NotAnImageError('the image is damaged or incomplete', {
      format: source.format,
      reason: message,
    });
  }
  const { data, info } = out;
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new NotAnImageError('the image decoded to an unexpected pixel layout', {
      format: source.format,
      channels: info.channels,
    });
  }
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
    source,
  };
}

function checkPlan(plan: DecodePlan | undefined, source: ImageInfo): void {
  if (!plan) return;
  const positive = (v: number) => Number.isSafeInteger(v) && v > 0;
  const w = plan.resize?.width ?? source.width;
  const h = plan.resize?.height ?? source.height;
  if (!positive(w) || !positive(h)) throw new RangeError(`bad resize target ${w}x${h}`);
  const e = plan.extract;
  if (
    e &&
    (!positive(e.width) ||
      !positive(e.height) ||
      !Number.isSafeInteger(e.left) ||
      !Number.isSafeInteger(e.top) ||
      e.left < 0 ||
      e.top < 0 ||
      e.left + e.width > w ||
      e.top + e.height > h)
  ) {
    throw new RangeError(`extract ${JSON.stringify(e)} does not fit in ${w}x${h}`);
  }
}
