// The int8 image tower (CLIP_IMAGE_PRECISION=int8) against fp32: Hugging Face's fixture embeddings, and
// on a tiny random CLIP the accuracy bound the option documents (cosine of embeddings, zero-shot top-1
// agreement over the 1000 ImageNet labels); loadModels hands the setting to the classifier.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Classifier } from '../../../src/worker/classify/classifier.js';
import { ClipEncoders } from '../../../src/worker/classify/clip-encoders.js';
import { IMAGENET_CLASSES } from '../../../src/worker/classify/vocabulary.js';
import { normalizeRows } from '../../../src/worker/classify/zero-shot.js';
import { Graph } from '../../../src/worker/graph/graph.js';
import { serialize } from '../../../src/worker/graph/serialize.js';
import { clipVision } from '../../../src/worker/models/clip.js';
import { parseClipConfig } from '../../../src/worker/models/config.js';
import { writeRandomModels } from '../../../src/worker/models/random.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { loadModels } from '../../../src/worker/runtime/models.js';
import { mulberry32, randomArray } from '../../helpers/random.js';

/** Cosine similarity of row r of two [n, dim] arrays. */
function cosine(a: Float32Array, b: Float32Array, r: number, dim: number): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = r * dim; i < (r + 1) * dim; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

function argmaxRow(img: Float32Array, r: number, text: Float32Array, labels: number, dim: number): number {
  let best = -1;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < labels; j++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += img[r * dim + i]! * text[j * dim + i]!;
    if (s > bestScore) [best, bestScore] = [j, s];
  }
  return best;
}

describe('int8 image tower vs Hugging Face (tiny fixture weights)', () => {
  const DIR = join(import.meta.dirname, '../../fixtures/reference');
  const weights = Weights.fromFile(join(DIR, 'clip-tiny/model.safetensors'));
  const io = Weights.fromFile(join(DIR, 'clip-tiny-io.safetensors'));
  afterAll(() => {
    weights.close();
    io.close();
  });

  it('stays within cosine 0.999 of the reference embeddings and is not the fp32 graph', async () => {
    const config = parseClipConfig(JSON.parse(readFileSync(join(DIR, 'clip-tiny/config.json'), 'utf8')));
    const g = new Graph();
    const { embeds } = clipVision(g, g.input('pixels', io.shape('pixel_values')), config, weights, {
      precision: 'int8',
    });
    // q/k/v, out_proj, fc1 and fc2 of each layer, plus the last layer's class-token row (out_proj, fc1,
    // fc2) beside the full last layer that serialisation drops.
    const quantized = g.nodes.filter((n) => n.opType === 'DynamicQuantizeMatMul');
    expect(quantized).toHaveLength(4 * config.vision_config.num_hidden_layers + 3);
    const s = await ModelSession.create(serialize(g, { outputs: { embeds } }).bytes, { intraOpThreads: 1 });
    const res = await s.run({ pixels: { data: io.get('pixel_values'), dims: io.shape('pixel_values') } });
    await s.release();
    const got = res.embeds!.data as Float32Array;
    const ref = io.get('image_embeds');
    for (let r = 0; r < 2; r++) {
      const c = cosine(got, ref, r, 16);
      expect(c).toBeGreaterThan(0.999);
      expect(c).toBeLessThan(1 - 1e-9);
    }
  });
});

describe('int8 vs fp32 image embeddings on a tiny random CLIP', () => {
  let root: string;
  let clf: Classifier;
  let int8: ClipEncoders;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'int8-test-'));
    const dir = writeRandomModels({ preset: 'tiny', outDir: join(root, 'models'), seed: 7 }).clipDir;
    clf = await Classifier.load(dir, { encoders: { session: { intraOpThreads: 1 } } });
    const m = clf.model;
    int8 = new ClipEncoders(m.config, m.weights, m.tokenizer, {
      session: { intraOpThreads: 1 },
      imagePrecision: 'int8',
    });
  });
  afterAll(async () => {
    await int8?.release();
    await clf?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('keeps cosine >= 0.999 and the zero-shot top-1 label of every image', async () => {
    const fp32 = clf.encoders;
    expect([fp32.imagePrecision, int8.imagePrecision]).toEqual(['fp32', 'int8']);
    const n = 32;
    const dim = fp32.dim;
    const pixels = randomArray(mulberry32(5), n * 3 * fp32.imageSize ** 2);
    const a = await fp32.encodeImages(pixels, n);
    const b = await int8.encodeImages(pixels, n);
    const text = normalizeRows(
      await fp32.encodeTexts(IMAGENET_CLASSES.map((l) => `a photo of a ${l}.`)),
      dim,
    );
    let agree = 0;
    const labels = new Set<number>();
    for (let r = 0; r < n; r++) {
      expect(cosine(a, b, r, dim)).toBeGreaterThan(0.999);
      const la = argmaxRow(a, r, text, IMAGENET_CLASSES.length, dim);
      labels.add(la);
      if (la === argmaxRow(b, r, text, IMAGENET_CLASSES.length, dim)) agree++;
    }
    expect(agree).toBe(n);
    // Some spread of labels, so agreement is not one label for every image.
    expect(labels.size).toBeGreaterThan(1);
  });

  it('rejects an unknown precision', () => {
    const m = clf.model;
    expect(
      () => new ClipEncoders(m.config, m.weights, m.tokenizer, { imagePrecision: 'int4' as 'int8' }),
    ).toThrow(/imagePrecision must be 'fp32' or 'int8'/);
  });

  it('is what loadModels gives the classifier when asked', async () => {
    const dir = writeRandomModels({ preset: 'tiny', outDir: join(root, 'all'), seed: 1 });
    const models = await loadModels(join(root, 'all'), { intraOpThreads: 1, imagePrecision: 'int8' });
    try {
      expect(dir.clipDir).toBe(join(root, 'all', 'clip'));
      expect(models.classifier.encoders.imagePrecision).toBe('int8');
    } finally {
      await models.close();
    }
  });
});
