// minDALL-E's stage-2 transformer (a GPT over 64 text tokens then 256 image tokens) as graphs from our
// builder, written from its architecture: pre-LN blocks (ln1 -> attention -> residual, ln2 -> MLP with
// GELU -> residual), separate token and position embeddings for text and image, a final LayerNorm and
// an image head. Three graphs share one set of weights:
//   - prefill: the prompt's tokens -> the first image token's logits + every layer's keys and values;
//   - decode step: one image token + the fixed-size cache + its position -> logits + that token's keys
//     and values (the caller writes them into the cache: see runner.ts);
//   - full: text + image tokens -> every image position's logits, recomputed without a cache (checks).
// Weights are graph *inputs*, not initializers: the prefill and decode sessions then read the same
// arrays (one copy of 5 GB at full size, where initializers would give each session its own), and a
// model above protobuf's 2 GB limit still serialises.
import type { Graph, Tensor } from '../graph/graph.js';
import { GraphError } from '../graph/graph.js';
import { add, gelu, less, mul, quickGelu, where } from '../graph/ops/elementwise.js';
import { quantizeWeightPerChannel } from '../graph/ops/int8.js';
import { matmul } from '../graph/ops/matmul.js';
import { layerNorm, softmax } from '../graph/ops/norm.js';
import { concat, gather, reshape, slice, split, transpose } from '../graph/ops/shape.js';
import type { WeightSource } from '../models/params.js';
import type { DalleConfig } from './config.js';

/** A weight as the graphs take it: float32 data (int8 for quantised dense layers) and dims. */
export interface WeightArray {
  readonly data: Float32Array | Int8Array;
  readonly dims: readonly number[];
}

export interface PrepareOptions {
  /**
   * 'int8': every block's dense layers (q|k|v, proj, mlp: ~96% of the bytes a decode step reads) as
   * 7-bit weights per output channel (`<name>.weight_int8` [in, out] + `<name>.weight_scale` [out],
   * graph/ops/int8.ts), run by DynamicQuantizeMatMul with the activations quantised per tensor at
   * run time; embeddings, layer norms and the image head stay float32. Inference only; the logits
   * move (bench/README.md, dalle, states by how much). @defaultValue 'fp32'
   */
  readonly precision?: 'fp32' | 'int8';
}

/** The weights in graph layout, by graph input name. */
export type DalleWeights = ReadonlyMap<string, WeightArray>;

/** Additive mask value for keys a query may not see: exp() of it underflows to exactly 0. */
const MASKED = -1e9;

/**
 * Turns minDALL-E state_dict tensors into the graphs' layout, once per model: Linear weights stay in
 * PyTorch's [out, in] (see `dense`), key/query/value are fused into one [3D, D] matrix in q|k|v
 * order with 1/sqrt(head_dim) folded into q (one GEMM instead of three), and the text head is left
 * out (sampling needs image logits only).
 */
export function prepareDalleWeights(
  c: DalleConfig,
  source: WeightSource,
  options: PrepareOptions = {},
): Map<string, WeightArray> {
  const int8 = options.precision === 'int8';
  const d = c.embed_dim;
  const hd = d / c.n_heads;
  const out = new Map<string, WeightArray>();
  const put = (name: string, data: Float32Array | Int8Array, dims: readonly number[]) =>
    out.set(name, { data, dims });
  /** A block's [out, in] dense weight, as float32 or quantised. */
  const putDense = (name: string, data: Float32Array, outF: number, inF: number) => {
    if (!int8) return put(`${name}.weight`, data, [outF, inF]);
    const { q, scales } = quantizeWeightPerChannel(data, outF, inF);
    put(`${name}.weight_int8`, q, [inF, outF]);
    return put(`${name}.weight_scale`, scales, [outF]);
  };
  const copy = (name: string, dims: readonly number[]) => put(name, source.get(name, dims), dims);
  copy('tok_emb_img.weight', [c.vocab_size_img, d]);
  copy('tok_emb_txt.weight', [c.vocab_size_txt, d]);
  copy('pos_emb_img.weight', [c.ctx_len_img, d]);
  copy('pos_emb_txt.weight', [c.ctx_len_txt, d]);
  const scale = hd ** -0.5;
  for (let i = 0; i < c.n_layers; i++) {
    const b = `blocks.${i}`;
    for (const ln of ['ln1', 'ln2']) {
      copy(`${b}.${ln}.weight`, [d]);
      copy(`${b}.${ln}.bias`, [d]);
    }
    // Output rows of q, then k, then v: the three [D, D] weights one after another.
    const qkv = new Float32Array(3 * d * d);
    const qkvBias = new Float32Array(3 * d);
    (['query', 'key', 'value'] as const).forEach((name, j) => {
      const f = j === 0 ? scale : 1;
      const w = source.get(`${b}.attn.${name}.weight`, [d, d]);
      if (f === 1) qkv.set(w, j * d * d);
      else for (let i = 0; i < w.length; i++) qkv[j * d * d + i] = w[i]! * f;
      if (c.attn_bias) {
        const bias = source.get(`${b}.attn.${name}.bias`, [d]);
        for (let o = 0; o < d; o++) qkvBias[j * d + o] = bias[o]! * f;
      }
    });
    putDense(`${b}.attn.qkv`, qkv, 3 * d, d);
    if (c.attn_bias) put(`${b}.attn.qkv.bias`, qkvBias, [3 * d]);
    const linear = (name: string, outF: number, inF: number, bias: boolean) => {
      putDense(name, source.get(`${name}.weight`, [outF, inF]), outF, inF);
      if (bias) copy(`${name}.bias`, [outF]);
    };
    linear(`${b}.attn.proj`, d, d, c.attn_bias);
    linear(`${b}.mlp.0`, 4 * d, d, c.mlp_bias);
    linear(`${b}.mlp.2`, d, 4 * d, c.mlp_bias);
  }
  copy('ln_f.weight', [d]);
  copy('ln_f.bias', [d]);
  copy('head_img.weight', [c.vocab_size_img, d]);
  return out;
}

/** Keys are stored transposed ([B, H, head_dim, S]) so q.K needs no Transpose of the cache per step. */
export const cacheKeyName = (layer: number) => `past_key.${layer}`;
export const cacheValueName = (layer: number) => `past_value.${layer}`;
export const presentKeyName = (layer: number) => `present_key.${layer}`;
export const presentValueName = (layer: number) => `present_value.${layer}`;

/** Cache positions: the text tokens, then every image token but the last (whose keys nobody reads). */
export const cacheLength = (c: DalleConfig): number => c.ctx_len_txt + c.ctx_len_img - 1;

export interface BuildOptions {
  /**
   * A dense layer over one row as a matrix-vector product, `W x` with x as a column (see `dense`);
   * false keeps `(W x^T)^T` for every row count (the dalle benchmark's A/B). @defaultValue true
   */
  readonly matVec?: boolean;
  /**
   * int8 weights as constants of the graph, which ORT packs for its int8 GEMM once at load (each
   * session then holds its own packed copy); false feeds them as inputs, packed again on every run.
   * @defaultValue true
   */
  readonly int8Constants?: boolean;
}

/** Binds weight names to graph inputs, one input per name per graph. */
class WeightInputs {
  private readonly bound = new Map<string, Tensor>();
  readonly matVec: boolean;
  private readonly int8Constants: boolean;
  constructor(
    private readonly g: Graph,
    private readonly weights: DalleWeights,
    options: BuildOptions = {},
  ) {
    this.matVec = options.matVec ?? true;
    this.int8Constants = options.int8Constants ?? true;
  }

  get(name: string): Tensor {
    let t = this.bound.get(name);
    if (!t) {
      const w = this.weights.get(name);
      if (!w) throw new GraphError(`minDALL-E: no prepared weight "${name}"`);
      if (w.data instanceof Int8Array)
        t = this.int8Constants
          ? this.g.constant(w.data, w.dims, { name })
          : this.g.input(name, w.dims, 'int8');
      else t = this.g.input(name, w.dims);
      this.bound.set(name, t);
    }
    return t;
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }
}

/**
 * torch.nn.Linear on x [.., in] with W [out, in], computed as (W x^T)^T over all rows at once. ORT's
 * CPU GEMM packs its *second* operand on every call when it is not a constant; our weights are inputs,
 * so with x W^T it re-packed every weight every step (full size: a batch-8 decode step took 8x a
 * batch-1 step, 4.0 s against 0.52 s). With the weight first, only the few activation rows are packed
 * and the weight streams once; the two transposes move rows x features floats, not the weight.
 * One row (a batch-1 decode step) is W times x as an [in, 1] column, a Reshape of the same memory:
 * ORT fuses the transposes into FusedMatMul(transB), which packs x into a 16-column panel and
 * multiplies the 15 zero columns too, while a MatMul with one plain column goes to MLAS's
 * matrix-vector kernel and only streams W (full size, one run: 483 against 721 ms a step).
 */
function dense(w: WeightInputs, x: Tensor, name: string): Tensor {
  if (w.has(`${name}.weight_int8`)) return quantizedDense(w, x, name);
  const weight = w.get(`${name}.weight`);
  const [outF, inF] = weight.shape as [number, number];
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, b) => a * b, 1);
  let y =
    rows === 1 && w.matVec
      ? reshape(matmul(weight, reshape(x, [inF, 1])), [1, outF])
      : transpose(matmul(weight, transpose(reshape(x, [rows, inF]), [1, 0])), [1, 0]);
  if (w.has(`${name}.bias`)) y = add(y, w.get(`${name}.bias`));
  return reshape(y, [...lead, outF]);
}

/**
 * `dense` with int8 weights [in, out] (prepareDalleWeights' 'int8'): DynamicQuantizeMatMul quantises
 * x's rows to uint8 per tensor, multiplies in int8 and applies the per-channel scales and the bias.
 */
function quantizedDense(w: WeightInputs, x: Tensor, name: string): Tensor {
  const weight = w.get(`${name}.weight_int8`);
  const [inF, outF] = weight.shape as [number, number];
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, b) => a * b, 1);
  const bias = w.has(`${name}.bias`) ? w.get(`${name}.bias`) : undefined;
  // Inputs: A, B, b_scale, b_zero_point (absent: symmetric), bias.
  const [y] = x.graph.emit(
    'DynamicQuantizeMatMul',
    [reshape(x, [rows, inF]), weight, w.get(`${name}.weight_scale`), undefined, bias],
    { domain: 'com.microsoft', outputs: [{ shape: [rows, outF], dtype: 'float32' }] },
  );
  return reshape(y!, [...lead, outF]);
}

/** Attention of q [B, H, T, hd] given this chunk's k and v: returns context [B, H, T, hd]. */
type Attend = (q: Tensor, k: Tensor, v: Tensor) => Tensor;

/** One pre-LN block over x [B, T, D]. */
function block(c: DalleConfig, w: WeightInputs, x: Tensor, i: number, attend: Attend): Tensor {
  const [b, t, d] = x.shape as [number, number, number];
  const heads = c.n_heads;
  const hd = d / heads;
  const p = `blocks.${i}`;
  const eps = c.layer_norm_eps;
  const h = layerNorm(x, w.get(`${p}.ln1.weight`), w.get(`${p}.ln1.bias`), eps);
  // [B, T, 3D] -> [3, B, H, T, hd] in one Transpose, then one Split.
  const qkv = transpose(reshape(dense(w, h, `${p}.attn.qkv`), [b, t, 3, heads, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = split(qkv, [1, 1, 1], 0).map((part) => reshape(part, [b, heads, t, hd])) as [
    Tensor,
    Tensor,
    Tensor,
  ];
  const ctx = attend(q, k, v);
  const y = reshape(transpose(ctx, [0, 2, 1, 3]), [b, t, d]);
  x = add(x, dense(w, y, `${p}.attn.proj`));
  const act = c.gelu_use_approx ? quickGelu : gelu;
  const m = dense(
    w,
    act(dense(w, layerNorm(x, w.get(`${p}.ln2.weight`), w.get(`${p}.ln2.bias`), eps), `${p}.mlp.0`)),
    `${p}.mlp.2`,
  );
  return add(x, m);
}

/** Causal attention inside one chunk of T tokens (no cache). */
function causalAttend(g: Graph, t: number): Attend {
  const mask = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) mask[i * t + j] = MASKED;
  const maskT = g.constant(mask, [t, t], { name: 'causal_mask' });
  return (q, k, v) => matmul(softmax(add(matmul(q, transpose(k, [0, 1, 3, 2])), maskT), -1), v);
}

/** ln_f then the image head on rows x [B, R, D] -> logits [B, R, vocab_img]. */
function imageLogits(c: DalleConfig, w: WeightInputs, x: Tensor): Tensor {
  return dense(w, layerNorm(x, w.get('ln_f.weight'), w.get('ln_f.bias'), c.layer_norm_eps), 'head_img');
}

function textEmbeddings(c: DalleConfig, w: WeightInputs, text: Tensor): Tensor {
  if (text.dtype !== 'int64' || text.shape.length !== 2 || text.shape[1] !== c.ctx_len_txt) {
    throw new GraphError(
      `minDALL-E: text must be int64 [B, ${c.ctx_len_txt}], got ${text.dtype} [${text.shape}]`,
    );
  }
  return add(gather(w.get('tok_emb_txt.weight'), text, 0), w.get('pos_emb_txt.weight'));
}

export interface PrefillGraph {
  /** [B, vocab_img]: logits of the first image token. */
  readonly logits: Tensor;
  /** Per layer: keys [B, H, hd, ctx_len_txt] and values [B, H, ctx_len_txt, hd] of the prompt. */
  readonly presentKeys: readonly Tensor[];
  readonly presentValues: readonly Tensor[];
}

/** The prompt pass: input `text` int64 [batch, ctx_len_txt] (padded with [PAD], as minDALL-E does). */
export function buildPrefill(
  g: Graph,
  c: DalleConfig,
  weights: DalleWeights,
  batch: number,
  options: BuildOptions = {},
): PrefillGraph {
  const w = new WeightInputs(g, weights, options);
  const t = c.ctx_len_txt;
  const text = g.input('text', [batch, t], 'int64');
  let x = textEmbeddings(c, w, text);
  const presentKeys: Tensor[] = [];
  const presentValues: Tensor[] = [];
  const causal = causalAttend(g, t);
  for (let i = 0; i < c.n_layers; i++) {
    x = block(c, w, x, i, (q, k, v) => {
      presentKeys.push(transpose(k, [0, 1, 3, 2]));
      presentValues.push(v);
      return causal(q, k, v);
    });
  }
  const last = slice(x, { starts: [t - 1], ends: [t], axes: [1] });
  const logits = reshape(imageLogits(c, w, last), [batch, c.vocab_size_img]);
  return { logits, presentKeys, presentValues };
}

export interface DecodeGraph {
  /** [B, vocab_img]: logits of the image token after the one fed. */
  readonly logits: Tensor;
  /** Per layer: the fed token's key [B, H, hd, 1] and value [B, H, 1, hd], for the cache. */
  readonly presentKeys: readonly Tensor[];
  readonly presentValues: readonly Tensor[];
}

/**
 * One decode step for `batch` candidates. Inputs: `token` int64 [B, 1] (the image token just
 * sampled), `position` int64 [1] (its index in the image, 0-based), and per layer the cache
 * `past_key.i` [B, H, hd, S] / `past_value.i` [B, H, S, hd] with S = cacheLength. Cache slots at or
 * after ctx_len_txt + position are masked out, so the shapes never change from step to step. The
 * new token attends to itself through a separate score column, so the graph never copies the cache.
 */
export function buildDecodeStep(
  g: Graph,
  c: DalleConfig,
  weights: DalleWeights,
  batch: number,
  options: BuildOptions = {},
): DecodeGraph {
  const w = new WeightInputs(g, weights, options);
  const d = c.embed_dim;
  const heads = c.n_heads;
  const hd = d / heads;
  const s = cacheLength(c);
  const token = g.input('token', [batch, 1], 'int64');
  const position = g.input('position', [1], 'int64');
  let x = add(
    gather(w.get('tok_emb_img.weight'), token, 0),
    gather(w.get('pos_emb_img.weight'), position, 0),
  );
  // Slot j holds a key when j < ctx_len_txt + position, i.e. when j - ctx_len_txt < position.
  const slots = g.constant(
    BigInt64Array.from({ length: s }, (_, j) => BigInt(j - c.ctx_len_txt)),
    [s],
    { name: 'cache_slots' },
  );
  const mask = where(less(slots, position), 0, MASKED); // [S]
  const presentKeys: Tensor[] = [];
  const presentValues: Tensor[] = [];
  for (let i = 0; i < c.n_layers; i++) {
    const pastK = g.input(cacheKeyName(i), [batch, heads, hd, s]);
    const pastV = g.input(cacheValueName(i), [batch, heads, s, hd]);
    x = block(c, w, x, i, (q, k, v) => {
      const kT = reshape(k, [batch, heads, hd, 1]); // T = 1: the same memory order
      presentKeys.push(kT);
      presentValues.push(v);
      const scores = concat([add(matmul(q, pastK), mask), matmul(q, kT)], 3); // [B, H, 1, S + 1]
      const p = softmax(scores, -1);
      const pPast = slice(p, { starts: [0], ends: [s], axes: [3] });
      const pSelf = slice(p, { starts: [s], ends: [s + 1], axes: [3] });
      return add(matmul(pPast, pastV), mul(pSelf, v));
    });
  }
  const logits = reshape(imageLogits(c, w, x), [batch, c.vocab_size_img]);
  return { logits, presentKeys, presentValues };
}

/**
 * The whole sequence at once, without a cache (as minDALL-E's `forward`): inputs `text` int64
 * [B, ctx_len_txt] and `image` int64 [B, n]; output [B, n + 1, vocab_img], the logits predicting
 * image tokens 0..n. For checks of the cached path, not for sampling.
 */
export function buildFullForward(
  g: Graph,
  c: DalleConfig,
  weights: DalleWeights,
  batch: number,
  n: number,
): Tensor {
  if (!Number.isInteger(n) || n < 0 || n > c.ctx_len_img - 1)
    throw new GraphError(`minDALL-E: ${n} image tokens is outside 0..${c.ctx_len_img - 1}`);
  const w = new WeightInputs(g, weights);
  const t = c.ctx_len_txt;
  const text = g.input('text', [batch, t], 'int64');
  let x = textEmbeddings(c, w, text);
  if (n > 0) {
    const image = g.input('image', [batch, n], 'int64');
    const pos = slice(w.get('pos_emb_img.weight'), { starts: [0], ends: [n], axes: [0] });
    x = concat([x, add(gather(w.get('tok_emb_img.weight'), image, 0), pos)], 1);
  }
  const causal = causalAttend(g, t + n);
  for (let i = 0; i < c.n_layers; i++) x = block(c, w, x, i, causal);
  return imageLogits(c, w, slice(x, { starts: [t - 1], ends: [t + n], axes: [1] }));
}
