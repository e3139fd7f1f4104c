import { describe, expect, it } from 'vitest';
import { Rng, randomSeed, streamSeed } from '../../../src/worker/generate/rng.js';

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

  it('random seeds are 32-bit unsigned integers', () => {
    const s = randomSeed();
    expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
  });
});
