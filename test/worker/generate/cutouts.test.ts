import { describe, expect, it } from 'vitest';
import { cutoutMatrices, makeCutouts, resampleMatrix } from '../../../src/worker/generate/cutouts.js';
import { mulberry32 } from '../../helpers/random.js';

/** Applies A · img · Bᵀ for one channel of an h x w image. */
function apply(
  a: Float32Array,
  b: Float32Array,
  img: Float64Array,
  size: number,
  h: number,
  w: number,
): Float64Array {
  const out = new Float64Array(size * size);
  for (let i = 0; i < size; i++)
    for (let j = 0; j < size; j++) {
      let s = 0;
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) s += a[i * h + y]! * img[y * w + x]! * b[j * w + x]!;
      out[i * size + j] = s;
    }
  return out;
}

describe('cutout matrices', () => {
  const h = 6;
  const w = 6;
  const img = Float64Array.from({ length: h * w }, (_, i) => Math.sin(i * 1.3) + i * 0.01);

  it('a full-size crop without flip at the same size reproduces the image exactly', () => {
    const m = cutoutMatrices([{ top: 0, left: 0, side: 6, flip: false }], 6, h, w);
    const out = apply(m.rows, m.cols, img, 6, h, w);
    for (let i = 0; i < img.length; i++) expect(out[i]).toBeCloseTo(img[i]!, 6);
  });

  it('a flip mirrors the columns', () => {
    const m = cutoutMatrices([{ top: 0, left: 0, side: 6, flip: true }], 6, h, w);
    const out = apply(m.rows, m.cols, img, 6, h, w);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) expect(out[y * w + x]).toBeCloseTo(img[y * w + (w - 1 - x)]!, 6);
  });

  it('a crop picks the right pixels, and a 2x downsample averages pairs', () => {
    const m = cutoutMatrices([{ top: 2, left: 1, side: 2, flip: false }], 2, h, w);
    const out = apply(m.rows, m.cols, img, 2, h, w);
    expect(out[0]).toBeCloseTo(img[2 * w + 1]!, 6);
    expect(out[3]).toBeCloseTo(img[3 * w + 2]!, 6);
    const down = resampleMatrix(3, 0, 6, 6);
    // Antialiased: each output is a weighted mean of neighbouring inputs, weights summing to 1.
    for (let i = 0; i < 3; i++) {
      const row = down.subarray(i * 6, (i + 1) * 6);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(row[2 * i]).toBeCloseTo(row[2 * i + 1]!, 6);
    }
  });

  it('resizes a constant image to a constant (upsampling and downsampling)', () => {
    const ones = new Float64Array(h * w).fill(0.7);
    for (const size of [4, 9]) {
      const m = cutoutMatrices([{ top: 1, left: 0, side: 5, flip: true }], size, h, w);
      for (const v of apply(m.rows, m.cols, ones, size, h, w)) expect(v).toBeCloseTo(0.7, 6);
    }
  });

  it('random crops are deterministic per seed, inside the image, and differ across seeds', () => {
    const opts = { count: 16, size: 8, height: 32, width: 48, cutPow: 1, minFraction: 0.25 };
    const a = makeCutouts(mulberry32(3), opts);
    const b = makeCutouts(mulberry32(3), opts);
    const c = makeCutouts(mulberry32(4), opts);
    expect(a.specs).toEqual(b.specs);
    expect(a.specs).not.toEqual(c.specs);
    for (const s of a.specs) {
      expect(s.side).toBeGreaterThanOrEqual(8);
      expect(s.side).toBeLessThanOrEqual(32);
      expect(s.top + s.side).toBeLessThanOrEqual(32);
      expect(s.left + s.side).toBeLessThanOrEqual(48);
    }
    expect(new Set(a.specs.map((s) => s.flip)).size).toBe(2);
  });
});
