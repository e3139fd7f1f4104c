// Zero-shot classification end to end on a tiny random CLIP written by the project's random-model
// writer: image file -> preprocessing -> towers -> top-k, checked against an independent recomputation;
// batching, the short text context, the label-embedding cache, custom labels and bad input.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodedError } from '../../../src/shared/errors.js';
import {
  type Classification,
  Classifier,
  parseLabels,
  parseTemplates,
} from '../../../src/worker/classify/classifier.js';
import { batchBucket, ClipEncoders, lengthBucket } from '../../../src/worker/classify/clip-encoders.js';
import { embedLabelSet, fillTemplate, labelSetKey } from '../../../src/worker/classify/label-embeddings.js';
import { preprocessImage } from '../../../src/worker/classify/preprocess.js';
import { CUSTOM_LABEL_TEMPLATES, IMAGENET_CLASSES } from '../../../src/worker/classify/vocabulary.js';
import { Graph, type Tensor } from '../../../src/worker/graph/graph.js';
import { serialize } from '../../../src/worker/graph/serialize.js';
import { clipText, clipVision } from '../../../src/worker/models/clip.js';
import { writeRandomModels } from '../../../src/worker/models/random.js';
import { ClipTokenizer, packIds } from '../../../src/worker/models/tokenizer.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { relError } from '../../helpers/op-check.js';
import { bombPng, noiseRgb, png, smoothRgb, textFile, truncated } from '../../shared/image/images.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures/images');
const options = { encoders: { session: { intraOpThreads: 1 } } } as const;

let root: string;
let modelDir: string;
let classifier: Classifier;
let images: Uint8Array[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'classify-test-'));
  modelDir = writeRandomModels({ preset: 'tiny', outDir: join(root, 'models'), seed: 7 }).clipDir;
  classifier = await Classifier.load(modelDir, { ...options, cacheDir: join(root, 'cache-main') });
  images = [
    await readFile(join(FIXTURES, 'down-noise-61x45.png')),
    await png(smoothRgb(50, 30)),
    await png(noiseRgb(20, 20, 3)),
  ];
});

afterAll(async () => {
  await classifier?.close();
  await rm(root, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<CodedError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CodedError);
  return err as CodedError;
}

describe('end to end on the tiny random model', () => {
  it('matches an independent recomputation from the same weights', async () => {
    const labels = ['cat', 'dog', 'human'];
    const templates = ['a photo of a {}.', 'a drawing of the {}.'];
    const got = await classifier.classify(images[0]!, { labels: 'cat, dog, human', templates, topK: 3 });

    // Reference: our towers at batch 1 and the full 77-token context, the math in float64 here.
    const { config, weights } = classifier.model;
    const tokenizer = await ClipTokenizer.fromFolder(modelDir);
    const run = async (
      build: (g: Graph) => Record<string, Tensor>,
      feeds: Parameters<ModelSession['run']>[0],
    ) => {
      const g = new Graph();
      const s = await ModelSession.create(serialize(g, { outputs: build(g) }).bytes, { intraOpThreads: 1 });
      try {
        return (await s.run(feeds)).out!.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const S = config.vision_config.image_size;
    const pixels = await preprocessImage(images[0]!, { size: S });
    const img = await run(
      (g) => ({ out: clipVision(g, g.input('x', [1, 3, S, S]), config, weights).embeds }),
      { x: { data: pixels, dims: [1, 3, S, S] } },
    );
    const prompts = labels.flatMap((l) => templates.map((t) => t.replace('{}', l)));
    const ids = packIds(prompts.map((p) => tokenizer.encode(p)));
    const txt = await run(
      (g) => ({ out: clipText(g, g.input('ids', [prompts.length, 77], 'int64'), config, weights).embeds }),
      { ids: { data: ids, dims: [prompts.length, 77] } },
    );
    const D = config.projection_dim;
    const unit = (v: ArrayLike<number>) => {
      const n = Math.hypot(...Array.from(v));
      return Array.from(v, (x) => x / n);
    };
    const imgU = unit(img);
    const logits = labels.map((_, l) => {
      const mean = new Array<number>(D).fill(0);
      for (let t = 0; t < templates.length; t++) {
        unit(txt.subarray((l * 2 + t) * D, (l * 2 + t + 1) * D)).forEach((v, i) => {
          mean[i]! += v;
        });
      }
      const lu = unit(mean);
      return Math.exp(weights.get('logit_scale', [])[0]!) * lu.reduce((s, v, i) => s + v * imgU[i]!, 0);
    });
    const z = logits.map((x) => Math.exp(x - Math.max(...logits)));
    const probs = z.map((x) => x / z.reduce((a, b) => a + b, 0));

    expect(got.predictions).toHaveLength(3);
    for (const p of got.predictions) {
      expect(p.label).toBe(labels[p.index]);
      expect(p.probability).toBeCloseTo(probs[p.index]!, 5);
    }
    const order = [0, 1, 2].sort((a, b) => probs[b]! - probs[a]!);
    expect(got.predictions.map((p) => p.index)).toEqual(order);
    // The random model must not be degenerate, or this test could not tell labels apart.
    expect(Math.max(...probs) - Math.min(...probs)).toBeGreaterThan(0.01);
  });

  it('is deterministic across runs and across fresh classifiers', async () => {
    const a = await classifier.classify(images[1]!, { labels: ['tree', 'house', 'car', 'boat'] });
    const b = await classifier.classify(images[1]!, { labels: ['tree', 'house', 'car', 'boat'] });
    const other = await Classifier.load(modelDir, options);
    try {
      const c = await other.classify(images[1]!, { labels: ['tree', 'house', 'car', 'boat'] });
      expect(b).toEqual(a);
      expect(c).toEqual(a);
    } finally {
      await other.close();
    }
  });

  it('encodes N images in one session run, equal to one by one', async () => {
    const before = classifier.encoders.stats.imageRuns;
    const batch = await classifier.embedImages(images);
    expect(classifier.encoders.stats.imageRuns - before).toBe(1);
    for (const [i, bytes] of images.entries()) {
      const one = await classifier.embedImages([bytes]);
      expect(relError(batch.subarray(i * 16, (i + 1) * 16), one)).toBeLessThan(1e-5);
    }
    // classify() with a list gives per-image results equal to single calls.
    const many = await classifier.classify(images, { labels: 'cat, dog, bird, tree' });
    expect(many).toHaveLength(3);
    for (const [i, bytes] of images.entries()) {
      const single = await classifier.classify(bytes, { labels: 'cat, dog, bird, tree' });
      expect(many[i]!.predictions.map((p) => p.label)).toEqual(single.predictions.map((p) => p.label));
      many[i]!.predictions.forEach((p, k) => {
        expect(p.probability).toBeCloseTo(single.predictions[k]!.probability, 5);
      });
    }
    expect(await classifier.classify([], { labels: 'a, b' })).toEqual([]);
  });

  it('splits more images than maxImageBatch into padded power-of-two runs', async () => {
    const small = await Classifier.load(modelDir, {
      encoders: { maxImageBatch: 2, session: { intraOpThreads: 1 } },
    });
    try {
      const five = [...images, images[0]!, images[2]!];
      const out = await small.embedImages(five);
      expect(small.encoders.stats.imageRuns).toBe(3); // 2 + 2 + 1
      expect(small.encoders.sessionShapes().image.sort()).toEqual([1, 2]);
      const ref = await classifier.embedImages(five);
      expect(relError(out, ref)).toBeLessThan(1e-5);
    } finally {
      await small.close();
    }
  });

  it('running the text tower on the longest prompt instead of 77 tokens gives the same embeddings', async () => {
    const { config, weights, tokenizer } = classifier.model;
    const prompts = [
      'cat',
      'a photo of a cat.',
      'a watercolor painting of a dog running in the snow, highly detailed',
      '',
      'the moon '.repeat(2000), // truncated to the context: must still end with the end token
    ];
    const exact = new ClipEncoders(config, weights, tokenizer, {
      textLengthStep: 1,
      session: { intraOpThreads: 1 },
    });
    const full = new ClipEncoders(config, weights, tokenizer, {
      textLengthStep: 77,
      session: { intraOpThreads: 1 },
    });
    try {
      const a = await exact.encodeTexts(prompts.slice(0, 4));
      const b = await full.encodeTexts(prompts.slice(0, 4));
      expect(exact.sessionShapes().text).toEqual([`4x${tokenizer.encode(prompts[2]!).length}`]);
      expect(full.sessionShapes().text).toEqual(['4x77']);
      expect(relError(a, b)).toBeLessThan(1e-5);
      // Each prompt alone (its own length, batch 1) equals its row in the batch.
      for (const [i, p] of prompts.slice(0, 4).entries()) {
        expect(relError(await exact.encodeTexts([p]), b.subarray(i * 16, (i + 1) * 16))).toBeLessThan(1e-5);
      }
      let truncatedCount = -1;
      await full
        .encodeTextBatches([prompts[4]!], () => {})
        .then((r) => {
          truncatedCount = r.truncated;
        });
      expect(truncatedCount).toBe(1);
    } finally {
      await exact.release();
      await full.release();
    }
  });
});

describe('label embeddings cache', () => {
  it('computes once, then hits memory, then disk in a new process-like instance', async () => {
    const cacheDir = join(root, 'cache-hit');
    const first = await Classifier.load(modelDir, { ...options, cacheDir });
    const labels = 'red, green, blue, yellow';
    let runs: number;
    let a: Classification;
    try {
      a = await first.classify(images[0]!, { labels });
      runs = first.encoders.stats.textRuns;
      expect(runs).toBeGreaterThan(0);
      await first.classify(images[1]!, { labels });
      expect(first.encoders.stats.textRuns).toBe(runs); // memory hit
    } finally {
      await first.close();
    }
    const files = await readdir(cacheDir);
    expect(files).toHaveLength(1);
    const second = await Classifier.load(modelDir, { ...options, cacheDir });
    try {
      const set = await second.labelEmbeddings(parseLabels(labels), CUSTOM_LABEL_TEMPLATES);
      expect(set.fromCache).toBe(true);
      const b = await second.classify(images[0]!, { labels });
      expect(second.encoders.stats.textRuns).toBe(0); // disk hit: the text tower never ran
      expect(b).toEqual(a);
      // Other templates are another key: computed.
      await second.classify(images[0]!, { labels, templates: ['{}'] });
      expect(second.encoders.stats.textRuns).toBeGreaterThan(0);
      expect(await readdir(cacheDir)).toHaveLength(2);
    } finally {
      await second.close();
    }
  });

  it('keys on model, labels and templates; a damaged cache file is recomputed', async () => {
    const k = labelSetKey('m1', ['a', 'b'], ['{}']);
    expect(labelSetKey('m2', ['a', 'b'], ['{}'])).not.toBe(k);
    expect(labelSetKey('m1', ['b', 'a'], ['{}'])).not.toBe(k);
    expect(labelSetKey('m1', ['a', 'b'], ['{}.'])).not.toBe(k);
    expect(labelSetKey('m1', ['a', 'b'], ['{}'])).toBe(k);

    const cacheDir = join(root, 'cache-damaged');
    const enc = classifier.encoders;
    const first = await embedLabelSet(enc, ['x', 'y'], ['{}'], { modelKey: 'k', cacheDir });
    const file = join(cacheDir, (await readdir(cacheDir))[0]!);
    await writeFile(file, (await readFile(file)).subarray(0, 20));
    const before = enc.stats.textRuns;
    const again = await embedLabelSet(enc, ['x', 'y'], ['{}'], { modelKey: 'k', cacheDir });
    expect(again.fromCache).toBe(false);
    expect(enc.stats.textRuns).toBeGreaterThan(before);
    expect(again.embeds).toEqual(first.embeds);
    const third = await embedLabelSet(enc, ['x', 'y'], ['{}'], { modelKey: 'k', cacheDir });
    expect(third.fromCache).toBe(true);
    expect(third.embeds).toEqual(first.embeds);
  });

  it("one caller's cancel does not fail another caller of the same label set", async () => {
    const ac = new AbortController();
    const labels = ['sun', 'moon', 'star'];
    const cancelled = classifier.labelEmbeddings(labels, ['{}.'], ac.signal);
    const other = classifier.labelEmbeddings(labels, ['{}.']);
    ac.abort(new Error('stop'));
    await expect(cancelled).rejects.toThrow('stop');
    const set = await other;
    expect(set.labels).toEqual(labels);
    expect(set.embeds.length).toBe(3 * 16);
  });

  it('a single "{}" template uses the labels verbatim as prompts', async () => {
    const labels = ['a photo of a cat', 'an oil painting of a dog', 'robot'];
    const set = await classifier.labelEmbeddings(labels, ['{}']);
    const direct = await classifier.embedTexts(labels);
    expect(relError(set.embeds, direct)).toBeLessThan(1e-5);
    expect(fillTemplate('{}', 'robot')).toBe('robot');
    expect(fillTemplate('a {} and another {}', 'cat')).toBe('a cat and another cat');
  });
});

describe('labels, templates and options', () => {
  it('parses "cat, dog, human" and friends', () => {
    expect(parseLabels('cat, dog, human')).toEqual(['cat', 'dog', 'human']);
    expect(parseLabels(' cat,, Cat , hot   dog\n bird ,')).toEqual(['cat', 'hot dog', 'bird']);
    expect(parseLabels(['a', 'b', 'A'])).toEqual(['a', 'b']);
  });

  it('rejects too few, too many and too long labels with bad_input', () => {
    for (const bad of ['', 'cat', 'cat, CAT', ' , ,']) {
      expect(() => parseLabels(bad)).toThrow(expect.objectContaining({ code: 'bad_input' }));
    }
    const many = Array.from({ length: 101 }, (_, i) => `label ${i}`).join(',');
    expect(() => parseLabels(many)).toThrow(/at most 100/);
    expect(() => parseLabels(`cat, ${'x'.repeat(101)}`)).toThrow(/longer than 100/);
    expect(parseLabels(`cat, ${'x'.repeat(100)}`)).toHaveLength(2);
  });

  it('checks templates', () => {
    expect(parseTemplates([' a photo of a {}. ', 'a photo of a {}.', '{}'])).toEqual([
      'a photo of a {}.',
      '{}',
    ]);
    expect(() => parseTemplates(['a photo'])).toThrow(expect.objectContaining({ code: 'bad_input' }));
    expect(() => parseTemplates([])).toThrow(expect.objectContaining({ code: 'bad_input' }));
  });

  it('uses the default vocabulary when no labels are given; checks topK', async () => {
    const labels = IMAGENET_CLASSES.slice(0, 30);
    const c = await Classifier.load(modelDir, {
      ...options,
      defaultLabels: labels,
      defaultTemplates: ['a photo of a {}.', 'art of the {}.'],
    });
    try {
      const r = await c.classify(images[2]!);
      expect(r.predictions).toHaveLength(5);
      for (const p of r.predictions) expect(p.label).toBe(labels[p.index]);
      const all = await c.classify(images[2]!, { topK: 20 });
      expect(all.predictions.slice(0, 5)).toEqual(r.predictions);
      expect((await c.classify(images[2]!, { labels: 'a, b', topK: 10 })).predictions).toHaveLength(2);
      for (const topK of [0, 21, 1.5]) {
        expect((await codeOf(c.classify(images[2]!, { topK }))).code).toBe('bad_input');
      }
    } finally {
      await c.close();
    }
  });
});

describe('bad images through the classifier', () => {
  it('fail with clear coded errors and the classifier keeps working', async () => {
    const goodPng = await png(noiseRgb(64, 48, 5));
    const cases: [Uint8Array, string][] = [
      [textFile(), 'not_an_image'],
      [truncated(goodPng, 0.5), 'not_an_image'],
      [bombPng(20000, 20000), 'image_too_large'],
    ];
    for (const [bytes, code] of cases) {
      const err = await codeOf(classifier.classify(bytes, { labels: 'cat, dog' }));
      expect(err.code).toBe(code);
      expect(err.message).not.toMatch(/vips|libpng/i); // libvips details stay in details, not the sentence
    }
    const capped = await Classifier.load(modelDir, { ...options, imageLimits: { maxBytes: 1000 } });
    try {
      const err = await codeOf(capped.classify(goodPng, { labels: 'cat, dog' }));
      expect(err).toMatchObject({
        code: 'image_too_large',
        details: { bytes: goodPng.length, maxBytes: 1000 },
      });
    } finally {
      await capped.close();
    }
    const ok = await classifier.classify(goodPng, { labels: 'cat, dog' });
    expect(ok.predictions).toHaveLength(2);
  });
});

describe('shape buckets', () => {
  it('batches round up to powers of two, lengths to the step, both capped', () => {
    expect([1, 2, 3, 4, 5, 9, 16].map((n) => batchBucket(n, 16))).toEqual([1, 2, 4, 4, 8, 16, 16]);
    expect(batchBucket(20, 24)).toBe(24);
    expect(() => batchBucket(17, 16)).toThrow(RangeError);
    expect([1, 8, 9, 70, 77].map((t) => lengthBucket(t, 8, 77))).toEqual([8, 8, 16, 72, 77]);
  });
});
