// Search hits as a person reads them, from the nearest candidates the database returned: near-
// duplicates folded into the best of them (clip-retrieval's 0.94 cosine), hits far below the best
// dropped, and a flag when even the best match is weak. Pure.
//
// The cut-off is relative to the best hit, not an absolute score, and measured in logits (cosine x
// the model's logit scale, the temperature CLIP learnt for its own cosines): 6 logits under the
// best is 0.06 of cosine for the released models (scale 100) and means "e^-6, about 1/400, as likely
// a match" for any checkpoint. A random-weight model (scale 14.3) spreads its cosines wider, and a
// fixed cosine margin would cut most of its hits.

export type QueryKind = 'text' | 'image';

export interface RankingOptions {
  /**
   * A candidate whose embedding has at least this cosine with a better hit is folded into it (its
   * `duplicates` count): re-posts, crops and re-encodings of one picture. Above 1: nothing folds.
   * @defaultValue 0.94 (clip-retrieval's deduplication threshold)
   */
  duplicateCosine?: number;
  /**
   * Candidates fetched per hit asked for, so that folding still leaves k hits. A channel with more
   * near-copies than that of its best images returns fewer than k. @defaultValue 3
   */
  candidatesPerHit?: number;
  /**
   * Text queries: hits more than this many logits below the best are dropped. Text-image cosines of
   * CLIP ViT-B/32 spread over about 0.1-0.35 (a good match ~0.3), so 0.06 of cosine keeps what is
   * close to the best and drops what merely shares the channel. Infinity keeps every hit.
   * @defaultValue 6 (0.06 of cosine at logit scale 100)
   */
  textLogitMargin?: number;
  /**
   * Image queries: image-image cosines spread wider (~0.4 unrelated, ~0.8 same subject, ~0.95+ the
   * same picture), hence a wider margin. @defaultValue 20 (0.2 of cosine at logit scale 100)
   */
  imageLogitMargin?: number;
  /**
   * Text queries: `lowConfidence` when the best hit scores below this (LAION kept ViT-B/32 pairs
   * from ~0.28; below 0.2 a caption and an image are usually unrelated). @defaultValue 0.2
   */
  textLowConfidence?: number;
  /** Image queries: `lowConfidence` when the best hit scores below this. @defaultValue 0.6 */
  imageLowConfidence?: number;
}

export const DefaultRankingOptions = {
  duplicateCosine: 0.94,
  candidatesPerHit: 3,
  textLogitMargin: 6,
  imageLogitMargin: 20,
  textLowConfidence: 0.2,
  imageLowConfidence: 0.6,
} as const satisfies Required<RankingOptions>;

/** Checks the options once (startWorker) rather than on every search. */
export function rankingOptions(options: RankingOptions = {}): Required<RankingOptions> {
  const o = { ...DefaultRankingOptions, ...options };
  if (!(o.duplicateCosine > 0)) throw new RangeError(`duplicateCosine must be > 0, got ${o.duplicateCosine}`);
  if (!Number.isInteger(o.candidatesPerHit) || o.candidatesPerHit < 1 || o.candidatesPerHit > 20)
    throw new RangeError(`candidatesPerHit must be an integer in [1, 20], got ${o.candidatesPerHit}`);
  for (const key of ['textLogitMargin', 'imageLogitMargin'] as const) {
    if (!(o[key] >= 0)) throw new RangeError(`${key} must be >= 0, got ${o[key]}`);
  }
  for (const key of ['textLowConfidence', 'imageLowConfidence'] as const) {
    if (!(o[key] >= -1 && o[key] <= 1)) throw new RangeError(`${key} must be in [-1, 1], got ${o[key]}`);
  }
  return o;
}

export interface Candidate {
  /** Cosine with the query. */
  readonly score: number;
  readonly embedding: ArrayLike<number>;
}

export type Folded<T> = T & { duplicates: number };

/**
 * Greedy, best first: each candidate joins the best kept hit it has at least `threshold` cosine
 * with, else becomes a hit. Unlike clip-retrieval's connected components, a chain of small steps
 * (a ~ b, b ~ c, a !~ c) does not fold c into a: a hit is hidden only behind one it resembles.
 */
export function foldNearDuplicates<T extends Candidate>(
  candidates: readonly T[],
  threshold: number,
): Folded<T>[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const kept: Folded<T>[] = [];
  const units: Float64Array[] = [];
  for (const c of sorted) {
    const u = unit(c.embedding);
    const into = units.findIndex((k) => dot(k, u) >= threshold);
    if (into >= 0) {
      kept[into]!.duplicates++;
      continue;
    }
    kept.push({ ...c, duplicates: 0 });
    units.push(u);
  }
  return kept;
}

export interface Ranked<T> {
  hits: Folded<T>[];
  /** Even the best hit is weak; false when there are no hits (nothing was claimed). */
  lowConfidence: boolean;
}

export interface RankQuery {
  readonly kind: QueryKind;
  readonly k: number;
  /** exp(logit_scale) of the CLIP model that made the embeddings. */
  readonly logitScale: number;
}

/** Folds near-duplicates, drops hits more than the margin below the best, keeps the top k. */
export function rankCandidates<T extends Candidate>(
  candidates: readonly T[],
  { kind, k, logitScale }: RankQuery,
  options: Required<RankingOptions> = DefaultRankingOptions,
): Ranked<T> {
  if (!(logitScale > 0)) throw new RangeError(`logitScale must be positive, got ${logitScale}`);
  const folded = foldNearDuplicates(candidates, options.duplicateCosine);
  const best = folded[0]?.score;
  if (best === undefined) return { hits: [], lowConfidence: false };
  const margin = (kind === 'text' ? options.textLogitMargin : options.imageLogitMargin) / logitScale;
  const weak = kind === 'text' ? options.textLowConfidence : options.imageLowConfidence;
  return {
    hits: folded.filter((h) => h.score >= best - margin).slice(0, k),
    lowConfidence: best < weak,
  };
}

function unit(v: ArrayLike<number>): Float64Array {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  return Float64Array.from({ length: v.length }, (_, i) => v[i]! * inv);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
