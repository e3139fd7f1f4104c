// A float64 reference of the small composite network that test/worker/graph/network.test.ts
// builds as an ONNX graph: conv -> GroupNorm -> SiLU -> upsample -> conv -> tokens -> attention
// -> residual -> LayerNorm -> projection -> loss. Plain loops, independent of src/.
import { mulberry32, randn } from './random.js';

/** Sizes of the network; batch is 1 throughout. */
export const NET = {
  inC: 4,
  h: 6,
  w: 6,
  ch: 8,
  groups: 4,
  outF: 3,
  /** Tokens after the x2 upsample: (2h) * (2w). */
  tokens: 144,
  eps: 1e-5,
  /** Weight of the quadratic term of the loss. */
  quad: 0.25,
} as const;

/** Every weight of the network, as float32-representable float64 values (row-major). */
export interface NetParams {
  readonly conv1W: Float64Array; // [ch, inC, 3, 3]
  readonly conv1B: Float64Array; // [ch]
  readonly gnW: Float64Array; // [ch]
  readonly gnB: Float64Array; // [ch]
  readonly conv2W: Float64Array; // [ch, ch, 3, 3]
  readonly wq: Float64Array; // [ch, ch] as [out, in]
  readonly bq: Float64Array;
  readonly wk: Float64Array;
  readonly bk: Float64Array;
  readonly wv: Float64Array;
  readonly bv: Float64Array;
  readonly wo: Float64Array;
  readonly bo: Float64Array;
  readonly lnW: Float64Array; // [ch]
  readonly lnB: Float64Array; // [ch]
  readonly proj: Float64Array; // [ch, outF]
  /** Loss weights r of sum(y * r), shape [tokens, outF]. */
  readonly r: Float64Array;
}

/** Rounds to float32 so that ORT and the reference compute on the same numbers. */
const f32 = (a: Float64Array): Float64Array => Float64Array.from(Float32Array.from(a));

function normal(rand: () => number, n: number, scale: number, offset = 0): Float64Array {
  return f32(Float64Array.from({ length: n }, () => offset + scale * randn(rand)));
}

/** Seeded weights scaled so that activations stay O(1) and softmax is neither flat nor one-hot. */
export function makeNetParams(seed: number): NetParams {
  const rand = mulberry32(seed);
  const { inC, ch, outF, tokens } = NET;
  const lin = () => normal(rand, ch * ch, 1 / Math.sqrt(ch));
  const vec = (scale: number, offset = 0) => normal(rand, ch, scale, offset);
  return {
    conv1W: normal(rand, ch * inC * 9, 1 / Math.sqrt(inC * 9)),
    conv1B: vec(0.1),
    gnW: vec(0.2, 1),
    gnB: vec(0.1),
    conv2W: normal(rand, ch * ch * 9, 1 / Math.sqrt(ch * 9)),
    wq: lin(),
    bq: vec(0.1),
    wk: lin(),
    bk: vec(0.1),
    wv: lin(),
    bv: vec(0.1),
    wo: lin(),
    bo: vec(0.1),
    lnW: vec(0.2, 1),
    lnB: vec(0.1),
    proj: normal(rand, ch * outF, 1 / Math.sqrt(ch)),
    r: normal(rand, tokens * outF, 1),
  };
}

/** 3x3 convolution with zero padding 1, stride 1, of x [cin, h, w] with w [cout, cin, 3, 3]. */
export function conv3x3(
  x: Float64Array,
  cin: number,
  h: number,
  w: number,
  weight: Float64Array,
  cout: number,
  bias?: Float64Array,
): Float64Array {
  const out = new Float64Array(cout * h * w);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        let s = bias ? bias[o]! : 0;
        for (let c = 0; c < cin; c++)
          for (let di = 0; di < 3; di++)
            for (let dj = 0; dj < 3; dj++) {
              const yi = i + di - 1;
              const xj = j + dj - 1;
              if (yi < 0 || yi >= h || xj < 0 || xj >= w) continue;
              s += x[(c * h + yi) * w + xj]! * weight[((o * cin + c) * 3 + di) * 3 + dj]!;
            }
        out[(o * h + i) * w + j] = s;
      }
  return out;
}

/** torch.nn.GroupNorm on x [c, hw]: biased variance over each group of c/groups channels. */
export function groupNormRef(
  x: Float64Array,
  c: number,
  hw: number,
  groups: number,
  weight: Float64Array,
  bias: Float64Array,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  const per = (c / groups) * hw;
  for (let gi = 0; gi < groups; gi++) {
    const base = gi * per;
    let mean = 0;
    for (let k = 0; k < per; k++) mean += x[base + k]!;
    mean /= per;
    let v = 0;
    for (let k = 0; k < per; k++) v += (x[base + k]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / per + eps);
    for (let k = 0; k < per; k++) {
      const ch = Math.floor((base + k) / hw);
      out[base + k] = (x[base + k]! - mean) * rstd * weight[ch]! + bias[ch]!;
    }
  }
  return out;
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

/** Nearest x2 upsample of x [c, h, w]. */
export function upsample2x(x: Float64Array, c: number, h: number, w: number): Float64Array {
  const out = new Float64Array(c * 4 * h * w);
  for (let k = 0; k < c; k++)
    for (let i = 0; i < 2 * h; i++)
      for (let j = 0; j < 2 * w; j++)
        out[(k * 2 * h + i) * 2 * w + j] = x[(k * h + (i >> 1)) * w + (j >> 1)]!;
  return out;
}

/** t [n, in] times W^T ([out, in], PyTorch layout) plus b. */
export function linearRef(
  t: Float64Array,
  n: number,
  inF: number,
  weight: Float64Array,
  outF: number,
  bias?: Float64Array,
): Float64Array {
  const out = new Float64Array(n * outF);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < outF; o++) {
      let s = bias ? bias[o]! : 0;
      for (let k = 0; k < inF; k++) s += t[i * inF + k]! * weight[o * inF + k]!;
      out[i * outF + o] = s;
    }
  return out;
}

/** Single-head attention softmax(q k^T / sqrt(d)) v on [n, d] matrices. */
export function attentionRef(q: Float64Array, k: Float64Array, v: Float64Array, n: number, d: number) {
  const out = new Float64Array(n * d);
  const row = new Float64Array(n);
  const scale = 1 / Math.sqrt(d);
  for (let i = 0; i < n; i++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += q[i * d + c]! * k[j * d + c]!;
      row[j] = s * scale;
      max = Math.max(max, row[j]!);
    }
    let z = 0;
    for (let j = 0; j < n; j++) {
      row[j] = Math.exp(row[j]! - max);
      z += row[j]!;
    }
    for (let j = 0; j < n; j++) {
      const p = row[j]! / z;
      for (let c = 0; c < d; c++) out[i * d + c]! += p * v[j * d + c]!;
    }
  }
  return out;
}

/** LayerNorm over the last axis of t [n, d] with affine weight and bias. */
export function layerNormRef(
  t: Float64Array,
  n: number,
  d: number,
  weight: Float64Array,
  bias: Float64Array,
  eps: number,
): Float64Array {
  const out = new Float64Array(t.length);
  for (let i = 0; i < n; i++) {
    let mean = 0;
    for (let c = 0; c < d; c++) mean += t[i * d + c]!;
    mean /= d;
    let v = 0;
    for (let c = 0; c < d; c++) v += (t[i * d + c]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / d + eps);
    for (let c = 0; c < d; c++) out[i * d + c] = (t[i * d + c]! - mean) * rstd * weight[c]! + bias[c]!;
  }
  return out;
}

export interface NetResult {
  /** Output of the projection, [tokens, outF]. */
  readonly y: Float64Array;
  /** sum(y * r) + quad * sum(y^2). */
  readonly loss: number;
}

/**
 * The network on x [1, inC, h, w] and the second input u [ch], which enters twice: as a
 * per-channel scale after SiLU and as a per-feature shift of the residual before LayerNorm.
 */
export function refNet(p: NetParams, x: Float64Array, u: Float64Array): NetResult {
  const { inC, h, w, ch, groups, outF, tokens, eps, quad } = NET;
  const c1 = conv3x3(x, inC, h, w, p.conv1W, ch, p.conv1B);
  const gn = groupNormRef(c1, ch, h * w, groups, p.gnW, p.gnB, eps);
  const act = gn.map((v, i) => silu(v) * u[Math.floor(i / (h * w))]!);
  const up = upsample2x(act, ch, h, w);
  const c2 = conv3x3(up, ch, 2 * h, 2 * w, p.conv2W, ch);
  // [ch, tokens] -> tokens [tokens, ch]
  const t = new Float64Array(tokens * ch);
  for (let c = 0; c < ch; c++) for (let k = 0; k < tokens; k++) t[k * ch + c] = c2[c * tokens + k]!;
  const q = linearRef(t, tokens, ch, p.wq, ch, p.bq);
  const k = linearRef(t, tokens, ch, p.wk, ch, p.bk);
  const v = linearRef(t, tokens, ch, p.wv, ch, p.bv);
  const o = linearRef(attentionRef(q, k, v, tokens, ch), tokens, ch, p.wo, ch, p.bo);
  const res = t.map((tv, i) => tv + o[i]! + u[i % ch]!);
  const ln = layerNormRef(res, tokens, ch, p.lnW, p.lnB, eps);
  const y = new Float64Array(tokens * outF);
  for (let i = 0; i < tokens; i++)
    for (let f = 0; f < outF; f++) {
      let s = 0;
      for (let c = 0; c < ch; c++) s += ln[i * ch + c]! * p.proj[c * outF + f]!;
      y[i * outF + f] = s;
    }
  let loss = 0;
  for (let i = 0; i < y.length; i++) loss += y[i]! * p.r[i]! + quad * y[i]! * y[i]!;
  return { y, loss };
}
