// The arithmetic of CLIP zero-shot classification, on plain arrays: a label's text embedding is the
// mean of its L2-normalised template embeddings, renormalised; logits are exp(logit_scale) times
// the cosine between image and label; softmax over labels; top-k. No I/O, no model.

/** Row-wise L2 normalisation of a [rows, dim] matrix (a zero row stays zero). */
export function normalizeRows(x: Float32Array, dim: number): Float32Array {
  checkDim(x.length, dim, 'normalizeRows');
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    const base = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[base + i]! * x[base + i]!;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let i = 0; i < dim; i++) out[base + i] = x[base + i]! * inv;
  }
  return out;
}

/**
 * Accumulates template embeddings into label embeddings without holding all of them: add each
 * prompt's embedding to its label, then `finish()`. (1000 labels x 80 templates would otherwise be
 * 80,000 rows in memory.)
 */
export class TemplateEnsemble {
  private readonly sums: Float64Array;
  private readonly counts: Uint32Array;

  constructor(
    readonly labels: number,
    readonly dim: number,
  ) {
    this.sums = new Float64Array(labels * dim);
    this.counts = new Uint32Array(labels);
  }

  /** Adds one prompt embedding (unnormalised; normalised here) to `label`. */
  add(label: number, embedding: Float32Array, offset = 0): void {
    if (!(label >= 0 && label < this.labels)) throw new RangeError(`label ${label} out of range`);
    let ss = 0;
    for (let i = 0; i < this.dim; i++) ss += embedding[offset + i]! * embedding[offset + i]!;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    const base = label * this.dim;
    for (let i = 0; i < this.dim; i++) this.sums[base + i]! += embedding[offset + i]! * inv;
    this.counts[label]!++;
  }

  /** [labels, dim]: each label's mean direction, renormalised (the mean's length does not matter). */
  finish(): Float32Array {
    for (let l = 0; l < this.labels; l++) {
      if (this.counts[l] === 0) throw new Error(`label ${l} received no template embeddings`);
    }
    const out = new Float32Array(this.sums.length);
    for (let l = 0; l < this.labels; l++) {
      const base = l * this.dim;
      let ss = 0;
      for (let i = 0; i < this.dim; i++) ss += this.sums[base + i]! * this.sums[base + i]!;
      const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
      for (let i = 0; i < this.dim; i++) out[base + i] = this.sums[base + i]! * inv;
    }
    return out;
  }
}

/**
 * Label embeddings from template embeddings laid out label-major: row `l * templates + t` is
 * template t filled with label l. Returns [labels, dim], unit rows.
 */
export function ensembleTemplates(
  embeds: Float32Array,
  labels: number,
  templates: number,
  dim: number,
): Float32Array {
  if (embeds.length !== labels * templates * dim) {
    throw new RangeError(
      `${embeds.length} values are not ${labels} labels x ${templates} templates x ${dim}`,
    );
  }
  const acc = new TemplateEnsemble(labels, dim);
  for (let l = 0; l < labels; l++) {
    for (let t = 0; t < templates; t++) acc.add(l, embeds, (l * templates + t) * dim);
  }
  return acc.finish();
}

/**
 * [images, labels] logits: scale * cos(image, label). `labelEmbeds` must have unit rows (as
 * `ensembleTemplates` makes them); image embeddings are normalised here. `scale` is exp(logit_scale),
 * 100 for the released CLIP models.
 */
export function zeroShotLogits(
  imageEmbeds: Float32Array,
  labelEmbeds: Float32Array,
  dim: number,
  scale: number,
): Float64Array {
  checkDim(imageEmbeds.length, dim, 'image embeddings');
  checkDim(labelEmbeds.length, dim, 'label embeddings');
  const img = normalizeRows(imageEmbeds, dim);
  const n = img.length / dim;
  const l = labelEmbeds.length / dim;
  const out = new Float64Array(n * l);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < l; j++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += img[i * dim + k]! * labelEmbeds[j * dim + k]!;
      out[i * l + j] = scale * dot;
    }
  }
  return out;
}

/** Softmax of one row, in float64 and shifted by the max so large scales cannot overflow. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i]! - max);
    sum += out[i]!;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

export interface Prediction {
  readonly label: string;
  /** Softmax probability over the whole label set, in [0, 1]. */
  readonly probability: number;
  /** Position of the label in the label set. */
  readonly index: number;
}

/** The k most probable labels, most probable first; ties keep label order (a stable sort). */
export function topK(probs: ArrayLike<number>, labels: readonly string[], k: number): Prediction[] {
  if (probs.length !== labels.length) {
    throw new RangeError(`${probs.length} probabilities for ${labels.length} labels`);
  }
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  const order = Array.from({ length: probs.length }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]!);
  return order.slice(0, k).map((i) => ({ label: labels[i]!, probability: probs[i]!, index: i }));
}

/** Image embeddings [N, dim] against unit label embeddings -> top-k per image. */
export function classifyEmbeddings(
  imageEmbeds: Float32Array,
  labelEmbeds: Float32Array,
  labels: readonly string[],
  dim: number,
  scale: number,
  k: number,
): Prediction[][] {
  if (labelEmbeds.length !== labels.length * dim) {
    throw new RangeError(`${labelEmbeds.length / dim} label embeddings for ${labels.length} labels`);
  }
  const logits = zeroShotLogits(imageEmbeds, labelEmbeds, dim, scale);
  const n = imageEmbeds.length / dim;
  const out: Prediction[][] = [];
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * labels.length, (i + 1) * labels.length);
    out.push(topK(softmax(row), labels, k));
  }
  return out;
}

function checkDim(length: number, dim: number, what: string): void {
  if (!Number.isInteger(dim) || dim <= 0 || length % dim !== 0) {
    throw new RangeError(`${what}: ${length} values are not rows of ${dim}`);
  }
}
