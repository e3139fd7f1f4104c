// RGB pixels -> RGB pixels of another size (timelapse frames).
import sharp from 'sharp';
import type { RgbImage } from './decode.js';
import { checkRgb } from './encode.js';

/** Resamples to exactly width x height (Lanczos-3, area-averaging when shrinking); same size is a no-op. */
export async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  checkRgb(img);
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`bad resize target ${width}x${height}`);
  }
  if (width === img.width && height === img.height) return img;
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), width, height };
}
