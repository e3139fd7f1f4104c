// classify, embed-image and search processors in process (no Redis): tiny random CLIP from files,
// blobs in memory, a real PGlite. Values are checked against the classifier's own unbatched path.
import { beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../../src/shared/db/index.js';
import { Classifier } from '../../../src/worker/classify/classifier.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runClassify } from '../../../src/worker/processors/classify.js';
import { runEmbedImage } from '../../../src/worker/processors/embed-image.js';
import { runSearch } from '../../../src/worker/processors/search.js';
import type { WorkerModels } from '../../../src/worker/runtime/models.js';
import { codeOf } from '../../helpers/errors.js';
import { useTinyWorker } from '../../helpers/tiny-worker.js';
import { noisePng, pixelBombPng, truncatedPng } from '../../helpers/worker-process.js';

const tiny = useTinyWorker({ batchWaitMs: 20 });
let models: WorkerModels;
let db: Database;
const blobs = new MemoryBlobs({ prefix: 'test' });

beforeAll(() => {
  ({ models, db } = tiny);
});

const put = (bytes: Uint8Array) => blobs.put(bytes, { contentType: 'image/png' });

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

describe('runClassify', () => {
  it('matches the classifier, probabilities over every label sum to 1', async () => {
    const bytes = await noisePng(40, 30, 1);
    const labels = ['cat', 'dog', 'a red bicycle', 'human'];
    const result = await runClassify(models, { image: await put(bytes), labels, topK: 4 }, { blobs });
    const expected = await models.classifier.classify(bytes, { labels, topK: 4 });
    expect(result.labels.map((l) => l.label)).toEqual(expected.predictions.map((p) => p.label));
    result.labels.forEach((l, i) => {
      expect(l.prob).toBeCloseTo(expected.predictions[i]!.probability, 5);
    });
    expect(result.labels.reduce((s, l) => s + l.prob, 0)).toBeCloseTo(1, 6);
    for (let i = 1; i < result.labels.length; i++) {
      expect(result.labels[i]!.prob).toBeLessThanOrEqual(result.labels[i - 1]!.prob);
    }
  });

  it('cuts to topK and never asks for more labels than there are', async () => {
    const image = await put(await noisePng(32, 32, 2));
    const two = await runClassify(models, { image, labels: ['cat', 'dog', 'bird'], topK: 2 }, { blobs });
    expect(two.labels).toHaveLength(2);
    const all = await runClassify(models, { image, labels: ['cat', 'dog'], topK: 10 }, { blobs });
    expect(all.labels).toHaveLength(2);
    expect(all.labels[0]!.prob + all.labels[1]!.prob).toBeCloseTo(1, 6);
  });

  it('classifies images that arrive together in one session run', async () => {
    const before = models.images.stats;
    const images = await Promise.all([3, 4, 5, 6, 7].map(async (s) => put(await noisePng(36, 36, s))));
    const results = await Promise.all(
      images.map((image) => runClassify(models, { image, labels: ['cat', 'dog'] }, { blobs })),
    );
    const after = models.images.stats;
    expect(after.sessionRuns - before.sessionRuns).toBe(1);
    expect(after.images - before.images).toBe(5);
    // Each result is its own image's: compare with one-at-a-time classification.
    for (const [i, image] of images.entries()) {
      const alone = await models.classifier.classify((await blobs.get(image))!.bytes, {
        labels: ['cat', 'dog'],
      });
      expect(results[i]!.labels[0]!.prob).toBeCloseTo(alone.predictions[0]!.probability, 5);
    }
  });

  it('fails each bad image with its own code and leaves its batch neighbours alone', async () => {
    const good = await put(await noisePng(32, 32, 8));
    const cases = {
      notImage: await put(new TextEncoder().encode('hello, not an image')),
      truncated: await put(await truncatedPng()),
      bomb: await put(pixelBombPng()),
    };
    const labels = ['cat', 'dog'];
    const [okResult, ...codes] = await Promise.all([
      runClassify(models, { image: good, labels }, { blobs }),
      codeOf(runClassify(models, { image: cases.notImage, labels }, { blobs })),
      codeOf(runClassify(models, { image: cases.truncated, labels }, { blobs })),
      codeOf(runClassify(models, { image: cases.bomb, labels }, { blobs })),
    ]);
    expect(okResult.labels).toHaveLength(2);
    expect(codes).toEqual(['not_an_image', 'not_an_image', 'image_too_large']);
  });

  it('refuses bad job data with coded errors', async () => {
    const image = await put(await noisePng(32, 32, 9));
    expect(await codeOf(runClassify(models, { image, labels: ['cat'] }, { blobs }))).toBe('bad_input');
    expect(await codeOf(runClassify(models, { image, labels: ['cat', 'dog'], extra: 1 }, { blobs }))).toBe(
      'bad_input',
    );
    expect(await codeOf(runClassify(models, { image, topK: 500 }, { blobs }))).toBe('bad_input');
    expect(
      await codeOf(runClassify(models, { image: 'test:blob:gone', labels: ['a', 'b'] }, { blobs })),
    ).toBe('blob_missing');
    // A key outside the store's namespace could name any Redis key: refused before any read.
    expect(await codeOf(runClassify(models, { image: 'other:key', labels: ['a', 'b'] }, { blobs }))).toBe(
      'bad_input',
    );
  });

  it('resolves label sets: custom labels deduplicated, default vocabulary otherwise', () => {
    const custom = models.classifier.labelSet({ labels: ['Cat', 'cat ', 'dog'] });
    expect(custom.labels).toEqual(['Cat', 'dog']);
    expect(custom.templates.length).toBeLessThan(10);
    const fallback = models.classifier.labelSet({});
    expect(fallback.labels.length).toBeGreaterThanOrEqual(1000);
    expect(fallback.templates).toHaveLength(80);
  });

  it("honours the classifier's defaultLabels and defaultTemplates", async () => {
    const defaultLabels = ['red square', 'green field', 'blue sky'];
    const defaultTemplates = ['a photo of a {}.', 'a drawing of a {}.'];
    const classifier = new Classifier(models.classifier.model, { defaultLabels, defaultTemplates });
    try {
      expect(classifier.labelSet({})).toEqual({ labels: defaultLabels, templates: defaultTemplates });
      const bytes = await noisePng(32, 32, 71);
      const result = await runClassify(
        { classifier, images: models.images },
        { image: await put(bytes) },
        { blobs },
      );
      const expected = await classifier.classify(bytes);
      expect(result.labels.map((l) => l.label)).toEqual(expected.predictions.map((p) => p.label));
      expect(result.labels.map((l) => l.label).sort()).toEqual([...defaultLabels].sort());
      result.labels.forEach((l, i) => {
        expect(l.prob).toBeCloseTo(expected.predictions[i]!.probability, 5);
      });
    } finally {
      await classifier.close();
    }
  });
});

describe('runEmbedImage and runSearch', () => {
  const chanA = { platform: 'slack', workspace: 'T1', channel: 'C-a' } as const;
  const chanB = { platform: 'slack', workspace: 'T1', channel: 'C-b' } as const;

  it('index per channel, search within the asking channel in cosine order, delete removes', async () => {
    const bytes = await Promise.all([11, 12, 13].map((s) => noisePng(40, 40, s)));
    const ids: string[] = [];
    for (const [i, b] of bytes.entries()) {
      const r = await runEmbedImage(
        models,
        { image: await put(b), ...chanA, message: `m${i}`, file: `f${i}`, link: `https://example.com/${i}` },
        { blobs, db },
      );
      expect(r.duplicate).toBe(false);
      ids.push(r.imageId);
    }
    // The same bytes again in A: deduplicated; in B: a separate row that A never sees.
    const again = await runEmbedImage(
      models,
      { image: await put(bytes[0]!), ...chanA, message: 'm9', file: 'f9' },
      {
        blobs,
        db,
      },
    );
    expect(again).toEqual({ imageId: ids[0], duplicate: true, reindexed: false, flagged: false });
    const other = await runEmbedImage(
      models,
      { image: await put(bytes[1]!), ...chanB, message: 'x', file: 'y' },
      {
        blobs,
        db,
      },
    );
    expect(ids).not.toContain(other.imageId);

    const query = 'a photo of noise';
    const result = await runSearch(models, { query, ...chanA, k: 10 }, { db });
    expect(result.hits.map((h) => h.imageId).sort()).toEqual([...ids].sort());
    const q = await models.classifier.embedTexts([query]);
    const imageEmbeds = await models.classifier.embedImages(bytes);
    const d = models.embeddingDim;
    const expected = ids
      .map((id, i) => ({ id, score: dot(q, imageEmbeds.subarray(i * d, (i + 1) * d)) }))
      .sort((a, b) => b.score - a.score);
    expect(result.hits.map((h) => h.imageId)).toEqual(expected.map((e) => e.id));
    result.hits.forEach((h, i) => {
      expect(h.score).toBeCloseTo(expected[i]!.score, 4);
    });
    expect(result.hits.find((h) => h.imageId === ids[2])).toMatchObject({
      message: 'm2',
      file: 'f2',
      link: 'https://example.com/2',
    });

    // An image's own embedding finds it first, with cosine 1.
    const own = await db.searchImages({ ...chanA, embedding: imageEmbeds.subarray(d, 2 * d), k: 3 });
    expect(own[0]!.imageId).toBe(ids[1]);
    expect(own[0]!.score).toBeCloseTo(1, 5);

    expect(await db.deleteImage(ids[1]!)).toBe(true);
    const afterDelete = await runSearch(models, { query, ...chanA, k: 10 }, { db });
    expect(afterDelete.hits.map((h) => h.imageId)).toEqual(
      expected.map((e) => e.id).filter((id) => id !== ids[1]),
    );
    // B still holds its copy of that picture.
    const inB = await runSearch(models, { query, ...chanB, k: 10 }, { db });
    expect(inB.hits.map((h) => h.imageId)).toEqual([other.imageId]);
  });

  it('runs no safety check with a random-weight CLIP unless asked (its verdicts would be noise)', () => {
    expect(models.safety).toBeUndefined();
  });

  it("ranks only the worker's model's images, counts the others, and re-indexes one posted again", async () => {
    const chan = { platform: 'slack', workspace: 'T1', channel: 'C-models' } as const;
    // The worker's database is stamped with its model's fingerprint (loaded once with the weights).
    expect(db.embeddingModel).toBe(models.embeddingModel);
    expect(models.embeddingModel).toBe(models.classifier.model.modelKey);
    // What a worker with other weights of the same shape wrote into the same table.
    const otherWorker = new Database(db.driver, models.embeddingDim, {}, 'another-checkpoint');
    const bytes = await Promise.all([21, 22, 23].map((s) => noisePng(40, 40, s)));
    const mine = await runEmbedImage(
      models,
      { image: await put(bytes[0]!), ...chan, message: 'm0', file: 'f0' },
      { blobs, db },
    );
    const theirs = [];
    for (const [i, b] of bytes.slice(1).entries()) {
      theirs.push(
        await runEmbedImage(
          models,
          { image: await put(b), ...chan, message: `t${i}`, file: `t${i}` },
          { blobs, db: otherWorker },
        ),
      );
    }
    const query = 'a photo of noise';
    const result = await runSearch(models, { query, ...chan, k: 10 }, { db });
    expect(result.hits.map((h) => h.imageId)).toEqual([mine.imageId]);
    expect(result.staleImages).toBe(2);
    // And the other way round: each model sees only its own rows.
    expect((await runSearch(models, { query, ...chan, k: 10 }, { db: otherWorker })).staleImages).toBe(1);

    // The same bytes indexed again by this worker: that row takes this model's embedding, same id.
    const again = await runEmbedImage(
      models,
      { image: await put(bytes[1]!), ...chan, message: 'new message', file: 'new file' },
      { blobs, db },
    );
    expect(again).toEqual({ imageId: theirs[0]!.imageId, duplicate: false, reindexed: true, flagged: false });
    const after = await runSearch(models, { query, ...chan, k: 10 }, { db });
    expect(after.hits.map((h) => h.imageId).sort()).toEqual([mine.imageId, theirs[0]!.imageId].sort());
    expect(after.staleImages).toBe(1);
    // The row keeps where it was posted; its vector is now this model's (cosine 1 to its own embedding).
    const own = await models.classifier.embedImages([bytes[1]!]);
    const [top] = await db.searchImages({ ...chan, embedding: own, k: 1 });
    expect(top).toMatchObject({ imageId: theirs[0]!.imageId, message: 't0', file: 't0' });
    expect(top!.score).toBeCloseTo(1, 5);
  });

  it('refuses bad search and index data', async () => {
    expect(await codeOf(runSearch(models, { query: '', ...chanA, k: 5 }, { db }))).toBe('bad_input');
    expect(await codeOf(runSearch(models, { query: 'x', ...chanA, k: 0 }, { db }))).toBe('bad_input');
    expect(await codeOf(runSearch(models, { query: 'x', ...chanA, k: 5, channelB: 1 }, { db }))).toBe(
      'bad_input',
    );
    const notImage = await put(new TextEncoder().encode('GIF89a but not really'));
    expect(
      await codeOf(
        runEmbedImage(models, { image: notImage, ...chanA, message: 'm', file: 'f' }, { blobs, db }),
      ),
    ).toBe('not_an_image');
    expect(await db.countImages(chanA)).toBe(2);
  });
});
