import { describe, expect, it } from 'vitest';
import { Rng, randomSeed, streamSeed } from '../../../src/worker/generate/rng.js';
import { erf } from '../../helpers/ref-nn.js';

const draw = (r: Rng, n: number) => Array.from({ length: n }, () => r.next());

describe('Rng', () => {
  it('is reproducible per (seed, keys) and independent across keys and seeds', () => {
    expect(draw(new Rng(1, 'cutouts', 3), 5)).toEqual(draw(new Rng(1, 'cutouts', 3), 5));
    expect(draw(new Rng(1, 'cutouts', 3), 5)).not.toEqual(draw(new Rng(1, 'cutouts', 4), 5));
    expect(draw(new Rng(1, 'cutouts', 3), 5)).not.toEqual(draw(new Rng(1, 'noise', 3), 5));
    expect(draw(new Rng(1, 'cutouts', 3), 5)).not.toEqual(draw(new Rng(2, 'cutouts', 3), 5));
    expect(streamSeed(5, 'a', 1)).not.toBe(streamSeed(5, 'a1'));
  });

  it('gives uniforms in [0, 1), integers in range, and standard normals', () => {
    const r = new Rng(42);
    const u = draw(r, 20000);
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(Math.abs(u.reduce((a, b) => a + b, 0) / u.length - 0.5)).toBeLessThan(0.01);
    const ints = Array.from({ length: 1000 }, () => r.int(7));
    expect(new Set(ints)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6]));
    const z = new Rng(7).fillNormal(new Float32Array(20001), 2);
    const mean = z.reduce((a, b) => a + b, 0) / z.length;
    const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / z.length;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(variance - 4) / 4).toBeLessThan(0.05);
    expect(z[20000]).not.toBe(0); // odd lengths are filled to the end
  });

  it('fills a slice only', () => {
    const out = new Rng(1).fillNormal(new Float32Array(10), 1, 3, 4);
    expect(Array.from(out.subarray(0, 3))).toEqual([0, 0, 0]);
    expect(Array.from(out.subarray(7))).toEqual([0, 0, 0]);
    expect(out.subarray(3, 7).every((v) => v !== 0)).toBe(true);
  });

  it('fillUint32 gives the numbers uint32() would, and leaves the generator where they would', () => {
    const one = new Rng(5, 'bits');
    const block = new Rng(5, 'bits');
    const expected = Array.from({ length: 1000 }, () => one.uint32());
    expect(Array.from(block.fillUint32(new Uint32Array(1000)))).toEqual(expected);
    expect(block.uint32()).toBe(one.uint32());
    expect(expected.some((v) => v >= 2 ** 31)).toBe(true); // the top bit survives the int32 locals
  });

  it('fillNormal draws standard normals into every tail (ziggurat)', () => {
    const n = 2_000_000;
    const z = new Rng(9, 'noise').fillNormal(new Float32Array(n));
    let mean = 0;
    for (const v of z) mean += v;
    mean /= n;
    let m2 = 0;
    let m4 = 0;
    for (const v of z) {
      m2 += (v - mean) ** 2;
      m4 += (v - mean) ** 4;
    }
    m2 /= n;
    m4 /= n;
    expect(Math.abs(mean)).toBeLessThan(0.003);
    expect(Math.abs(m2 - 1)).toBeLessThan(0.005);
    expect(Math.abs(m4 / (m2 * m2) - 3)).toBeLessThan(0.03); // kurtosis
    // P(|x| > t) against erfc(t / sqrt 2), within 5 standard errors. 3.44 is the ziggurat's base
    // layer edge R: beyond it every value comes from the tail branch.
    for (const t of [1, 2, 3, 3.44, 4]) {
      const p = 1 - erf(t * Math.SQRT1_2);
      const seen = z.reduce((c, v) => c + (Math.abs(v) > t ? 1 : 0), 0) / n;
      expect(Math.abs(seen - p), `P(|x| > ${t}): ${seen} against ${p}`).toBeLessThan(
        5 * Math.sqrt((p * (1 - p)) / n),
      );
    }
    // Kolmogorov-Smirnov on the first 200,000 values: D under the 0.1 % critical value.
    const sorted = Float64Array.from(z.subarray(0, 200_000)).sort();
    let d = 0;
    for (let i = 0; i < sorted.length; i++) {
      const cdf = 0.5 * (1 + erf(sorted[i]! * Math.SQRT1_2));
      d = Math.max(d, Math.abs(cdf - i / sorted.length), Math.abs(cdf - (i + 1) / sorted.length));
    }
    expect(d).toBeLessThan(1.95 / Math.sqrt(sorted.length));
  });

  it('fillNormal in parts gives what one fill gives, and leaves the generator in the same state', () => {
    const whole = new Rng(3, 'noise');
    const parts = new Rng(3, 'noise');
    const a = whole.fillNormal(new Float32Array(10_000));
    const b = new Float32Array(10_000);
    for (const [from, to] of [
      [0, 1],
      [1, 4097],
      [4097, 4100],
      [4100, 10_000],
    ] as const)
      parts.fillNormal(b, 1, from, to - from);
    expect(b).toEqual(a);
    expect(parts.uint32()).toBe(whole.uint32());
  });

  it('random seeds are 32-bit unsigned integers', () => {
    const s = randomSeed();
    expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
  });
});
