import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../../../src/worker/generate/loop.js';
import { StepGraphCache } from '../../../src/worker/generate/step-graph.js';
import { tinyModels } from './tiny-models.js';

// Real collections before each reading (finalisers of native-backed buffers run on later ticks),
// so that what is left is what the loop holds on to.
v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const models = tinyModels(4);
const cache = new StepGraphCache({ session: { intraOpThreads: 1 } });
afterAll(async () => {
  await cache.clear();
  await models.embedder.release();
});

describe('memory', () => {
  it('stays bounded across 200 steps (after warm-up, with previews and timelapse on)', async () => {
    const readings = new Map<number, NodeJS.MemoryUsage>();
    const request = {
      prompt: 'a red cat | blurry:-0.3',
      seed: 1,
      steps: 200,
      width: 16,
      height: 16,
      cutouts: 2,
    };
    const options = { cache, previewEvery: 10, previewIntervalMs: Number.POSITIVE_INFINITY };
    for await (const e of generate(request, models, options)) {
      if (e.type === 'step' && e.step % 50 === 0) {
        await settle();
        readings.set(e.step, process.memoryUsage());
      }
    }
    const start = readings.get(50)!;
    const end = readings.get(200)!;
    const mb = (b: number) => b / 2 ** 20;
    // Measured growth from step 50 to 200: 0.03 MB of array buffers (the timelapse frames, capped
    // at 60), 0.07 MB of heap, 0.6 MB of RSS. Keeping any per-step buffer (the 3 KB image, the 8 KB
    // cutout matrices, the 24 KB noise, a preview) would add >= 0.44 MB of array buffers.
    expect(mb(end.arrayBuffers - start.arrayBuffers)).toBeLessThan(0.25);
    expect(mb(end.heapUsed - start.heapUsed)).toBeLessThan(1);
    // Native memory (ORT's buffers, sharp) shows only in RSS.
    expect(mb(end.rss - start.rss)).toBeLessThan(8);
  });
});
