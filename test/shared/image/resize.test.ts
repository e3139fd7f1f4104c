// resizeRgb: exact size out, same size untouched, flat colours stay flat, bad sizes refused.
import { describe, expect, it } from 'vitest';
import { resizeRgb } from '../../../src/shared/image/resize.js';
import { smoothRgb } from './images.js';

describe('resizeRgb', () => {
  it('resamples to the requested size; a flat image stays flat', async () => {
    const flat = { data: new Uint8Array(20 * 10 * 3).fill(77), width: 20, height: 10 };
    const out = await resizeRgb(flat, 7, 3);
    expect([out.width, out.height, out.data.length]).toEqual([7, 3, 63]);
    expect(new Set(out.data)).toEqual(new Set([77]));
  });

  it('averages when shrinking: a 2x smaller smooth image stays close to block means', async () => {
    const src = smoothRgb(32, 32);
    const out = await resizeRgb(src, 16, 16);
    // Green is the x ramp: the mean of columns 2x, 2x+1 is 255 * (2x + 0.5) / 31.
    for (const x of [2, 8, 13]) {
      expect(Math.abs(out.data[(5 * 16 + x) * 3 + 1]! - (255 * (2 * x + 0.5)) / 31)).toBeLessThan(3);
    }
  });

  it('returns the same image for the same size and refuses bad sizes', async () => {
    const img = smoothRgb(4, 3);
    expect(await resizeRgb(img, 4, 3)).toBe(img);
    await expect(resizeRgb(img, 0, 3)).rejects.toThrow(RangeError);
    await expect(resizeRgb({ ...img, width: 5 }, 2, 2)).rejects.toThrow(RangeError);
  });
});
