// The safety check and search by image in the processors, on the tiny random models (the check
// turned on for them: by default a random-weight CLIP is not checked) and a real PGlite. Verdicts
// and rankings are checked on constructed embeddings whose scores are known, and end to end.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../../src/shared/db/index.js';
import { encodePng } from '../../../src/shared/image/encode.js';
import { SafetyChecker } from '../../../src/worker/classify/safety.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runEmbedImage } from '../../../src/worker/processors/embed-image.js';
import { runImagine } from '../../../src/worker/processors/imagine.js';
import { runSearch } from '../../../src/worker/processors/search.js';
import { loadModels, type WorkerModels } from '../../../src/worker/runtime/models.js';
import { codeOf } from '../../helpers/errors.js';
import { mulberry32, randomArray } from '../../helpers/random.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';

const tiny = useTinyWorker({ batchWaitMs: 20, safety: { checkRandomWeights: true } });
let models: WorkerModels;
let db: Database;
let safety: SafetyChecker;
const blobs = new MemoryBlobs({ prefix: 'test' });
const rand = mulberry32(77);

beforeAll(() => {
  ({ models, db } = tiny);
  safety = models.safety!;
});

const put = (bytes: Uint8Array) => blobs.put(bytes, { contentType: 'image/png' });

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** A unit vector with cosine `c` to the unit vector `q` (the rest along a random direction orthogonal to it). */
function withCosine(q: Float32Array, c: number): Float32Array {
  const r = randomArray(rand, q.length);
  const along = dot(r, q);
  const u = r.map((v, i) => v - along * q[i]!);
  const n = Math.hypot(...u);
  return q.map((v, i) => c * v + Math.sqrt(1 - c * c) * (u[i]! / n));
}

/** The same noise pixels as PNGs of different compression: other bytes, the same image. */
async function noiseEncodings(seed: number, levels: number[]): Promise<Uint8Array[]> {
  const r = mulberry32(seed);
  const data = Uint8Array.from({ length: 40 * 40 * 3 }, () => Math.floor(r() * 256));
  return Promise.all(
    levels.map((compressionLevel) => encodePng({ data, width: 40, height: 40 }, { compressionLevel })),
  );
}

/** The safety score computed here from scratch: softmax over logitScale * cosine, mass on unsafe rows. */
function referenceScore(image: Float32Array, embeds: Float32Array, owners: readonly number[], scale: number) {
  const d = image.length;
  const logits = owners.map((_, p) => scale * dot(image, embeds.subarray(p * d, (p + 1) * d)));
  const max = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.reduce((s, v, p) => s + (owners[p]! >= 0 ? v / sum : 0), 0);
}

describe('the safety check on the tiny models', () => {
  it("embeds each prompt verbatim with the text tower and scores with CLIP's logit scale", async () => {
    const set = await safety.promptEmbeddings();
    expect(set.categories).toEqual(['nudity', 'gore', 'violence']);
    const d = models.embeddingDim;
    const direct = await models.classifier.embedTexts(set.texts);
    for (let i = 0; i < set.texts.length * d; i++) expect(set.embeds[i]).toBeCloseTo(direct[i]!, 5);
    expect(safety.logitScale).toBeCloseTo(models.classifier.encoders.logitScale, 12);
    // An image embedding equal to each prompt's own text embedding: the score from scratch.
    for (const p of [0, 7, 14, set.texts.length - 1]) {
      const image = set.embeds.slice(p * d, (p + 1) * d);
      const r = await safety.check(image);
      const expected = referenceScore(image, set.embeds, set.owners, safety.logitScale);
      expect(r.score).toBeCloseTo(expected, 8);
      expect(r.flagged).toBe(expected > 0.5);
    }
  });

  it('refuses to load with a prompts file that is missing or wrong, naming it', async () => {
    await expect(
      loadModels(tiny.modelsDir, { safety: { promptsFile: '/nonexistent/safety.json' } }),
    ).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringContaining('/nonexistent/safety.json'),
    });
  });

  it('flags an image equal to an unsafe prompt and passes one equal to a safe prompt', async () => {
    // Two prompts whose tiny-model embeddings are far apart (cosine 0.47): the logit gap 14.3 * 0.53
    // puts 0.9995 of the mass on the prompt an image equals.
    const pair = new SafetyChecker(models.classifier, {
      prompts: { categories: { nudity: ['explicit nudity'] }, safe: ['a photo of a cat'] },
    });
    const [unsafe, safe] = await Promise.all(
      ['explicit nudity', 'a photo of a cat'].map((p) => models.classifier.embedTexts([p])),
    );
    expect(dot(unsafe!, safe!)).toBeLessThan(0.6);
    const flagged = await pair.check(unsafe!);
    expect(flagged).toMatchObject({ flagged: true, category: 'nudity' });
    expect(flagged.score).toBeGreaterThan(0.99);
    const passed = await pair.check(safe!);
    expect(passed.flagged).toBe(false);
    expect(passed.score).toBeLessThan(0.01);
  });

  it('imagine checks its final image: the verdict on the PNG it stored, and the time it took', async () => {
    const result = await runImagine(
      models,
      {
        prompt: 'a watercolor teacher',
        steps: 2,
        size: { width: 64, height: 64 },
        cutouts: 1,
        seed: 3,
        origin: { platform: 'web', user: 'u' },
      },
      { blobs },
    );
    const png = (await blobs.get(result.finalBlob))!.bytes;
    const expected = await safety.check(await models.images.embed(new Uint8Array(png)));
    expect(result.safety).toEqual(expected);
    expect(result.timings.safety).toBeGreaterThan(0);
    // Without a checker: no verdict, and no time spent on one.
    const { safety: _, ...unchecked } = models;
    const plain = await runImagine(
      unchecked,
      {
        prompt: 'a watercolor teacher',
        steps: 1,
        size: { width: 64, height: 64 },
        cutouts: 1,
        seed: 3,
        origin: { platform: 'web', user: 'u' },
      },
      { blobs },
    );
    expect(plain.safety).toBeUndefined();
    expect(plain.timings.safety).toBeUndefined();
  });
});

describe('embed-image and search with the safety flag', () => {
  const chan = { platform: 'discord', workspace: 'G1', channel: 'flags' } as const;

  it('stores the verdict, leaves flagged images out of searches unless asked, and reports flags', async () => {
    const [a, b, c] = await Promise.all([31, 32, 33].map(async (s) => (await noiseEncodings(s, [6]))[0]!));
    // The worker's own checker, and two whose verdicts are certain: threshold 0 flags every image
    // (scores are never exactly 0), threshold 1 none.
    const always = new SafetyChecker(models.classifier, { threshold: 0 });
    const never = new SafetyChecker(models.classifier, { threshold: 1 });
    const own = await runEmbedImage(
      models,
      { image: await put(a!), ...chan, message: 'a', file: 'a' },
      { blobs, db },
    );
    const expected = await safety.check(await models.images.embed(a!));
    expect(own.flagged).toBe(expected.flagged);
    const bad = await runEmbedImage(
      { ...models, safety: always },
      { image: await put(b!), ...chan, message: 'b', file: 'b' },
      { blobs, db },
    );
    const ok = await runEmbedImage(
      { ...models, safety: never },
      { image: await put(c!), ...chan, message: 'c', file: 'c' },
      { blobs, db },
    );
    expect([bad.flagged, ok.flagged]).toEqual([true, false]);
    const wide = { textLogitMargin: Number.POSITIVE_INFINITY, duplicateCosine: 2 };
    const search = async (includeFlagged?: boolean) =>
      (
        await runSearch(
          models,
          { query: 'noise', ...chan, k: 10, ...(includeFlagged === undefined ? {} : { includeFlagged }) },
          { db, ranking: wide },
        )
      ).hits.map((h) => [h.imageId, h.flagged]);
    const visible = [...(own.flagged ? [] : [own.imageId]), ok.imageId];
    expect((await search()).map(([id]) => id).sort()).toEqual(visible.sort());
    expect((await search()).every(([, f]) => f === false)).toBe(true);
    expect((await search(true)).map(([id, f]) => `${id}:${f}`).sort()).toEqual(
      [`${own.imageId}:${own.flagged}`, `${bad.imageId}:true`, `${ok.imageId}:false`].sort(),
    );
    // The same bytes checked again by a worker that passes them: the latest verdict is the row's.
    const again = await runEmbedImage(
      { ...models, safety: never },
      { image: await put(b!), ...chan, message: 'b2', file: 'b2' },
      { blobs, db },
    );
    expect(again).toEqual({ imageId: bad.imageId, duplicate: true, reindexed: false, flagged: false });
    expect((await search()).map(([id]) => id)).toContain(bad.imageId);
    // A worker without the check reports the row's flag as it stands.
    const { safety: _, ...unchecked } = models;
    expect(
      await runEmbedImage(
        unchecked,
        { image: await put(b!), ...chan, message: 'b3', file: 'b3' },
        { blobs, db },
      ),
    ).toMatchObject({ imageId: bad.imageId, duplicate: true, flagged: false });
  });
});

describe('search by image', () => {
  it("ranks the channel by the image's embedding, leaves out its own copy, folds re-encodings", async () => {
    const chan = { platform: 'slack', workspace: 'T1', channel: 'by-image' } as const;
    const [original, fast, small] = await noiseEncodings(41, [6, 1, 9]);
    const others = await Promise.all([42, 43, 44].map(async (s) => (await noiseEncodings(s, [6]))[0]!));
    const ids: Record<string, string> = {};
    for (const [name, bytes] of [
      ['original', original!],
      ['fast', fast!],
      ['small', small!],
      ...others.map((b, i) => [`other${i}`, b] as const),
    ] as const) {
      const r = await runEmbedImage(
        { images: models.images },
        { image: await put(bytes), ...chan, message: name, file: name },
        { blobs, db },
      );
      expect(r.duplicate).toBe(false);
      ids[name] = r.imageId;
    }
    const query = await put(original!);
    const e = await models.images.embed(original!);
    const embedsOf = await Promise.all(others.map((b) => models.images.embed(b)));
    // Everything kept, nothing folded: the raw order, scores as computed here, without the query's bytes.
    const raw = await runSearch(
      models,
      { image: query, ...chan, k: 10 },
      { db, blobs, ranking: { imageLogitMargin: Number.POSITIVE_INFINITY, duplicateCosine: 2 } },
    );
    expect(raw.hits.map((h) => h.imageId)).not.toContain(ids.original);
    expect(
      raw.hits
        .slice(0, 2)
        .map((h) => h.imageId)
        .sort(),
    ).toEqual([ids.fast, ids.small].sort());
    for (const h of raw.hits.slice(0, 2)) expect(h.score).toBeCloseTo(1, 5);
    const expectedOthers = others
      .map((_, i) => ({ id: ids[`other${i}`], score: dot(e, embedsOf[i]!) }))
      .sort((x, y) => y.score - x.score);
    expect(raw.hits.slice(2).map((h) => h.imageId)).toEqual(expectedOthers.map((x) => x.id));
    raw.hits.slice(2).forEach((h, i) => {
      expect(h.score).toBeCloseTo(expectedOthers[i]!.score, 5);
    });
    // Folded: the two re-encodings are one hit with one duplicate (cosine 1 between them).
    const folded = await runSearch(models, { image: query, ...chan, k: 10 }, { db, blobs });
    expect(folded.hits[0]).toMatchObject({ duplicates: 1 });
    expect([ids.fast, ids.small]).toContain(folded.hits[0]!.imageId);
    expect(folded.hits.map((h) => h.imageId)).not.toContain(ids.original);
    const foldedIds = new Set(folded.hits.map((h) => h.imageId));
    expect(foldedIds.has(ids.fast!) && foldedIds.has(ids.small!)).toBe(false);
    // The best hit is a copy: not weak.
    expect(folded.lowConfidence).toBeUndefined();
  });

  it('refuses a search by image without a blob store, and a blob that is gone', async () => {
    const chan = { platform: 'slack', workspace: 'T1', channel: 'by-image' } as const;
    const image = await put((await noiseEncodings(45, [6]))[0]!);
    expect(await codeOf(runSearch(models, { image, ...chan, k: 3 }, { db }))).toBe('internal');
    expect(await codeOf(runSearch(models, { image: 'test:blob:gone', ...chan, k: 3 }, { db, blobs }))).toBe(
      'blob_missing',
    );
    expect(await codeOf(runSearch(models, { image, query: 'x', ...chan, k: 3 }, { db, blobs }))).toBe(
      'bad_input',
    );
  });
});

describe('the relative cut-off and low confidence, on constructed embeddings', () => {
  const chan = { platform: 'web', workspace: 'local', channel: 'constructed' } as const;
  const query = 'a red bicycle';
  let q: Float32Array;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    q = await models.classifier.embedTexts([query]);
    // Rows written straight into the database with known cosines to the query's text embedding.
    const rows = { best: 0.9, close: 0.85, far: 0.3 };
    for (const [name, c] of Object.entries(rows)) {
      const r = await db.upsertImage({
        ...chan,
        message: name,
        file: name,
        contentHash: `constructed-${name}`,
        embedding: withCosine(q, c),
      });
      ids[name] = r.imageId;
    }
  });

  it("drops hits more than the margin (in the model's logits) below the best", async () => {
    const scale = models.classifier.encoders.logitScale;
    // 0.9 - 0.3 = 0.6 of cosine: 8.6 logits at the tiny model's 14.3; 0.05 is 0.7 logits.
    const run = (textLogitMargin: number) =>
      runSearch(models, { query, ...chan, k: 10 }, { db, ranking: { textLogitMargin } });
    const cut = await run(0.3 * scale);
    expect(cut.hits.map((h) => h.imageId)).toEqual([ids.best, ids.close]);
    cut.hits.forEach((h, i) => {
      expect(h.score).toBeCloseTo([0.9, 0.85][i]!, 5);
    });
    expect((await run(0.7 * scale)).hits.map((h) => h.imageId)).toEqual([ids.best, ids.close, ids.far]);
    expect((await run(0.01 * scale)).hits.map((h) => h.imageId)).toEqual([ids.best]);
    // The default: 6 logits, 0.42 of cosine here.
    const byDefault = await runSearch(models, { query, ...chan, k: 10 }, { db });
    expect(byDefault.hits.map((h) => h.imageId)).toEqual([ids.best, ids.close]);
  });

  it('says lowConfidence only when the best is under the configured line', async () => {
    const run = (textLowConfidence: number) =>
      runSearch(models, { query, ...chan, k: 10 }, { db, ranking: { textLowConfidence } });
    expect((await run(0.89)).lowConfidence).toBeUndefined();
    const weak = await run(0.91);
    expect(weak.lowConfidence).toBe(true);
    // Weak hits are still answered, qualified.
    expect(weak.hits.length).toBeGreaterThan(0);
    expect((await runSearch(models, { query, ...chan, k: 10 }, { db })).lowConfidence).toBeUndefined();
  });

  it('folds rows whose embeddings are near-duplicates of a better hit', async () => {
    const scope = { ...chan, channel: 'constructed-dups' };
    const best = withCosine(q, 0.9);
    // 0.999 cosine to the best row: folded; an independent row at the same score: kept.
    const copy = best.map((v, i) => v + 0.01 * (i % 2 === 0 ? 1 : -1));
    const a = await db.upsertImage({ ...scope, message: 'a', file: 'a', contentHash: 'a', embedding: best });
    await db.upsertImage({ ...scope, message: 'b', file: 'b', contentHash: 'b', embedding: copy });
    const c = await db.upsertImage({
      ...scope,
      message: 'c',
      file: 'c',
      contentHash: 'c',
      embedding: withCosine(q, 0.88),
    });
    const r = await runSearch(models, { query, ...scope, k: 10 }, { db });
    expect(r.hits.map((h) => [h.imageId, h.duplicates ?? 0])).toEqual([
      [a.imageId, 1],
      [c.imageId, 0],
    ]);
  });
});
