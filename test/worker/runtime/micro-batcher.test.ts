import { describe, expect, it } from 'vitest';
import { BatchedImageEncoder, type ImageTower } from '../../../src/worker/runtime/image-encoder.js';
import { MicroBatcher, MicroBatcherClosedError } from '../../../src/worker/runtime/micro-batcher.js';
import { noisePng, pixelBombPng } from '../../helpers/worker-process.js';

/** A batcher whose run records each batch and answers item * 10 (or an Error for negative items). */
function recording(options: {
  maxBatch?: number;
  maxWaitMs?: number;
  concurrency?: number;
  gate?: Promise<void>;
}) {
  const batches: number[][] = [];
  const batcher = new MicroBatcher<number, number>({
    ...options,
    run: async (items) => {
      batches.push([...items]);
      await options.gate;
      return items.map((i) => (i < 0 ? new Error(`bad ${i}`) : i * 10));
    },
  });
  return { batches, batcher };
}

describe('MicroBatcher', () => {
  it('runs items added together as one batch and answers each in order', async () => {
    const { batches, batcher } = recording({ maxWaitMs: 5 });
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => batcher.add(i)));
    expect(results).toEqual([10, 20, 30, 40, 50]);
    expect(batches).toEqual([[1, 2, 3, 4, 5]]);
    expect(batcher.stats).toEqual({ batches: 1, items: 5, largest: 5 });
  });

  it('splits at maxBatch, running a full batch without waiting', async () => {
    // A wait far longer than the test: only the maxBatch rule can start the first two batches.
    const { batches, batcher } = recording({ maxBatch: 2, maxWaitMs: 60_000 });
    const all = [1, 2, 3, 4].map((i) => batcher.add(i));
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40]);
    expect(batches).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it('maxBatch 1 is no batching at all', async () => {
    const { batches, batcher } = recording({ maxBatch: 1 });
    await Promise.all([1, 2, 3].map((i) => batcher.add(i)));
    expect(batches).toEqual([[1], [2], [3]]);
  });

  it('collects items that arrive while a batch runs into the next batch', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const { batches, batcher } = recording({ maxWaitMs: 1, gate });
    const first = batcher.add(1);
    await new Promise((r) => setTimeout(r, 20)); // the first batch is running (held by the gate)
    expect(batches).toEqual([[1]]);
    const later = [2, 3, 4].map((i) => batcher.add(i));
    await new Promise((r) => setTimeout(r, 20)); // their wait is over, but the only slot is busy
    expect(batcher.pending).toBe(3);
    open();
    expect(await Promise.all([first, ...later])).toEqual([10, 20, 30, 40]);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('fails one item alone when run answers an Error for it, and all of them when run throws', async () => {
    const { batcher } = recording({});
    const settled = await Promise.allSettled([1, -2, 3].map((i) => batcher.add(i)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason.message).toBe('bad -2');

    const broken = new MicroBatcher<number, number>({
      run: async () => {
        throw new Error('session crashed');
      },
    });
    const all = await Promise.allSettled([1, 2].map((i) => broken.add(i)));
    expect(all.map((s) => (s.status === 'rejected' ? s.reason.message : 'ok'))).toEqual([
      'session crashed',
      'session crashed',
    ]);
    const wrongCount = new MicroBatcher<number, number>({ run: async () => [1] });
    await expect(Promise.all([wrongCount.add(1), wrongCount.add(2)])).rejects.toThrow(/2 items/);
  });

  it('drops an item whose signal aborts while it waits', async () => {
    const { batches, batcher } = recording({ maxWaitMs: 10 });
    const controller = new AbortController();
    const cancelled = batcher.add(1, controller.signal);
    const kept = batcher.add(2);
    controller.abort(new Error('cancelled by user'));
    await expect(cancelled).rejects.toThrow('cancelled by user');
    expect(await kept).toBe(20);
    expect(batches).toEqual([[2]]);
    const aborted = AbortSignal.abort(new Error('already'));
    await expect(batcher.add(3, aborted)).rejects.toThrow('already');
  });

  it('close runs what is queued, then refuses new items', async () => {
    const { batches, batcher } = recording({ maxWaitMs: 60_000 });
    const queued = batcher.add(1);
    await batcher.close();
    expect(await queued).toBe(10);
    expect(batches).toEqual([[1]]);
    await expect(batcher.add(2)).rejects.toBeInstanceOf(MicroBatcherClosedError);
  });

  it('refuses bad options', () => {
    const run = async () => [];
    expect(() => new MicroBatcher({ run, maxBatch: 0 })).toThrow(RangeError);
    expect(() => new MicroBatcher({ run, maxWaitMs: -1 })).toThrow(RangeError);
    expect(() => new MicroBatcher({ run, concurrency: 1.5 })).toThrow(RangeError);
  });
});

describe('BatchedImageEncoder', () => {
  /** A tower whose embedding of an image is its mean pixel value per channel and a constant. */
  function fakeTower(): ImageTower & { runs: number[] } {
    const runs: number[] = [];
    const size = 8;
    const tower = {
      imageSize: size,
      dim: 4,
      runs,
      stats: { imageRuns: 0 },
      async encodeImages(pixels: Float32Array, count: number) {
        runs.push(count);
        tower.stats.imageRuns++;
        const plane = size * size;
        const out = new Float32Array(count * 4);
        for (let n = 0; n < count; n++) {
          for (let c = 0; c < 3; c++) {
            let s = 0;
            for (let i = 0; i < plane; i++) s += pixels[(n * 3 + c) * plane + i]!;
            out[n * 4 + c] = s / plane;
          }
          out[n * 4 + 3] = 3;
        }
        return out;
      },
    };
    return tower;
  }

  it('embeds images arriving together in one run, unit length, bad ones failing alone', async () => {
    const tower = fakeTower();
    const encoder = new BatchedImageEncoder(tower, { maxWaitMs: 10 });
    const images = await Promise.all([1, 2, 3].map((s) => noisePng(16, 12, s)));
    const settled = await Promise.allSettled([
      ...images.map((b) => encoder.embed(b)),
      encoder.embed(pixelBombPng()),
      encoder.embed(new Uint8Array([1, 2, 3])),
    ]);
    expect(tower.runs).toEqual([3]);
    expect(encoder.stats).toMatchObject({ batches: 1, images: 5, sessionRuns: 1 });
    const codes = settled.slice(3).map((s) => (s.status === 'rejected' ? s.reason.code : 'ok'));
    expect(codes).toEqual(['image_too_large', 'not_an_image']);
    const embeds = settled.slice(0, 3).map((s) => (s as PromiseFulfilledResult<Float32Array>).value);
    for (const e of embeds) {
      expect(e).toHaveLength(4);
      expect(Math.hypot(...e)).toBeCloseTo(1, 6);
    }
    // Each image got its own row: different noise, different channel means.
    expect(embeds[0]![0]).not.toBeCloseTo(embeds[1]![0]!, 4);
    // Same image alone: the same embedding as in the batch.
    const alone = await encoder.embed(images[1]!);
    expect(Array.from(alone)).toEqual(Array.from(embeds[1]!));
    await encoder.close();
  });
});
