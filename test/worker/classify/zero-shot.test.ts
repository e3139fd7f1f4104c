// Zero-shot arithmetic on constructed embeddings, where the right answer is known by construction.
import { describe, expect, it } from 'vitest';
import {
  classifyEmbeddings,
  ensembleTemplates,
  normalizeRows,
  softmax,
  TemplateEnsemble,
  topK,
  zeroShotLogits,
} from '../../../src/worker/classify/zero-shot.js';
import { mulberry32, randomArray } from '../../helpers/random.js';

const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from(v));

describe('label embeddings from templates', () => {
  it('are the renormalised mean of the normalised template embeddings', () => {
    // Label 0: templates along x (length 2) and y (length 10): normalising first weighs them equally,
    // so the result is the diagonal, not a vector dominated by y.
    const dim = 3;
    const embeds = Float32Array.from([2, 0, 0, 0, 10, 0, /* label 1 */ 0, 0, -3, 0, 0, -0.5]);
    const out = ensembleTemplates(embeds, 2, 2, dim);
    expect(out[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(out[1]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(out[2]).toBeCloseTo(0, 6);
    expect([...out.subarray(3)]).toEqual([0, 0, -1]);
  });

  it('the streaming accumulator gives the same result in any order', () => {
    const rand = mulberry32(1);
    const labels = 4;
    const templates = 5;
    const dim = 8;
    const embeds = randomArray(rand, labels * templates * dim);
    const ref = ensembleTemplates(embeds, labels, templates, dim);
    const acc = new TemplateEnsemble(labels, dim);
    const order = Array.from({ length: labels * templates }, (_, i) => i).reverse();
    for (const p of order) acc.add(Math.floor(p / templates), embeds, p * dim);
    const out = acc.finish();
    for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(ref[i]!, 6);
    for (let l = 0; l < labels; l++) expect(norm(out.subarray(l * dim, (l + 1) * dim))).toBeCloseTo(1, 6);
  });

  it('normalizeRows gives unit rows and leaves a zero row at zero', () => {
    const out = normalizeRows(Float32Array.from([3, 4, 0, 0]), 2);
    expect([...out]).toEqual([0.6000000238418579, 0.800000011920929, 0, 0]);
  });

  it('a label without templates is an error, not a silent zero vector', () => {
    const acc = new TemplateEnsemble(2, 3);
    acc.add(0, Float32Array.from([1, 0, 0]));
    expect(() => acc.finish()).toThrow(/label 1/);
  });
});

describe('logits, softmax, top-k', () => {
  it('logits are scale x cosine, whatever the image embedding length', () => {
    // dim 2: three labels x, y, (1,1)/sqrt2; the image lies along x with length 7.
    const l3 = Float32Array.from([1, 0, 0, 1, Math.SQRT1_2, Math.SQRT1_2]);
    const logits = zeroShotLogits(Float32Array.from([7, 0]), l3, 2, 100);
    expect(logits[0]).toBeCloseTo(100, 4);
    expect(logits[1]).toBeCloseTo(0, 4);
    expect(logits[2]).toBeCloseTo(100 * Math.SQRT1_2, 4);
  });

  it('softmax sums to 1 and survives huge logits', () => {
    const p = softmax([1000, 999, 0]);
    expect(p[0]! + p[1]! + p[2]!).toBeCloseTo(1, 12);
    expect(p[0]! / p[1]!).toBeCloseTo(Math.E, 9);
    expect(p[2]).toBe(0);
  });

  it('the known winner wins; probabilities sum to 1; top-k is sorted', () => {
    const rand = mulberry32(2);
    const dim = 16;
    const names = ['cat', 'dog', 'car', 'tree', 'boat'];
    const labelEmbeds = normalizeRows(randomArray(rand, names.length * dim), dim);
    // Image 0 is 'car' plus a little noise; image 1 is 'boat' scaled by 5 (length must not matter).
    const images = new Float32Array(2 * dim);
    const noise = randomArray(rand, dim, 0.05);
    for (let i = 0; i < dim; i++) {
      images[i] = labelEmbeds[2 * dim + i]! + noise[i]!;
      images[dim + i] = 5 * labelEmbeds[4 * dim + i]!;
    }
    const [a, b] = classifyEmbeddings(images, labelEmbeds, names, dim, 100, 5);
    expect(a![0]).toMatchObject({ label: 'car', index: 2 });
    expect(b![0]).toMatchObject({ label: 'boat', index: 4 });
    for (const preds of [a!, b!]) {
      expect(preds.reduce((s, p) => s + p.probability, 0)).toBeCloseTo(1, 9);
      for (let i = 1; i < preds.length; i++)
        expect(preds[i - 1]!.probability).toBeGreaterThanOrEqual(preds[i]!.probability);
    }
    expect(b![0]!.probability).toBeGreaterThan(0.99);
  });

  it('a larger logit scale sharpens the distribution without changing the order', () => {
    const dim = 2;
    const labelEmbeds = Float32Array.from([1, 0, Math.SQRT1_2, Math.SQRT1_2]);
    const image = Float32Array.from([1, 0.2]);
    const soft = classifyEmbeddings(image, labelEmbeds, ['a', 'b'], dim, 1, 2)[0]!;
    const sharp = classifyEmbeddings(image, labelEmbeds, ['a', 'b'], dim, 100, 2)[0]!;
    expect(soft.map((p) => p.label)).toEqual(sharp.map((p) => p.label));
    expect(sharp[0]!.probability).toBeGreaterThan(soft[0]!.probability);
    // By hand: cos a = 0.98058, cos b = 0.83205; with scale 1, p(a) = 1 / (1 + e^(0.83205 - 0.98058)).
    expect(soft[0]!.probability).toBeCloseTo(1 / (1 + Math.exp(0.832050294 - 0.980580676)), 6);
  });

  it('topK keeps label order on ties and checks k', () => {
    expect(topK([0.25, 0.5, 0.25], ['x', 'y', 'z'], 3).map((p) => p.label)).toEqual(['y', 'x', 'z']);
    expect(topK([0.25, 0.5, 0.25], ['x', 'y', 'z'], 1)).toEqual([{ label: 'y', probability: 0.5, index: 1 }]);
    expect(() => topK([1], ['x'], 0)).toThrow(RangeError);
    expect(() => topK([1, 0], ['x'], 1)).toThrow(RangeError);
  });
});
