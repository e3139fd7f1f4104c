// CLIP preprocessing against independent references: the normalisation formula in float64 for an
// image already of the model's size, and Hugging Face's CLIPImageProcessor (PIL) on committed
// images (test/fixtures/images/make-clip-preprocess-ref.py) for enlarging, cropping and reducing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CodedError } from '../../../src/shared/errors.js';
import {
  CLIP_MEAN,
  CLIP_STD,
  normalize,
  preprocessImage,
  preprocessImages,
  resampleBicubic,
  resizeAndCrop,
  resizeTarget,
} from '../../../src/worker/classify/preprocess.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { bombPng, noiseRgb, png, smoothRgb, textFile } from '../../shared/image/images.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures/images');
const ref = Weights.fromFile(join(FIXTURES, 'clip-preprocess-ref.safetensors'));
afterAll(() => ref.close());

/** Largest difference per channel, in grey levels of the 0-255 input (undoing the std scaling). */
function levelDiff(a: Float32Array, b: Float32Array, size: number): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const c = Math.floor(i / (size * size));
    const d = Math.abs(a[i]! - b[i]!) * CLIP_STD[c]! * 255;
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('CLIP preprocessing', () => {
  it('an image already S x S is only normalised: exact values from the formula', async () => {
    const img = noiseRgb(32, 32, 11);
    const out = await preprocessImage(await png(img), { size: 32 });
    expect(out.length).toBe(3 * 32 * 32);
    let worst = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const v = img.data[(y * 32 + x) * 3 + c]!;
          const want = (v / 255 - CLIP_MEAN[c]!) / CLIP_STD[c]!; // float64
          worst = Math.max(worst, Math.abs(out[c * 1024 + y * 32 + x]! - want));
        }
      }
    }
    // float32 rounding of values within [-1.8, 2.2]
    expect(worst).toBeLessThan(3e-7);
    // Spot values by hand: byte 0 in red is -mean/std.
    const black = normalize({ data: new Uint8Array(3), width: 1, height: 1 });
    expect(black[0]).toBeCloseTo(-0.48145466 / 0.26862954, 6);
    expect(black[2]).toBeCloseTo(-0.40821073 / 0.27577711, 6);
  });

  it("the resize rule is Hugging Face's: short side to S, long side floored", () => {
    expect(resizeTarget(640, 480, 224)).toEqual({ width: 298, height: 224 });
    expect(resizeTarget(480, 640, 224)).toEqual({ width: 224, height: 298 });
    expect(resizeTarget(61, 45, 32)).toEqual({ width: 43, height: 32 });
    expect(resizeTarget(100, 100, 224)).toEqual({ width: 224, height: 224 });
  });

  // PIL's algorithm is reproduced exactly for enlarging and cropping: the only difference left is
  // float32 rounding in (v/255 - mean)/std.
  for (const name of ['up-smooth-20x14', 'up-noise-24x40', 'crop-noise-32x48']) {
    it(`${name}: equals CLIPImageProcessor (PIL) exactly`, async () => {
      const out = await preprocessImage(readFileSync(join(FIXTURES, `${name}.png`)), { size: 32 });
      const want = ref.get(name, [3, 32, 32]);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(out[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-6);
    });
  }

  // Reduction runs in libvips (sharp's cubic kernel, antialiased), not PIL. Both round to 8 bits after
  // resampling, so on a smooth, band-limited image each is within about half a level of the exact
  // result (PIL rounds twice, once per pass): at most ~1.5 levels apart; we allow 2. Observed: 1.0.
  // On noise at the pixel scale the two filters' different tails show (observed max 12 levels, mean
  // 0.93); the mean still catches what matters, a misaligned grid or crop (a half-pixel shift gives a
  // mean of ~40 levels on this image).
  for (const [name, maxLevels, meanLevels] of [
    ['down-smooth-61x45', 2, 0.25],
    ['down-smooth-640x480', 2, 0.5],
    ['down-noise-61x45', 24, 2],
  ] as const) {
    it(`${name}: within ${maxLevels} grey levels of CLIPImageProcessor (PIL)`, async () => {
      const out = await preprocessImage(readFileSync(join(FIXTURES, `${name}.png`)), { size: 32 });
      const d = levelDiff(out, ref.get(name, [3, 32, 32]), 32);
      expect(d.max).toBeLessThanOrEqual(maxLevels);
      expect(d.mean).toBeLessThanOrEqual(meanLevels);
    });
  }

  it('computing only the crop window equals resampling everything, then cropping', () => {
    const img = noiseRgb(23, 9, 12);
    // 23x9 -> 81x32 (floor(32 * 23 / 9)), center crop from x = floor((81 - 32) / 2) = 24.
    const full = resampleBicubic(img, 81, 32);
    const win = resampleBicubic(img, 81, 32, { left: 24, top: 0, width: 32, height: 32 });
    const cropped = new Uint8Array(32 * 32 * 3);
    for (let y = 0; y < 32; y++)
      cropped.set(full.data.subarray((y * 81 + 24) * 3, (y * 81 + 56) * 3), y * 96);
    expect(Buffer.from(win.data).equals(Buffer.from(cropped))).toBe(true);
    expect(resizeAndCrop(img, 32).data).toEqual(win.data);
  });

  it('resampling to the same size is the identity; a flat image stays flat', () => {
    const img = noiseRgb(7, 5, 13);
    expect(resampleBicubic(img, 7, 5).data).toEqual(img.data);
    const flat = { data: new Uint8Array(5 * 4 * 3).fill(200), width: 5, height: 4 };
    expect(resampleBicubic(flat, 13, 11).data.every((v) => v === 200)).toBe(true);
  });

  it('a very thin strip only resamples the crop (no 224 x 224000 intermediate)', async () => {
    const strip = smoothRgb(4000, 3);
    const out = await preprocessImage(await png(strip), { size: 16 });
    expect(out.length).toBe(3 * 16 * 16);
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('a batch equals its images one by one, in order', async () => {
    const a = await png(noiseRgb(40, 30, 14));
    const b = await png(smoothRgb(20, 50));
    const batch = await preprocessImages([a, b], { size: 32 });
    expect(batch.subarray(0, 3072)).toEqual(await preprocessImage(a, { size: 32 }));
    expect(batch.subarray(3072)).toEqual(await preprocessImage(b, { size: 32 }));
  });

  it('a bad image in a batch fails the batch, naming its position', async () => {
    const good = await png(noiseRgb(8, 8, 15));
    for (const [bad, code] of [
      [textFile(), 'not_an_image'],
      [bombPng(20000, 20000), 'image_too_large'],
    ] as const) {
      const err = await preprocessImages([good, bad, good], { size: 32 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CodedError);
      expect((err as CodedError).code).toBe(code);
      expect((err as CodedError).details.index).toBe(1);
    }
  });
});
