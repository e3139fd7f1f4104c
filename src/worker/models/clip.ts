// CLIP's two towers as graphs built from Hugging Face-named weights (openai/clip-vit-base-patch32
// layout): the ViT image encoder (differentiable w.r.t. pixels, for generation) and the causal
// text encoder. Both return unnormalised embeddings; callers L2-normalise.
import { type Graph, GraphError, type Tensor } from '../graph/graph.js';
import { add, cast, equal, gelu, quickGelu } from '../graph/ops/elementwise.js';
import { quantizedLinear } from '../graph/ops/int8.js';
import { linear, matmul } from '../graph/ops/matmul.js';
import { softmax } from '../graph/ops/norm.js';
import type { ClipConfig } from './config.js';

export type { ClipConfig } from './config.js';

import { type Params, paramsFor, type WeightSource } from './params.js';

export type { WeightSource } from './params.js';

import { concat, expand, gather, reshape, slice, split, transpose } from '../graph/ops/shape.js';

/** HF's "quick_gelu" (openai CLIP) or exact "gelu". */
function activation(act: string): (x: Tensor) => Tensor {
  if (act === 'quick_gelu') return quickGelu;
  if (act === 'gelu') return gelu;
  throw new GraphError(`CLIP: hidden_act "${act}" is not supported (quick_gelu or gelu)`);
}

interface EncoderDims {
  readonly hidden: number;
  readonly inter: number;
  readonly layers: number;
  readonly heads: number;
  readonly eps: number;
  readonly act: (x: Tensor) => Tensor;
  /** The encoder's linear layers (weight [out, in]): `linear`, or an int8 one for inference. */
  readonly linear: (x: Tensor, weight: Tensor, bias?: Tensor) => Tensor;
}

/** torch.nn.Linear named `prefix`, through the encoder's linear. */
function dense(p: Params, x: Tensor, prefix: string, inF: number, outF: number, d: EncoderDims): Tensor {
  return d.linear(x, p.get(`${prefix}.weight`, [outF, inF]), p.get(`${prefix}.bias`, [outF]));
}

/**
 * q, k and v of one layer from one MatMul: the three projections are concatenated into a [3D, D]
 * weight at build time (one wide GEMM instead of three narrow ones: ~2% at batch 1 on CPU, and
 * fewer nodes), with q's 1/sqrt(head_dim) folded into its rows and bias (exact for power-of-two
 * head sizes such as ViT-B/32's 64). Returns each as [B, heads, T, head_dim].
 */
function selfAttentionInputs(p: Params, x: Tensor, L: string, d: EncoderDims): [Tensor, Tensor, Tensor] {
  const [b, t, D] = x.shape as [number, number, number];
  const hd = D / d.heads;
  const scale = hd ** -0.5;
  const weight = p.derived(`${L}.self_attn.qkv_proj.weight`, [3 * D, D], () => {
    const w = new Float32Array(3 * D * D);
    (['q_proj', 'k_proj', 'v_proj'] as const).forEach((name, j) => {
      const part = p.array(`${L}.self_attn.${name}.weight`, [D, D]);
      if (j === 0) for (let i = 0; i < part.length; i++) w[i] = part[i]! * scale;
      else w.set(part, j * D * D);
    });
    return w;
  });
  const bias = p.derived(`${L}.self_attn.qkv_proj.bias`, [3 * D], () => {
    const out = new Float32Array(3 * D);
    (['q_proj', 'k_proj', 'v_proj'] as const).forEach((name, j) => {
      const part = p.array(`${L}.self_attn.${name}.bias`, [D]);
      if (j === 0) for (let i = 0; i < D; i++) out[i] = part[i]! * scale;
      else out.set(part, j * D);
    });
    return out;
  });
  // [B, T, 3D] -> [3, B, heads, T, head_dim] in one Transpose, then one Split.
  const qkv = transpose(reshape(d.linear(x, weight, bias), [b, t, 3, d.heads, hd]), [2, 0, 3, 1, 4]);
  return split(qkv, [1, 1, 1], 0).map((part) => reshape(part, [b, d.heads, t, hd])) as [
    Tensor,
    Tensor,
    Tensor,
  ];
}

/**
 * The rest of one layer for the query rows in `h` (all tokens, or a subset with its q rows):
 * attention over all keys, out_proj, residual, LN -> MLP -> residual.
 */
function layerTail(
  p: Params,
  h: Tensor,
  [q, k, v]: readonly [Tensor, Tensor, Tensor],
  L: string,
  d: EncoderDims,
  mask?: Tensor,
): Tensor {
  const [b, t] = h.shape as [number, number, number];
  let scores = matmul(q, transpose(k, [0, 1, 3, 2]));
  if (mask) scores = add(scores, mask);
  const ctx = matmul(softmax(scores, -1), v);
  let x = reshape(transpose(ctx, [0, 2, 1, 3]), [b, t, d.hidden]);
  h = add(h, dense(p, x, `${L}.self_attn.out_proj`, d.hidden, d.hidden, d));
  x = p.layerNorm(h, `${L}.layer_norm2`, d.hidden, d.eps);
  x = dense(
    p,
    d.act(dense(p, x, `${L}.mlp.fc1`, d.hidden, d.inter, d)),
    `${L}.mlp.fc2`,
    d.inter,
    d.hidden,
    d,
  );
  return add(h, x);
}

interface EncoderResult {
  /** Hidden states of every token after the last layer. */
  readonly hidden: Tensor;
  /** [B, D]: the last layer's output at `poolRow` alone, when asked for. */
  readonly pooledRow?: Tensor;
}

/** Row `pos[b]` of each batch item of x [B, T, ...rest] -> [B, ...rest], via one flat Gather. */
function rowsAt(x: Tensor, pos: Tensor): Tensor {
  const [b, t, ...rest] = x.shape as [number, number, ...number[]];
  const g = x.graph;
  const rowStart = g.constant(
    BigInt64Array.from({ length: b }, (_, i) => BigInt(i * t)),
    [b],
    { name: 'row_start' },
  );
  const flat = g.emit('Add', [pos, rowStart], { outputs: [{ shape: [b], dtype: 'int64' }] })[0]!;
  return gather(reshape(x, [b * t, ...rest]), flat, 0);
}

/**
 * Pre-LN transformer encoder of HF CLIPEncoder; `mask` is an additive [T, T] attention mask.
 * With `poolRow` (one row for every item, or an int64 [B] tensor of one row per item), the last
 * layer is also built for that query row alone (keys and values still come from every token): a
 * pooled output then skips the last layer's out_proj and MLP for the other rows (~6% of a 12-layer
 * tower's work). The full last layer stays in the graph for `hidden`, and serialisation drops it
 * when only the pooled row is fetched.
 */
function encoder(
  p: Params,
  h: Tensor,
  prefix: string,
  d: EncoderDims,
  options: { mask?: Tensor; poolRow?: number | Tensor } = {},
): EncoderResult {
  const [b, t, D] = h.shape as [number, number, number];
  if (!Number.isInteger(D / d.heads))
    throw new GraphError(`CLIP: hidden ${D} is not divisible by ${d.heads} heads`);
  const { mask, poolRow } = options;
  let pooledRow: Tensor | undefined;
  for (let i = 0; i < d.layers; i++) {
    const L = `${prefix}.layers.${i}`;
    const qkv = selfAttentionInputs(p, p.layerNorm(h, `${L}.layer_norm1`, D, d.eps), L, d);
    if (i === d.layers - 1 && typeof poolRow === 'object') {
      const [q, k, v] = qkv;
      const hd = D / d.heads;
      // q [B, heads, T, hd] -> the pooled token's [B, heads, 1, hd]; its row of the mask -> [B, 1, 1, T].
      const qRow = transpose(
        reshape(rowsAt(transpose(q, [0, 2, 1, 3]), poolRow), [b, 1, d.heads, hd]),
        [0, 2, 1, 3],
      );
      const maskRow = mask && reshape(gather(mask, poolRow, 0), [b, 1, 1, t]);
      const row = layerTail(p, reshape(rowsAt(h, poolRow), [b, 1, D]), [qRow, k, v], L, d, maskRow);
      pooledRow = reshape(row, [b, D]);
    } else if (i === d.layers - 1 && typeof poolRow === 'number') {
      if (!Number.isInteger(poolRow) || poolRow < 0 || poolRow >= t)
        throw new GraphError(`CLIP: pooled row ${poolRow} is outside ${t} tokens`);
      const pick = (x: Tensor, axis: number) =>
        slice(x, { starts: [poolRow], ends: [poolRow + 1], axes: [axis] });
      const [q, k, v] = qkv;
      const row = layerTail(p, pick(h, 1), [pick(q, 2), k, v], L, d, mask && pick(mask, 0));
      pooledRow = reshape(row, [b, D]);
    }
    h = layerTail(p, h, qkv, L, d, mask);
  }
  return pooledRow ? { hidden: h, pooledRow } : { hidden: h };
}

export interface VisionOutputs {
  readonly lastHidden: Tensor;
  /** post_layernorm of the class token. */
  readonly pooled: Tensor;
  /** visual_projection(pooled): [B, projection_dim], not normalised. */
  readonly embeds: Tensor;
}

/**
 * Patch and position embeddings of CLIP-normalised pixels [B, 3, S, S] (the caller has checked the
 * shape): [B, 1 + patches, D], class token first, before pre_layrnorm.
 */
function visionEmbeddings(p: Params, pixels: Tensor, c: ClipConfig['vision_config']): Tensor {
  const b = pixels.shape[0]!;
  const d = c.hidden_size;
  const P = c.patch_size;
  const G = c.image_size / P;
  if (!Number.isInteger(G))
    throw new GraphError(`CLIP vision: image_size ${c.image_size} is not a multiple of patch_size ${P}`);
  const np = G * G;
  // The stride-P patch convolution as one MatMul over flattened patches (the conv weight
  // [D, 3, P, P] read as [D, 3*P*P]): the same sums, but its VJP is a MatMul too, where a strided
  // Conv's would be a ConvTranspose (3% of a 128x128 generation step on CPU).
  const patchW = p.derived('vision_model.embeddings.patch_embedding.weight_2d', [d, 3 * P * P], () =>
    p.array('vision_model.embeddings.patch_embedding.weight', [d, 3, P, P]),
  );
  const patchRows = transpose(reshape(pixels, [b, 3, G, P, G, P]), [0, 2, 4, 1, 3, 5]);
  const tokens = linear(reshape(patchRows, [b, np, 3 * P * P]), patchW);
  const cls = expand(reshape(p.get('vision_model.embeddings.class_embedding', [d]), [1, 1, d]), [b, 1, d]);
  return add(
    concat([cls, tokens], 1),
    p.get('vision_model.embeddings.position_embedding.weight', [np + 1, d]),
  );
}

/** Checks that pixels are [B, 3, S, S] for this tower. */
function checkPixels(pixels: Tensor, c: ClipConfig['vision_config']): void {
  const [, ch, hgt, wid] = pixels.shape as [number, number, number, number];
  if (pixels.shape.length !== 4 || ch !== 3 || hgt !== c.image_size || wid !== c.image_size) {
    throw new GraphError(
      `CLIP vision: pixels must be [B, 3, ${c.image_size}, ${c.image_size}], got [${pixels.shape}]`,
    );
  }
}

export interface ClipVisionOptions {
  /**
   * 'int8': the encoder layers' linear maps (q/k/v, out_proj, fc1, fc2: ~96% of the FLOPs) run as
   * int8 GEMMs with weights quantised per output channel and activations per tensor at run time
   * (ops/int8.ts). For inference only: grad() through them throws. @defaultValue 'fp32'
   */
  readonly precision?: 'fp32' | 'int8';
}

/** pixels: [B, 3, S, S], already CLIP-normalised. */
export function clipVision(
  g: Graph,
  pixels: Tensor,
  config: ClipConfig,
  weights: WeightSource,
  options: ClipVisionOptions = {},
): VisionOutputs {
  const precision = options.precision ?? 'fp32';
  const c = config.vision_config;
  checkPixels(pixels, c);
  const p = paramsFor(g, weights);
  const d = c.hidden_size;
  let h = visionEmbeddings(p, pixels, c);
  h = p.layerNorm(h, 'vision_model.pre_layrnorm', d, c.layer_norm_eps);
  const enc = encoder(
    p,
    h,
    'vision_model.encoder',
    {
      hidden: d,
      inter: c.intermediate_size,
      layers: c.num_hidden_layers,
      heads: c.num_attention_heads,
      eps: c.layer_norm_eps,
      act: activation(c.hidden_act),
      linear: precision === 'int8' ? quantizedLinear : linear,
    },
    { poolRow: 0 },
  );
  if (!enc.pooledRow) throw new GraphError('CLIP vision: internal error, no pooled row');
  const pooled = p.layerNorm(enc.pooledRow, 'vision_model.post_layernorm', d, c.layer_norm_eps);
  const embeds = p.linear(pooled, 'visual_projection', d, config.projection_dim, false);
  return { lastHidden: enc.hidden, pooled, embeds };
}

export interface TextOutputs {
  readonly lastHidden: Tensor;
  /** final hidden state at the end-of-text token. */
  readonly pooled: Tensor;
  /** text_projection(pooled): [B, projection_dim], not normalised. */
  readonly embeds: Tensor;
}

/**
 * ids: int64 [B, T] with T <= max_position_embeddings. Pools at the first end-of-text token
 * (eos_token_id); for the legacy config value 2, at the largest id, as Hugging Face does (the
 * real vocabulary's end token 49407 is its largest id, so both rules agree on real prompts).
 */
export function clipText(g: Graph, ids: Tensor, config: ClipConfig, weights: WeightSource): TextOutputs {
  const c = config.text_config;
  if (ids.shape.length !== 2 || ids.dtype !== 'int64')
    throw new GraphError(`CLIP text: ids must be int64 [B, T], got ${ids.dtype} [${ids.shape}]`);
  const [b, t] = ids.shape as [number, number];
  if (t > c.max_position_embeddings)
    throw new GraphError(`CLIP text: ${t} tokens exceed the context of ${c.max_position_embeddings}`);
  const p = paramsFor(g, weights);
  const d = c.hidden_size;
  const tok = gather(p.get('text_model.embeddings.token_embedding.weight', [c.vocab_size, d]), ids, 0);
  const posAll = p.get('text_model.embeddings.position_embedding.weight', [c.max_position_embeddings, d]);
  const pos =
    t === c.max_position_embeddings ? posAll : gather(posAll, g.int64s([...Array(t).keys()], 'pos_ids'), 0);
  const h = add(tok, pos);
  const mask = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) mask[i * t + j] = -1e9;
  // Position of the pooling token per row (it depends on the ids alone, so it is known before the
  // encoder, whose last layer then runs for that row only).
  const key =
    c.eos_token_id === 2
      ? cast(ids, 'float32')
      : cast(
          equal(ids, g.constant(new BigInt64Array([BigInt(c.eos_token_id)]), [], { name: 'eos_id' })),
          'float32',
        );
  const poolAt = g.emit('ArgMax', [key], {
    attrs: { axis: { type: 'int', value: 1 }, keepdims: { type: 'int', value: 0 } },
    outputs: [{ shape: [b], dtype: 'int64' }],
  })[0]!;
  const enc = encoder(
    p,
    h,
    'text_model.encoder',
    {
      hidden: d,
      inter: c.intermediate_size,
      layers: c.num_hidden_layers,
      heads: c.num_attention_heads,
      eps: c.layer_norm_eps,
      act: activation(c.hidden_act),
      linear,
    },
    { mask: g.constant(mask, [t, t], { name: 'causal_mask' }), poolRow: poolAt },
  );
  if (!enc.pooledRow) throw new GraphError('CLIP text: internal error, no pooled row');
  const lastHidden = p.layerNorm(enc.hidden, 'text_model.final_layer_norm', d, c.layer_norm_eps);
  const pooled = p.layerNorm(enc.pooledRow, 'text_model.final_layer_norm', d, c.layer_norm_eps);
  const embeds = p.linear(pooled, 'text_projection', d, config.projection_dim, false);
  return { lastHidden, pooled, embeds };
}
