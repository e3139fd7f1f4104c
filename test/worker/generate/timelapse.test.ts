import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  TimelapseRecorder,
  timelapseCadence,
  timelapseFrameCount,
} from '../../../src/worker/generate/timelapse.js';

/** A flat planar [3, H, W] frame of one grey level, so frames differ and WebP keeps them all. */
const flat = (w: number, h: number, level: number) => new Float32Array(3 * w * h).fill(level);

describe('timelapse', () => {
  it('cadence fits a run into maxFrames, the final image included', () => {
    for (const [steps, max] of [
      [10, 60],
      [100, 60],
      [250, 60],
      [1000, 60],
      [7, 2],
    ] as const) {
      const every = timelapseCadence(steps, max);
      expect(timelapseFrameCount(steps, every)).toBeLessThanOrEqual(max);
    }
    expect(timelapseCadence(100, 60)).toBe(2);
    expect(timelapseFrameCount(100, 2)).toBe(51);
  });

  it('records downscaled frames and encodes them as an animated WebP', async () => {
    const rec = new TimelapseRecorder(64, 32, 4, { size: 16, frameDelayMs: 50, lastFrameDelayMs: 400 });
    expect([rec.frameWidth, rec.frameHeight, rec.every]).toEqual([16, 8, 1]);
    for (let i = 0; i < 4; i++) if (rec.wants(i)) await rec.add(flat(64, 32, i / 5));
    await rec.addFinal(flat(64, 32, 1));
    const t = (await rec.encode())!;
    expect(t.frames).toBe(5);
    const meta = await sharp(t.bytes, { animated: true }).metadata();
    expect([meta.format, meta.pages, meta.width, meta.pageHeight, meta.loop]).toEqual(['webp', 5, 16, 8, 0]);
    expect(meta.delay).toEqual([50, 50, 50, 50, 400]);
    // Frame 2 is grey level 0.4 (~102 of 255).
    const raw = await sharp(t.bytes, { animated: true }).raw().toBuffer();
    expect(Math.abs(raw[2 * 16 * 8 * 4]! - 102)).toBeLessThan(6);
  });

  it('past maxFrames keeps every other frame and doubles the cadence', async () => {
    const rec = new TimelapseRecorder(8, 8, 1000, { every: 1, maxFrames: 5 });
    for (let step = 0; step < 6; step++) if (rec.wants(step)) await rec.add(flat(8, 8, step / 10));
    // 0..3 fill the 4 places left for running frames; adding 4 halves them to 0, 2, 4 with cadence 2.
    expect(rec.every).toBe(2);
    expect(rec.wants(5)).toBe(false);
    expect(rec.frameCount).toBe(3);
    await rec.addFinal(flat(8, 8, 1));
    expect(rec.frameCount).toBe(4);
  });

  it('has nothing to encode without frames', async () => {
    expect(await new TimelapseRecorder(8, 8, 10).encode()).toBeUndefined();
  });
});
