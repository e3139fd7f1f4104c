// The imagine processor in process (no Redis): tiny random models from files at 64x64 with one
// cutout, blobs in memory, generations recorded in a real PGlite. Progress, previews, results,
// cancel within one step, the time budget, continue and variation from a saved state, input errors.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../../src/shared/db/index.js';
import type { CodedError } from '../../../src/shared/errors.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import type { ImagineJob, ImagineProgress } from '../../../src/shared/jobs.js';
import { decodeState } from '../../../src/worker/generate/state.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runImagine, seedForJob } from '../../../src/worker/processors/imagine.js';
import type { WorkerModels } from '../../../src/worker/runtime/models.js';
import { codeOf } from '../../helpers/errors.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';
import { noisePng, pixelBombPng } from '../../helpers/worker-process.js';

const tiny = useTinyWorker();
let models: WorkerModels;
let db: Database;
const blobs = new MemoryBlobs({ prefix: 'test' });

beforeAll(() => {
  ({ models, db } = tiny);
});

/** The largest elementwise difference of two arrays of one length. */
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const origin = { platform: 'discord', workspace: 'G1', channel: 'C1', user: 'U1' } as const;
const job = (over: Partial<ImagineJob> = {}): ImagineJob => ({
  prompt: 'a watercolor teacher | blurry:-0.5',
  steps: 4,
  size: { width: 64, height: 64 },
  cutouts: 1,
  seed: 7,
  origin,
  ...over,
});

describe('runImagine', () => {
  it('reports every step, stores previews and results, records the generation', async () => {
    const progress: ImagineProgress[] = [];
    const previewTypes: (string | undefined)[] = [];
    const jobId = 'imagine:00000000-0000-4000-8000-000000000001';
    const result = await runImagine(models, job(), {
      blobs,
      db,
      jobId,
      previewEvery: 2,
      onProgress: async (p) => {
        progress.push(p);
        if (p.previewBlob) previewTypes.push((await blobs.get(p.previewBlob))?.contentType);
      },
    });
    const steps = progress.map((p) => p.step);
    // Steps 1..4 in order; a step with a new preview is reported twice (before and after storing it).
    expect([...new Set(steps)]).toEqual([1, 2, 3, 4]);
    expect(progress.every((p) => p.steps === 4 && Number.isFinite(p.loss) && p.etaSeconds >= 0)).toBe(true);
    expect(progress[0]!.previewBlob).toBeUndefined();
    const previews = [...new Set(progress.flatMap((p) => (p.previewBlob ? [p.previewBlob] : [])))];
    expect(previews).toHaveLength(1); // after the 2nd step (previewEvery 2; none after the last)
    expect(new Set(previewTypes)).toEqual(new Set(['image/webp']));
    // The preview lives while the job runs, not after it (imagine-previews.test.ts has the rest).
    expect(await blobs.get(previews[0]!)).toBeUndefined();

    expect(result).toMatchObject({
      seed: 7,
      steps: 4,
      params: { width: 64, height: 64, cutouts: 1, lr: 0.1, preset: 'normal' },
    });
    expect(Number.isFinite(result.lossFirst) && Number.isFinite(result.lossLast)).toBe(true);
    expect(result.lossFirst).toBe(progress[0]!.loss);
    const final = (await blobs.get(result.finalBlob))!;
    expect(final.contentType).toBe('image/png');
    expect(await probeImage(final.bytes)).toMatchObject({ format: 'png', width: 64, height: 64 });
    expect((await blobs.get(result.timelapseBlob!))?.contentType).toBe('image/webp');
    const state = decodeState((await blobs.get(result.latentBlob!))!.bytes);
    expect(state.step).toBe(4);
    expect(state.params.seed).toBe(7);
    expect(state.latent.dims).toEqual([1, 16, 4, 4]); // 64 px over the tiny VQGAN's factor 16

    const row = await db.getGenerationByJob(jobId);
    expect(row).toMatchObject({
      status: 'completed',
      seed: 7,
      userId: 'U1',
      platform: 'discord',
      channel: 'C1',
      prompt: 'a watercolor teacher | blurry:-0.5',
      resultLink: result.finalBlob,
      errorCode: null,
    });
    expect(row!.finishedAt).not.toBeNull();
    expect(row!.timings?.total).toBeGreaterThan(0);
  });

  it('is deterministic for a seed; without one the seed comes from the job id', async () => {
    const a = await runImagine(models, job({ steps: 2 }), { blobs });
    const b = await runImagine(models, job({ steps: 2 }), { blobs });
    expect(b.lossFirst).toBe(a.lossFirst);
    expect(b.lossLast).toBe(a.lossLast);
    const { seed: _, ...noSeed } = job({ steps: 1 });
    const jobId = 'imagine:11111111-1111-4111-8111-111111111111';
    const c = await runImagine(models, noSeed, { blobs, jobId });
    expect(c.seed).toBe(seedForJob(jobId));
    expect(seedForJob(jobId)).not.toBe(seedForJob('imagine:22222222-2222-4222-8222-222222222222'));
  });

  it('stops within one step of a cancel and records it', async () => {
    const controller = new AbortController();
    const progress: number[] = [];
    const jobId = 'imagine:33333333-3333-4333-8333-333333333333';
    const running = runImagine(models, job({ steps: 50 }), {
      blobs,
      db,
      jobId,
      signal: controller.signal,
      onProgress: (p) => {
        progress.push(p.step);
        // Cancel lands while step 3 is being reported: step 4 must never be reported.
        if (p.step === 3) controller.abort();
      },
    });
    expect(await codeOf(running)).toBe('cancelled');
    expect(Math.max(...progress)).toBe(3);
    expect(await db.getGenerationByJob(jobId)).toMatchObject({ status: 'cancelled', errorCode: 'cancelled' });
  });

  it('ends early with a full result when the time budget is spent', async () => {
    const result = await runImagine(models, job({ steps: 200 }), { blobs, timeBudgetMs: 1 });
    // The budget is checked after the first step; one step is always taken.
    expect(result.steps).toBe(1);
    expect(await probeImage((await blobs.get(result.finalBlob))!.bytes)).toMatchObject({
      width: 64,
      height: 64,
    });
  });

  it('starts from an init image; refuses bad input with coded errors', async () => {
    const init = await blobs.put(await noisePng(80, 64, 5), { contentType: 'image/png' });
    const withInit = await runImagine(models, job({ steps: 1, initImage: init }), { blobs });
    expect(withInit.steps).toBe(1);

    const bomb = await blobs.put(pixelBombPng(), { contentType: 'image/png' });
    expect(await codeOf(runImagine(models, job({ initImage: bomb }), { blobs }))).toBe('image_too_large');
    const text = await blobs.put(new TextEncoder().encode('not an image'), { contentType: 'text/plain' });
    expect(await codeOf(runImagine(models, job({ imagePrompts: [text] }), { blobs }))).toBe('not_an_image');
    expect(await codeOf(runImagine(models, job({ initImage: 'test:blob:expired' }), { blobs }))).toBe(
      'blob_missing',
    );
    expect(await codeOf(runImagine(models, job({ prompt: 'x'.repeat(10_000) }), { blobs }))).toBe(
      'prompt_too_long',
    );
    expect(await codeOf(runImagine(models, job({ steps: 5000 }), { blobs }))).toBe('bad_input');
    expect(await codeOf(runImagine(models, job({ size: { width: 70, height: 64 } }), { blobs }))).toBe(
      'bad_input',
    );
    expect(await codeOf(runImagine(models, { ...job(), temperature: 2 }, { blobs }))).toBe('bad_input');
    // Prompt syntax is the loop's to check: every weight negative.
    expect(await codeOf(runImagine(models, job({ prompt: 'cat:-1' }), { blobs }))).toBe('bad_input');
  });
  it('continues a saved state and starts variations from its latent', async () => {
    const parent = await runImagine(models, job({ steps: 3 }), { blobs });
    const stateOf = async (key: string | undefined) => decodeState((await blobs.get(key!))!.bytes);
    const saved = await stateOf(parent.latentBlob);
    const from = (mode: 'continue' | 'variation') =>
      ({ state: parent.latentBlob!, mode, job: 'imagine:parent' }) as const;

    // Continue: its steps are added to the parent's count, and its first step scores the parent's
    // final latent with the parent's seed, which is exactly the parent's final evaluation. The job's
    // own seed does not break the continuation.
    const steps: number[] = [];
    const cont = await runImagine(models, job({ steps: 2, seed: 8, from: from('continue') }), {
      blobs,
      onProgress: (p) => {
        steps.push(p.step);
      },
    });
    expect(cont).toMatchObject({ steps: 5, seed: 7 });
    expect([...new Set(steps)]).toEqual([4, 5]);
    expect(cont.lossFirst).toBe(parent.lossLast);
    expect((await stateOf(cont.latentBlob)).adam.t).toBe(saved.adam.t + 2);

    // Variation: a fresh optimiser (and step count) from the parent's latent, with the job's seed.
    // Adam's first step moves each value by at most lr (0.1), so one step stays that close to the
    // parent's latent; a run from a random latent (codebook entries in U(-1, 1)) does not.
    const variation = await runImagine(models, job({ steps: 1, seed: 8, from: from('variation') }), {
      blobs,
    });
    expect(variation).toMatchObject({ steps: 1, seed: 8 });
    const varied = await stateOf(variation.latentBlob);
    expect(varied.adam.t).toBe(1);
    const moved = maxAbsDiff(varied.latent.data, saved.latent.data);
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(0.1 + 1e-6);
    const fresh = await stateOf((await runImagine(models, job({ steps: 1, seed: 8 }), { blobs })).latentBlob);
    expect(maxAbsDiff(fresh.latent.data, saved.latent.data)).toBeGreaterThan(0.5);
    // The job's seed draws other cutouts and noise than the parent's (a continue's first loss is the
    // parent's last). The final PNG may still equal the parent's: a 0.1 move rarely changes which
    // codebook entry the quantizer picks.
    expect(variation.lossFirst).not.toBe(parent.lossLast);
  });

  it('refuses a missing, expired or corrupt saved state with coded errors', async () => {
    const fromKey = (state: string) => job({ from: { state, mode: 'continue' } });
    expect(await codeOf(runImagine(models, fromKey('test:blob:expired'), { blobs }))).toBe('blob_missing');
    const png = await blobs.put(await noisePng(64, 64, 3), { contentType: 'image/png' });
    expect(await codeOf(runImagine(models, fromKey(png), { blobs }))).toBe('bad_input');
    const rejected = await runImagine(models, fromKey(png), { blobs }).catch((e: unknown) => e);
    expect((rejected as CodedError).details).toMatchObject({ reason: 'bad_state' });
    // An init image and a saved state both starting one latent: refused, not one silently ignored.
    const parent = await runImagine(models, job({ steps: 1 }), { blobs });
    const both = job({ initImage: png, from: { state: parent.latentBlob!, mode: 'variation' } });
    expect(await codeOf(runImagine(models, both, { blobs }))).toBe('bad_input');
  });
});
