// RGB pixels -> PNG / WebP bytes, for results, previews and test fixtures. Pixels go to sharp as
// 8-bit raw input (float input to sharp came out all zero in our measurements, see FACTS).
import sharp, { type Sharp } from 'sharp';
import type { RgbImage } from './decode.js';

function input(img: RgbImage): Sharp {
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
