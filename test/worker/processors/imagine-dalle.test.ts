// The imagine processor with the DALL-E drawer, in process on the tiny models (a tiny random
// minDALL-E beside the tiny CLIP and VQGAN): progress in image tokens with tokens/s, row previews,
// the best of N candidates as the result, and Refine: VQGAN+CLIP steps continuing from its tokens.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../../src/shared/db/index.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import type { ImagineJob, ImagineProgress } from '../../../src/shared/jobs.js';
import { decodeState } from '../../../src/worker/generate/state.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runImagine } from '../../../src/worker/processors/imagine.js';
import { dalleText, sphericalDistance } from '../../../src/worker/processors/imagine-dalle.js';
import type { WorkerModels } from '../../../src/worker/runtime/models.js';
import { codeOf } from '../../helpers/errors.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';

const tiny = useTinyWorker();
let models: WorkerModels;
let db: Database;
const blobs = new MemoryBlobs({ prefix: 'test' });

beforeAll(() => {
  ({ models, db } = tiny);
});

const origin = { platform: 'web', user: 'U1' } as const;
const dalleJob = (over: Partial<ImagineJob> = {}): ImagineJob => ({
  prompt: 'a watercolor painting of a fox | blurry:-0.5',
  drawer: 'dalle',
  candidates: 2,
  seed: 9,
  origin,
  ...over,
});

describe('imagine with the DALL-E drawer', () => {
  it('reports tokens, previews rows, keeps the best candidate and records the run', async () => {
    const progress: ImagineProgress[] = [];
    const jobId = 'imagine:00000000-0000-4000-8000-0000000000d1';
    const result = await runImagine(models, dalleJob(), {
      blobs,
      db,
      jobId,
      onProgress: (p) => {
        progress.push(p);
      },
    });
    const tokens = [...new Set(progress.map((p) => p.step))];
    expect(tokens).toEqual(Array.from({ length: 64 }, (_, i) => i + 1)); // the tiny 8x8 grid
    expect(progress.every((p) => p.steps === 64 && (p.tokensPerSecond ?? -1) >= 0)).toBe(true);
    expect(progress.at(-1)!.etaSeconds).toBe(0);
    // Previews every 2 rows of 8 tokens: at 16, 32, 48 tokens.
    expect([
      ...new Set(progress.flatMap((p) => (p.previewStep === undefined ? [] : [p.previewStep]))),
    ]).toEqual([16, 32, 48]);
    expect(result).toMatchObject({ drawer: 'dalle', candidates: 2, seed: 9, steps: 0 });
    expect(result.params).toMatchObject({ width: 128, height: 128 });
    expect(result.promptTruncated).toBeUndefined();
    expect(result.lossLast).toBeCloseTo(sphericalDistance(result.clipScore!), 10);
    const final = (await blobs.get(result.finalBlob))!;
    expect(await probeImage(final.bytes)).toMatchObject({ format: 'png', width: 128, height: 128 });
    // The saved state's latent is codebook rows: Refine starts from exactly the image's codes.
    const state = decodeState((await blobs.get(result.latentBlob!))!.bytes);
    expect(state.step).toBe(0);
    expect(state.latent.dims).toEqual([1, 16, 8, 8]);
    const codebook = models.generation.vqgan.weights.get('quantize.embedding.weight', [1024, 16]);
    const first = Array.from({ length: 16 }, (_, c) => state.latent.data[c * 64]!);
    const match = Array.from({ length: 1024 }, (_, k) => k).find((k) =>
      first.every((v, c) => v === codebook[k * 16 + c]),
    );
    expect(match).toBeDefined();
    const row = await db.getGenerationByJob(jobId);
    expect(row).toMatchObject({ status: 'completed', resultLink: result.finalBlob });
  });

  it('the same seed paints the same image; Refine continues it with VQGAN+CLIP steps', async () => {
    const a = await runImagine(models, dalleJob({ seed: 4 }), { blobs });
    const b = await runImagine(models, dalleJob({ seed: 4 }), { blobs });
    const pa = (await blobs.get(a.finalBlob))!.bytes;
    expect(Buffer.from((await blobs.get(b.finalBlob))!.bytes).equals(Buffer.from(pa))).toBe(true);

    const refined = await runImagine(
      models,
      {
        prompt: 'a watercolor painting of a fox',
        steps: 2,
        cutouts: 1,
        lr: 2,
        from: { state: a.latentBlob!, mode: 'continue' },
        origin,
      },
      { blobs },
    );
    expect(refined.drawer).toBeUndefined();
    expect(refined.steps).toBe(2);
    expect(refined.params).toMatchObject({ width: 128, height: 128 });
    // Two VQGAN+CLIP steps from the DALL-E latent (a large rate, so that codes change): a new image.
    const pr = (await blobs.get(refined.finalBlob))!.bytes;
    expect(Buffer.from(pr).equals(Buffer.from(pa))).toBe(false);
  });

  it('a prompt longer than the text context is cut, and the result says so', async () => {
    const long = Array.from({ length: 30 }, (_, i) => `castle${i}`).join(' ');
    const r = await runImagine(models, dalleJob({ prompt: long, candidates: 1 }), { blobs });
    expect(r.promptTruncated).toBe(true);
  });

  it('refuses options that mean nothing to it, and candidates out of range', async () => {
    const run = (data: unknown) => codeOf(runImagine(models, data, { blobs }));
    expect(await run(dalleJob({ cutouts: 4 }))).toBe('bad_input');
    expect(await run(dalleJob({ steps: 10 }))).toBe('bad_input');
    expect(await run(dalleJob({ size: { width: 256, height: 256 } }))).toBe('bad_input');
    expect(await run(dalleJob({ candidates: 17 }))).toBe('bad_input');
    expect(await run(dalleJob({ candidates: 0 }))).toBe('bad_input');
    expect(await run({ ...dalleJob(), drawer: undefined, candidates: 2 })).toBe('bad_input');
    expect(await run(dalleJob({ prompt: 'blurry:-1' }))).toBe('bad_input');
  });

  it('reads the positive parts of a weighted prompt', () => {
    expect(dalleText('a fox:2 | blurry:-0.5 | in the snow')).toBe('a fox, in the snow');
  });
});
