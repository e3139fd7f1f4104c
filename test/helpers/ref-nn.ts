// Float64 references of the neural-network ops (erf, GELU, softmax, norms, linear, nearest
// codebook row) for op tests. Plain loops over test/helpers/nd.ts arrays, written to be read and
// trusted, independent of src/ so a bug in the graph builder cannot hide in its own reference.
import { type Nd, nd, ravel, unravel, zeros } from './nd.js';

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * erf in float64, accurate to ~1e-15. Uses erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!,
 * whose terms are all positive (no cancellation, unlike the plain Taylor series). Beyond |x| = 6,
 * 1 - erf(x) < 3e-17 is below float64 resolution near 1.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const ax = Math.abs(x);
  if (ax > 6) return Math.sign(x);
  const x2 = ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return Math.sign(x) * TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

/** GELU with erf: 0.5 x (1 + erf(x / sqrt 2)). */
export const gelu = (x: number): number => 0.5 * x * (1 + erf(x * Math.SQRT1_2));

const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/**
 * Applies `f` to every 1-D lane of `x` along `axis` (values in, values out of the same length),
 * e.g. softmax over one axis.
 */
export function mapLanes(x: Nd, axis: number, f: (lane: number[]) => number[]): Nd {
  const a = normAxis(axis, x.shape.length);
  const d = x.shape[a]!;
  const out = zeros(x.shape);
  const outer = x.shape.map((s, i) => (i === a ? 1 : s));
  const count = outer.reduce((p, q) => p * q, 1);
  for (let o = 0; o < count; o++) {
    const c = unravel(o, outer);
    const idx = Array.from({ length: d }, (_, k) => {
      c[a] = k;
      return ravel(c, x.shape);
    });
    const res = f(idx.map((i) => x.data[i]!));
    idx.forEach((i, k) => {
      out.data[i] = res[k]!;
    });
  }
  return out;
}

export function softmax(x: Nd, axis: number): Nd {
  return mapLanes(x, axis, (v) => {
    const m = Math.max(...v);
    const e = v.map((t) => Math.exp(t - m));
    const s = e.reduce((p, q) => p + q, 0);
    return e.map((t) => t / s);
  });
}

export function logSoftmax(x: Nd, axis: number): Nd {
  return mapLanes(x, axis, (v) => {
    const m = Math.max(...v);
    const lse = m + Math.log(v.reduce((p, t) => p + Math.exp(t - m), 0));
    return v.map((t) => t - lse);
  });
}

/** (v - mean) / sqrt(biased var + eps) of one group of values. */
function standardize(v: readonly number[], eps: number): number[] {
  const mean = v.reduce((p, q) => p + q, 0) / v.length;
  const variance = v.reduce((p, q) => p + (q - mean) ** 2, 0) / v.length;
  const r = 1 / Math.sqrt(variance + eps);
  return v.map((t) => (t - mean) * r);
}

/** torch.nn.functional.layer_norm over the last axis with optional weight/bias of shape [d]. */
export function layerNorm(x: Nd, weight: Nd | undefined, bias: Nd | undefined, eps: number): Nd {
  return mapLanes(x, -1, (v) =>
    standardize(v, eps).map((t, k) => t * (weight ? weight.data[k]! : 1) + (bias ? bias.data[k]! : 0)),
  );
}

/** torch.nn.functional.group_norm on [N, C, ...] with optional per-channel weight/bias. */
export function groupNorm(
  x: Nd,
  groups: number,
  weight: Nd | undefined,
  bias: Nd | undefined,
  eps: number,
): Nd {
  const [n, c] = x.shape as [number, number];
  const per = x.data.length / (n * c); // values per channel
  const groupSize = (c / groups) * per;
  const out = zeros(x.shape);
  for (let b = 0; b < n; b++) {
    for (let gi = 0; gi < groups; gi++) {
      // In row-major [N, C, ...] a group's channels are contiguous.
      const start = (b * c + gi * (c / groups)) * per;
      const std = standardize(Array.from(x.data.subarray(start, start + groupSize)), eps);
      std.forEach((t, k) => {
        const ch = gi * (c / groups) + Math.floor(k / per);
        out.data[start + k] = t * (weight ? weight.data[ch]! : 1) + (bias ? bias.data[ch]! : 0);
      });
    }
  }
  return out;
}

/** y = x W^T + b with W [out, in] (PyTorch layout); x of any rank >= 1. */
export function linear(x: Nd, w: Nd, b?: Nd): Nd {
  const [outF, inF] = w.shape as [number, number];
  const rows = x.data.length / inF;
  const shape = [...x.shape.slice(0, -1), outF];
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < outF; o++) {
      let s = b ? b.data[o]! : 0;
      for (let i = 0; i < inF; i++) s += x.data[r * inF + i]! * w.data[o * inF + i]!;
      y[r * outF + o] = s;
    }
  return nd(y, shape);
}

export interface NearestRows {
  /** Index of the nearest codebook row per position, [N, H, W] flattened. */
  readonly indices: number[];
  /** The quantized latent, [N, D, H, W]. */
  readonly quantized: Nd;
  /** Smallest gap between the best and second-best squared distance (how far from a tie). */
  readonly minMargin: number;
}

/** Brute force: for each position of z [N, D, H, W], the codebook [K, D] row at least distance. */
export function nearestRows(z: Nd, codebook: Nd): NearestRows {
  const [n, d, h, w] = z.shape as [number, number, number, number];
  const k = codebook.shape[0]!;
  const indices: number[] = [];
  const quantized = zeros(z.shape);
  let minMargin = Number.POSITIVE_INFINITY;
  for (let b = 0; b < n; b++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const dists = Array.from({ length: k }, (_, r) => {
          let s = 0;
          for (let c = 0; c < d; c++)
            s += (z.data[ravel([b, c, y, x], z.shape)]! - codebook.data[r * d + c]!) ** 2;
          return s;
        });
        let best = 0;
        for (let r = 1; r < k; r++) if (dists[r]! < dists[best]!) best = r;
        const second = Math.min(...dists.filter((_, r) => r !== best));
        minMargin = Math.min(minMargin, second - dists[best]!);
        indices.push(best);
        for (let c = 0; c < d; c++)
          quantized.data[ravel([b, c, y, x], z.shape)] = codebook.data[best * d + c]!;
      }
  return { indices, quantized, minMargin };
}
