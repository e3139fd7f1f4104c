import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { CodedError } from '../../../src/shared/errors.js';
import { decodeImage8, encodeImage, toRgb8, unitFloats } from '../../../src/worker/generate/image.js';

async function code(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof CodedError ? e.code : String(e)),
  );
}

describe('image helpers', () => {
  it('toRgb8 interleaves planar floats, rounds, and clamps (NaN to 0)', () => {
    const chw = Float32Array.from([
      0,
      0.5,
      1.2,
      Number.NaN,
      /* G */ 1,
      0.25,
      -1,
      0.999,
      /* B */ 0.1,
      0.2,
      0.3,
      0.4,
    ]);
    expect(Array.from(toRgb8(chw, 2, 2))).toEqual([0, 255, 26, 128, 64, 51, 255, 0, 77, 0, 255, 102]);
  });

  it('encodes PNG losslessly and WebP', async () => {
    const chw = Float32Array.from({ length: 3 * 6 * 4 }, (_, i) => (i % 17) / 16);
    const png = await encodeImage(chw, 6, 4, 'png');
    const raw = await sharp(png.bytes).raw().toBuffer();
    expect(Array.from(raw)).toEqual(Array.from(toRgb8(chw, 6, 4)));
    const webp = await encodeImage(chw, 6, 4, 'webp');
    expect((await sharp(webp.bytes).metadata()).format).toBe('webp');
  });

  it('decodes to planar 8-bit RGB with a centre crop that covers the size', async () => {
    // 40x20: left half red, right half blue; a 10x10 cover crop keeps the middle 20x20 scaled down.
    const rgb = new Uint8Array(40 * 20 * 3);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) rgb[(y * 40 + x) * 3 + (x < 20 ? 0 : 2)] = 255;
    const png = await sharp(rgb, { raw: { width: 40, height: 20, channels: 3 } })
      .png()
      .toBuffer();
    const px = await decodeImage8(png, 10, 10);
    expect(px.length).toBe(300);
    expect(px[0 * 100 + 5 * 10 + 0]).toBeGreaterThan(240); // red at the left edge
    expect(px[2 * 100 + 5 * 10 + 9]).toBeGreaterThan(240); // blue at the right edge
    expect(unitFloats(px)[0 * 100 + 5 * 10]).toBeCloseTo(px[50]! / 255, 6);
  });

  it('refuses non-images and images over the limits', async () => {
    expect(await code(decodeImage8(new TextEncoder().encode('hello'), 8, 8))).toBe('not_an_image');
    const png = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#000' } })
      .png()
      .toBuffer();
    expect(await code(decodeImage8(png, 8, 8, { maxBytes: 10 }))).toBe('image_too_large');
    expect(await code(decodeImage8(png, 8, 8, { maxPixels: 5000 }))).toBe('image_too_large');
    expect(await code(decodeImage8(png, 8, 8))).toBeUndefined();
  });
});
