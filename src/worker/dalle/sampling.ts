// Picking the next image token from the transformer's logits, as minDALL-E samples: logits divided
// by the temperature, cut to the top k, softmax, cut to the top-p nucleus, renormalised, one draw.
// Pure and seeded: the same logits and the same uniform draws give the same tokens, bit for bit.
//
// No classifier-free guidance: it mixes logits conditioned on the prompt with logits conditioned on
// an empty prompt, and only works for a model trained to see empty prompts (text dropped at random
// during training). minDALL-E was not trained that way, so its weights do not support it.

export interface SamplingOptions {
  /** Softmax temperature, > 0: below 1 sharpens, above 1 flattens. @defaultValue 1 */
  readonly temperature?: number;
  /** Sample among the k most likely tokens only; 0 keeps all. @defaultValue 256 (minDALL-E's) */
  readonly topK?: number;
  /**
   * Then keep the most likely tokens until their probability reaches p (the nucleus; the token that
   * crosses p is kept); 1 keeps all. @defaultValue 1
   */
  readonly topP?: number;
}

export const DefaultSamplingOptions = {
  temperature: 1,
  topK: 256,
  topP: 1,
} as const satisfies Required<SamplingOptions>;

/** Checks options; throws RangeError naming the bad one. */
export function checkSamplingOptions(options: SamplingOptions): Required<SamplingOptions> {
  const o = { ...DefaultSamplingOptions, ...options };
  if (!(o.temperature > 0 && Number.isFinite(o.temperature)))
    throw new RangeError(`temperature must be a positive number, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0)
    throw new RangeError(`topK must be an integer >= 0, got ${o.topK}`);
  if (!(o.topP > 0 && o.topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${o.topP}`);
  return o;
}

/** Index of the largest value, the first one on ties. */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * The candidate tokens of one row, most likely first (ties: the lower id first), cut to the top k.
 * Exactly k are kept even on ties at the k-th value (minDALL-E keeps every tie), so top-k = 1 is
 * exactly argmax.
 */
function topCandidates(row: Float32Array, k: number): Int32Array {
  const v = row.length;
  const byLogit = (a: number, b: number) => row[b]! - row[a]! || a - b;
  if (k === 0 || k >= v) return Int32Array.from({ length: v }, (_, i) => i).sort(byLogit);
  // The k-th largest value through a native numeric sort of a copy (fast at 16384), then the ids
  // above it and, in id order, as many ties as fit.
  const sorted = Float32Array.from(row).sort();
  const threshold = sorted[v - k]!;
  const out = new Int32Array(k);
  let n = 0;
  for (let i = 0; i < v; i++) if (row[i]! > threshold) out[n++] = i;
  for (let i = 0; i < v && n < k; i++) if (row[i] === threshold) out[n++] = i;
  return out.sort(byLogit);
}

/**
 * One token from one row of logits, with `u` a uniform draw in [0, 1). NaN logits are a bug
 * upstream and throw rather than sample garbage.
 */
export function sampleToken(row: Float32Array, options: SamplingOptions, u: number): number {
  const o = checkSamplingOptions(options);
  const ids = topCandidates(row, o.topK);
  const top = row[ids[0]!]!;
  if (Number.isNaN(top)) throw new RangeError('sampleToken: the logits hold NaN');
  // Probabilities in float64, relative to the largest (softmax's normaliser cancels in the draw).
  const p = new Float64Array(ids.length);
  let total = 0;
  for (let j = 0; j < ids.length; j++) {
    p[j] = Math.exp((row[ids[j]!]! - top) / o.temperature);
    total += p[j]!;
  }
  let keep = ids.length;
  if (o.topP < 1) {
    // Keep token j while the tokens before it hold less than topP of the mass.
    let before = 0;
    for (let j = 0; j < ids.length; j++) {
      if (before >= o.topP * total) {
        keep = j;
        break;
      }
      before += p[j]!;
    }
  }
  let kept = 0;
  for (let j = 0; j < keep; j++) kept += p[j]!;
  let target = u * kept;
  for (let j = 0; j < keep; j++) {
    target -= p[j]!;
    if (target < 0) return ids[j]!;
  }
  return ids[keep - 1]!; // u * kept rounded up to kept
}

/** One token per row of `logits` [rows, vocab], the draws from `next` (one per row, in row order). */
export function sampleRows(
  logits: Float32Array,
  rows: number,
  options: SamplingOptions,
  next: () => number,
): Int32Array {
  const vocab = logits.length / rows;
  if (!Number.isInteger(vocab))
    throw new RangeError(`${logits.length} logits do not split into ${rows} rows`);
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++)
    out[r] = sampleToken(logits.subarray(r * vocab, (r + 1) * vocab), options, next());
  return out;
}
