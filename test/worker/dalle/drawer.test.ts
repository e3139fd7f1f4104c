// The DALL-E drawer on tiny random models: tokens -> codebook rows -> VQGAN decoder -> images,
// CLIP's reranking, row-by-row previews with tokens/s and ETA, and a seed that fixes the result.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bestK,
  clipScores,
  DalleDrawer,
  type DrawEvent,
  type DrawResult,
  tokensLatent,
} from '../../../src/worker/dalle/drawer.js';
import { type DalleModel, loadDalleModel } from '../../../src/worker/dalle/model.js';
import { writeRandomDallePreset } from '../../../src/worker/dalle/random.js';
import { decodeImage8 } from '../../../src/worker/generate/image.js';
import { type TinyModels, tinyModels } from '../generate/tiny-models.js';

describe('reranking', () => {
  it('keeps the candidates whose embeddings point closest to the prompt, best first', () => {
    const text = new Float32Array([1, 0, 0]);
    // Cosines 0.6, 1, -1, 0.8 (lengths differ on purpose: only the direction counts).
    const images = [
      new Float32Array([3, 4, 0]),
      new Float32Array([0.5, 0, 0]),
      new Float32Array([-2, 0, 0]),
      new Float32Array([8, 0, 6]),
    ];
    const scores = clipScores(images, text);
    expect(scores.map((s) => Math.round(s * 100) / 100)).toEqual([0.6, 1, -1, 0.8]);
    expect(bestK(scores, 1)).toEqual([1]);
    expect(bestK(scores, 3)).toEqual([1, 3, 0]);
    expect(bestK([0.5, 0.5, 0.2], 2)).toEqual([0, 1]);
    expect(() => clipScores([new Float32Array(2)], text)).toThrow(/embedding/);
  });
});

describe('DalleDrawer (tiny)', () => {
  let dir: string;
  let model: DalleModel;
  let tiny: TinyModels;
  let drawer: DalleDrawer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dalle-drawer-'));
    writeRandomDallePreset(join(dir, 'dalle'), 'tiny', { seed: 3 });
    model = await loadDalleModel(join(dir, 'dalle'));
    tiny = tinyModels();
    drawer = new DalleDrawer({
      model,
      vqgan: tiny.vqgan,
      embedTexts: tiny.embedTexts,
      embedImages: (px) => tiny.embedImages!(px),
      clipImageSize: tiny.clip.config.vision_config.image_size,
    });
  });
  afterAll(async () => {
    await drawer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(seed: number, candidates: number, keep = 1) {
    const events: DrawEvent[] = [];
    let clock = 0;
    for await (const e of drawer.draw(
      { prompt: 'a watercolor painting of a fox', seed, candidates, keep },
      { previewEveryRows: 2, now: () => (clock += 1) },
    ))
      events.push(e);
    const done = events.at(-1);
    if (done?.type !== 'done') throw new Error('no result');
    return { events, result: done.result as DrawResult };
  }

  it('draws, previews row by row and keeps the best-scoring candidate', async () => {
    const { events, result } = await run(11, 3, 2);
    const total = model.config.ctx_len_img;
    const grid = drawer.grid;
    const progress = events.filter((e) => e.type === 'tokens');
    expect(progress.map((e) => e.tokens)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const last = progress.at(-1)!;
    expect(last.etaMs).toBe(0);
    expect(progress[0]!.etaMs).toBeGreaterThan(0);
    expect(last.tokensPerSecond).toBeGreaterThan(0);
    // Previews every 2 rows, before the grid is complete.
    const previews = events.filter((e) => e.type === 'preview');
    expect(previews.map((p) => p.rows)).toEqual([2, 4, 6]);
    // Below the known rows, a neutral grey.
    const px = await decodeImage8(previews[0]!.image.bytes, drawer.width, drawer.width);
    const w = drawer.width;
    const rowPx = (2 * w) / grid;
    const grey = px.subarray(rowPx * w + w, 2 * rowPx * w); // a band well below the known rows (red)
    expect(Math.max(...grey)).toBeLessThanOrEqual(129);
    expect(Math.min(...grey)).toBeGreaterThanOrEqual(126);

    expect(result.images).toHaveLength(2);
    expect(result.scores).toHaveLength(3);
    expect(result.images[0]!.score).toBe(Math.max(...result.scores));
    expect(result.images[0]!.score).toBeGreaterThanOrEqual(result.images[1]!.score);
    for (const img of result.images) {
      expect(img.tokens).toHaveLength(total);
      expect(img.image.width).toBe(w);
      expect(Array.from(img.tokens).every((t) => t >= 0 && t < model.config.vocab_size_img)).toBe(true);
    }
    expect(result.truncated).toBe(false);
    // Candidates sample differently.
    expect(result.images[0]!.tokens).not.toEqual(result.images[1]!.tokens);
  });

  it('the same seed gives the same tokens and PNG, bit for bit; another seed another image', async () => {
    const a = await run(5, 2);
    const b = await run(5, 2);
    const c = await run(6, 2);
    expect(b.result.images[0]!.tokens).toEqual(a.result.images[0]!.tokens);
    expect(
      Buffer.from(b.result.images[0]!.image.bytes).equals(Buffer.from(a.result.images[0]!.image.bytes)),
    ).toBe(true);
    expect(c.result.images[0]!.tokens).not.toEqual(a.result.images[0]!.tokens);
  });

  it('top-k = 1 decodes the greedy sequence, the same for every candidate', async () => {
    const events: DrawEvent[] = [];
    for await (const e of drawer.draw(
      { prompt: 'a red bicycle', seed: 1, candidates: 2, keep: 2, sampling: { topK: 1 } },
      { previewEveryRows: 0 },
    ))
      events.push(e);
    const done = events.at(-1);
    if (done?.type !== 'done') throw new Error('no result');
    const [x, y] = done.result.images;
    expect(x!.tokens).toEqual(y!.tokens);
    expect(events.some((e) => e.type === 'preview')).toBe(false);
  });

  it('a token grid becomes the codebook rows of its tokens (what Refine starts from)', () => {
    const grid = drawer.grid;
    const tokens = Int32Array.from({ length: grid * grid }, (_, i) => (i * 37) % 1024);
    const z = drawer.latent(tokens);
    const cb = tiny.vqgan.weights.get('quantize.embedding.weight');
    const d = tiny.vqgan.config.embed_dim;
    expect(z.dims).toEqual([1, d, grid, grid]);
    const p = 5;
    for (let c = 0; c < d; c++) expect(z.data[c * grid * grid + p]).toBe(cb[tokens[p]! * d + c]);
    expect(() => tokensLatent(tiny.vqgan, [1, 2, 3], grid)).toThrow(/grid/);
  });

  it('refuses a candidate count out of range and a prompt cut to the context is reported', async () => {
    const draw = (candidates: number, keep = 1) =>
      drawer.draw({ prompt: 'x', seed: 1, candidates, keep }, { previewEveryRows: 0 }).next();
    await expect(draw(0)).rejects.toThrow(/candidates/);
    await expect(draw(17)).rejects.toThrow(/candidates/);
    await expect(draw(2, 3)).rejects.toThrow(/keep/);
    const long = Array.from({ length: 30 }, (_, i) => `tree${i}`).join(' ');
    let result: DrawResult | undefined;
    for await (const e of drawer.draw({ prompt: long, seed: 1, candidates: 1 }, { previewEveryRows: 0 }))
      if (e.type === 'done') result = e.result;
    expect(result?.truncated).toBe(true);
    expect(result?.promptTokens).toBeGreaterThan(model.config.ctx_len_txt);
  });

  it('stops when cancelled', async () => {
    const ac = new AbortController();
    const it = drawer.draw(
      { prompt: 'a cat', seed: 1, candidates: 1 },
      { signal: ac.signal, previewEveryRows: 0 },
    );
    await it.next();
    ac.abort();
    await expect(it.next()).rejects.toMatchObject({ code: 'cancelled' });
  });
});
