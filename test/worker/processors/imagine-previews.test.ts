// Previews of a running imagine job take one blob, whatever the job's length: every preview
// overwrites the job's one preview key (the step tells readers it changed), and the key is deleted
// when the job ends, done, cancelled or failed. Tiny random models, blobs in memory.
import { beforeAll, describe, expect, it } from 'vitest';
import type { ImagineJob } from '../../../src/shared/jobs.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runImagine } from '../../../src/worker/processors/imagine.js';
import type { WorkerModels } from '../../../src/worker/runtime/models.js';
import { codeOf } from '../../helpers/errors.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';

const tiny = useTinyWorker();
let models: WorkerModels;
beforeAll(() => {
  ({ models } = tiny);
});

const job = (over: Partial<ImagineJob> = {}): ImagineJob => ({
  prompt: 'a lighthouse at dusk',
  steps: 12,
  size: { width: 64, height: 64 },
  cutouts: 1,
  seed: 3,
  origin: { platform: 'web', user: 'U1' },
  ...over,
});

interface Seen {
  key: string;
  step: number;
  bytes: string;
  stored: number;
}

describe('imagine previews', () => {
  it('overwrite one key per job, so stored blobs stay flat while the job runs, and go when it ends', async () => {
    const blobs = new MemoryBlobs({ prefix: 'test' });
    const seen: Seen[] = [];
    const result = await runImagine(models, job(), {
      blobs,
      jobId: 'imagine:00000000-0000-4000-8000-0000000000aa',
      previewEvery: 1,
      onProgress: async (p) => {
        if (p.previewBlob === undefined) return;
        const blob = await blobs.get(p.previewBlob);
        expect(blob, `preview at step ${p.step}`).toBeDefined();
        seen.push({
          key: p.previewBlob,
          step: p.previewStep!,
          bytes: blob!.bytes.toString('base64'),
          stored: blobs.size,
        });
      },
    });
    // A preview after each of the first 11 steps (none after the last: the final image shows it).
    expect(new Set(seen.map((s) => s.step)).size).toBeGreaterThanOrEqual(10);
    expect(new Set(seen.map((s) => s.key))).toEqual(new Set([seen[0]!.key]));
    expect(seen[0]!.key).toBe('test:blob:preview:imagine:00000000-0000-4000-8000-0000000000aa');
    // The step says which image is under the key, and the image changes with it.
    const steps = [...new Set(seen.map((s) => s.step))];
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(new Set(seen.map((s) => s.bytes)).size).toBeGreaterThan(steps.length / 2);
    // O(1): one blob in the store from the first preview to the last.
    expect(new Set(seen.map((s) => s.stored))).toEqual(new Set([1]));
    expect(await blobs.get(seen[0]!.key)).toBeUndefined();
    // What remains is the result: final, timelapse, saved state.
    expect(blobs.size).toBe(3);
    expect(await blobs.get(result.finalBlob)).toBeDefined();
  });

  it('are deleted when the job is cancelled, and runs without a job id get keys of their own', async () => {
    const blobs = new MemoryBlobs({ prefix: 'test' });
    const controller = new AbortController();
    const keys = new Set<string>();
    const running = runImagine(models, job({ steps: 50 }), {
      blobs,
      signal: controller.signal,
      previewEvery: 1,
      onProgress: (p) => {
        if (p.previewBlob) keys.add(p.previewBlob);
        if (p.step === 4) controller.abort();
      },
    });
    expect(await codeOf(running)).toBe('cancelled');
    expect(keys.size).toBe(1);
    expect(blobs.size).toBe(0);

    const other = new Set<string>();
    await runImagine(models, job({ steps: 3 }), {
      blobs,
      previewEvery: 1,
      onProgress: (p) => {
        if (p.previewBlob) other.add(p.previewBlob);
      },
    });
    expect(other.size).toBe(1);
    expect([...other][0]).not.toBe([...keys][0]);
  });
});
