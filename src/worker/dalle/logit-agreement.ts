// How far one model's next-token logits are from a reference's (int8 weights against float32): the
// test of the int8 option and the dalle benchmark's accuracy rows use it.

export interface LogitAgreement {
  /** Largest |got - ref| over all rows, divided by the largest |ref|. */
  readonly maxRelError: number;
  /** Share of rows whose argmax is the reference's. */
  readonly top1: number;
  /** Mean share of the reference's top k tokens that are also in got's top k. */
  readonly topkOverlap: number;
  /** Distributions compared (one per candidate per step). */
  readonly rows: number;
}

function topK(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((i, j) => row[j]! - row[i]!)
    .slice(0, k);
}

/** Compares logits [rows, vocab] pairs, each `ref`/`got` holding one or more rows of `vocab`. */
export function compareLogits(
  pairs: readonly { readonly ref: Float32Array; readonly got: Float32Array }[],
  vocab: number,
  k: number,
): LogitAgreement {
  let scale = 0;
  let err = 0;
  let rows = 0;
  let top1 = 0;
  let overlap = 0;
  for (const { ref, got } of pairs) {
    if (ref.length !== got.length || ref.length % vocab !== 0)
      throw new RangeError(`logits of ${ref.length} and ${got.length} values are not rows of ${vocab}`);
    for (let i = 0; i < ref.length; i++) {
      scale = Math.max(scale, Math.abs(ref[i]!));
      err = Math.max(err, Math.abs(got[i]! - ref[i]!));
    }
    for (let r = 0; r < ref.length / vocab; r++) {
      const a = topK(ref.subarray(r * vocab, (r + 1) * vocab), k);
      const b = topK(got.subarray(r * vocab, (r + 1) * vocab), k);
      if (a[0] === b[0]) top1++;
      const inB = new Set(b);
      overlap += a.filter((t) => inB.has(t)).length / k;
      rows++;
    }
  }
  return { maxRelError: err / (scale || 1), top1: top1 / rows, topkOverlap: overlap / rows, rows };
}
