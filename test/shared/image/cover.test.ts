// decodeCover: scale to cover and centre-crop, channel handling (grey, alpha), limits and errors.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { CodedError } from '../../../src/shared/errors.js';
import { decodeCover } from '../../../src/shared/image/cover.js';

const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => (e instanceof CodedError ? e.code : String(e)),
  );

describe('decodeCover', () => {
  it('covers the size and keeps the centre of a wide image', async () => {
    // 30x10: thirds red, green, blue; a 5x5 cover keeps the middle 10x10, which is green.
    const rgb = new Uint8Array(30 * 10 * 3);
    for (let y = 0; y < 10; y++)
      for (let x = 0; x < 30; x++) rgb[(y * 30 + x) * 3 + Math.floor(x / 10)] = 255;
    const png = await sharp(rgb, { raw: { width: 30, height: 10, channels: 3 } })
      .png()
      .toBuffer();
    const img = await decodeCover(png, 5, 5);
    expect([img.width, img.height, img.data.length]).toEqual([5, 5, 75]);
    expect(Array.from(img.data.subarray(3 * 12, 3 * 13))).toEqual([0, 255, 0]);
  });

  it('returns packed RGB for grey and RGBA input', async () => {
    const grey = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } })
      .greyscale()
      .png()
      .toBuffer();
    expect(Array.from((await decodeCover(grey, 2, 2)).data)).toEqual(new Array(12).fill(128));
    const rgba = await sharp({
      create: { width: 4, height: 4, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 1 } },
    })
      .png()
      .toBuffer();
    expect(Array.from((await decodeCover(rgba, 2, 1)).data)).toEqual([10, 20, 30, 10, 20, 30]);
  });

  it('refuses bytes that are no image and images over the byte or pixel caps', async () => {
    expect(await codeOf(decodeCover(new TextEncoder().encode('hello'), 8, 8))).toBe('not_an_image');
    const png = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    expect(await codeOf(decodeCover(png, 8, 8, { maxBytes: 10 }))).toBe('image_too_large');
    expect(await codeOf(decodeCover(png, 8, 8, { maxPixels: 5000 }))).toBe('image_too_large');
  });
});
