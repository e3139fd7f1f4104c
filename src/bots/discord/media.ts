// Images leaving for Discord: each upload must fit the interaction's attachment_size_limit, so a
// still image over it is re-encoded (JPEG, then smaller) through src/shared/image, and the reply
// says so; an animation (the timelapse) is re-encoded as a smaller animated WebP, and one that cannot
// be made small enough is refused in words.
import { decodeImage } from '../../shared/image/decode.js';
import { encodeJpeg, shrinkAnimatedWebp } from '../../shared/image/encode.js';
import { resizeRgb } from '../../shared/image/resize.js';
import { formatBytes } from '../core/render.js';

export interface FittedMedia {
  data: Uint8Array;
  contentType: string;
  /** File extension without the dot. */
  ext: string;
  /** Set when the bytes were re-encoded to fit: what the reply tells the reader. */
  note?: string;
}

export type FitOutcome = { ok: true; media: FittedMedia } | { ok: false; note: string };

const EXTENSIONS: Readonly<Record<string, string>> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
};

export function extensionOf(contentType: string): string {
  return EXTENSIONS[contentType] ?? 'bin';
}

// Quality first, then size: a smaller JPEG of the same picture is better than a sharper thumbnail.
const QUALITIES = [85, 70, 50] as const;
const MIN_SIDE = 32;

/**
 * `bytes` as they are when they fit `maxBytes`; else a still image re-encoded as JPEG at falling
 * quality, then halved in size until it fits. Animations (`animated`) are never flattened: they are
 * re-encoded as smaller animated WebP.
 */
export async function fitMedia(
  bytes: Uint8Array,
  contentType: string,
  maxBytes: number,
  options: { animated?: boolean; what?: string } = {},
): Promise<FitOutcome> {
  const what = options.what ?? 'image';
  if (bytes.byteLength <= maxBytes) {
    return { ok: true, media: { data: bytes, contentType, ext: extensionOf(contentType) } };
  }
  const tooLarge = `The ${what} is ${formatBytes(bytes.byteLength)}, more than the ${formatBytes(maxBytes)} this chat accepts, so it is not attached.`;
  if (options.animated) {
    const shrunk = await shrinkAnimatedWebp(bytes, maxBytes);
    if (!shrunk) return { ok: false, note: tooLarge };
    return {
      ok: true,
      media: {
        data: shrunk.bytes,
        contentType: 'image/webp',
        ext: 'webp',
        note: `The ${what} was re-encoded smaller (${formatBytes(bytes.byteLength)} → ${formatBytes(shrunk.bytes.byteLength)}, ${shrunk.width}×${shrunk.height}) to fit this chat's upload limit of ${formatBytes(maxBytes)}.`,
      },
    };
  }
  let image = await decodeImage(bytes);
  const sourceSide = `${image.width}×${image.height}`;
  for (;;) {
    for (const quality of QUALITIES) {
      const jpeg = await encodeJpeg(image, { quality });
      if (jpeg.byteLength <= maxBytes) {
        const resized =
          `${image.width}×${image.height}` === sourceSide ? '' : `, ${image.width}×${image.height}`;
        return {
          ok: true,
          media: {
            data: jpeg,
            contentType: 'image/jpeg',
            ext: 'jpg',
            note: `The ${what} was re-encoded as JPEG (${formatBytes(bytes.byteLength)} → ${formatBytes(jpeg.byteLength)}${resized}) to fit this chat's upload limit of ${formatBytes(maxBytes)}.`,
          },
        };
      }
    }
    if (Math.min(image.width, image.height) / 2 < MIN_SIDE) return { ok: false, note: tooLarge };
    image = {
      ...(await resizeRgb(image, Math.round(image.width / 2), Math.round(image.height / 2))),
      source: image.source,
    };
  }
}
