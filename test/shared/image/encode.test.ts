// encodeAnimatedWebp: frames, per-frame delays, looping, and refused inputs. (Still encoders are
// exercised by decode.test.ts, which round-trips through them.)
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeAnimatedWebp } from '../../../src/shared/image/encode.js';

const flat = (w: number, h: number, v: number) => ({
  data: new Uint8Array(w * h * 3).fill(v),
  width: w,
  height: h,
});

describe('encodeAnimatedWebp', () => {
  it('writes every frame with its delay and loops forever', async () => {
    const bytes = await encodeAnimatedWebp([flat(6, 4, 0), flat(6, 4, 128), flat(6, 4, 255)], {
      quality: 90,
      delaysMs: [40, 40, 300],
    });
    const meta = await sharp(bytes, { animated: true }).metadata();
    expect([meta.format, meta.pages, meta.width, meta.pageHeight, meta.loop]).toEqual(['webp', 3, 6, 4, 0]);
    expect(meta.delay).toEqual([40, 40, 300]);
    const raw = await sharp(bytes, { animated: true }).raw().toBuffer();
    const frameBytes = 6 * 4 * 4; // RGBA out
    expect(Math.abs(raw[frameBytes]! - 128)).toBeLessThan(6);
  });

  it('refuses no frames, frames of different sizes and a wrong number of delays', async () => {
    await expect(encodeAnimatedWebp([])).rejects.toThrow(RangeError);
    await expect(encodeAnimatedWebp([flat(6, 4, 0), flat(4, 6, 0)])).rejects.toThrow(/frame 1 is 4x6/);
    await expect(encodeAnimatedWebp([flat(6, 4, 0)], { delaysMs: [1, 2] })).rejects.toThrow(/2 delays/);
  });
});
