// CLIP's two towers as graphs built from Hugging Face-named weights (openai/clip-vit-base-patch32
// layout): the ViT image encoder (differentiable w.r.t. pixels, for generation) and the causal
// text encoder. Both return unnormalised embeddings; callers L2-normalise.
import { type Graph, GraphError, type Tensor } from '../graph/graph.js';
import { conv2d } from '../graph/ops/conv.js';
import { add, cast, equal, gelu, mul, quickGelu } from '../graph/ops/elementwise.js';
import { matmul } from '../graph/ops/matmul.js';
import { softmax } from '../graph/ops/norm.js';
import type { ClipConfig } from './config.js';

export type { ClipConfig } from './config.js';

import { type Params, paramsFor, type WeightSource } from './params.js';

export type { WeightSource } from './params.js';

import { concat, expand, gather, reshape, transpose } from '../graph/ops/shape.js';

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
}

/** Pre-LN transformer encoder of HF CLIPEncoder; `mask` is an additive [T, T] attention mask. */
function encoder(p: Params, h: Tensor, prefix: string, d: EncoderDims, mask?: Tensor): Tensor {
  const [b, t] = h.shape as [number, number, number];
  const hd = d.hidden / d.heads;
  if (!Number.isInteger(hd))
    throw new GraphError(`CLIP: hidden ${d.hidden} is not divisible by ${d.heads} heads`);
  const heads = (x: Tensor) => transpose(reshape(x, [b, t, d.heads, hd]), [0, 2, 1, 3]);
  for (let i = 0; i < d.layers; i++) {
    const L = `${prefix}.layers.${i}`;
    let x = p.layerNorm(h, `${L}.layer_norm1`, d.hidden, d.eps);
    const q = heads(mul(p.linear(x, `${L}.self_attn.q_proj`, d.hidden, d.hidden), hd ** -0.5));
    const k = heads(p.linear(x, `${L}.self_attn.k_proj`, d.hidden, d.hidden));
    const v = heads(p.linear(x, `${L}.self_attn.v_proj`, d.hidden, d.hidden));
    let scores = matmul(q, transpose(k, [0, 1, 3, 2]));
    if (mask) scores = add(scores, mask);
    const ctx = matmul(softmax(scores, -1), v);
    x = reshape(transpose(ctx, [0, 2, 1, 3]), [b, t, d.hidden]);
    h = add(h, p.linear(x, `${L}.self_attn.out_proj`, d.hidden, d.hidden));
    x = p.layerNorm(h, `${L}.layer_norm2`, d.hidden, d.eps);
    x = p.linear(
      quickGelu(p.linear(x, `${L}.mlp.fc1`, d.hidden, d.inter)),
      `${L}.mlp.fc2`,
      d.inter,
      d.hidden,
    );
    h = add(h, x);
  }
  return h;
}

export interface VisionOutputs {
  readonly lastHidden: Tensor;
  /** post_layernorm of the class token. */
  readonly pooled: Tensor;
  /** visual_projection(pooled): [B, projection_dim], not normalised. */
  readonly embeds: Tensor;
}

/** pixels: [B, 3, S, S], already CLIP-normalised. */
export function clipVision(
  g: Graph,
  pixels: Tensor,
  config: ClipConfig,
  weights: WeightSource,
): VisionOutputs {
  const c = config.vision_config;
  const [b, ch, hgt, wid] = pixels.shape as [number, number, number, number];
  if (pixels.shape.length !== 4 || ch !== 3 || hgt !== c.image_size || wid !== c.image_size) {
    throw new GraphError(
      `CLIP vision: pixels must be [B, 3, ${c.image_size}, ${c.image_size}], got [${pixels.shape}]`,
    );
  }
  const p = paramsFor(g, weights);
  const d = c.hidden_size;
  const np = (c.image_size / c.patch_size) ** 2;
  const patchW = p.get('vision_model.embeddings.patch_embedding.weight', [d, 3, c.patch_size, c.patch_size]);
  const patches = conv2d(pixels, patchW, undefined, { strides: [c.patch_size, c.patch_size] });
  const tokens = transpose(reshape(patches, [b, d, np]), [0, 2, 1]);
  const cls = expand(reshape(p.get('vision_model.embeddings.class_embedding', [d]), [1, 1, d]), [b, 1, d]);
  let h = add(
    concat([cls, tokens], 1),
    p.get('vision_model.embeddings.position_embedding.weight', [np + 1, d]),
  );
  h = p.layerNorm(h, 'vision_model.pre_layrnorm', d, c.layer_norm_eps);
  h = encoder(p, h, 'vision_model.encoder', {
    hidden: d,
    inter: c.intermediate_size,
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    eps: c.layer_norm_eps,
    act: activation(c.hidden_act),
  });
  const first = reshape(gather(h, g.constant(new BigInt64Array([0n]), [1], { name: 'cls_index' }), 1), [
    b,
    d,
  ]);
  const pooled = p.layerNorm(first, 'vision_model.post_layernorm', d, c.layer_norm_eps);
  const embeds = p.linear(pooled, 'visual_projection', d, config.projection_dim, false);
  return { lastHidden: h, pooled, embeds };
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
  let h = add(tok, pos);
  const mask = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) mask[i * t + j] = -1e9;
  h = encoder(
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
    },
    g.constant(mask, [t, t], { name: 'causal_mask' }),
  );
  h = p.layerNorm(h, 'text_model.final_layer_norm', d, c.layer_norm_eps);
  // Position of the pooling token per row, then a flat gather from [B*T, d].
  const key =
    c.eos_token_id === 2
      ? cast(ids, 'float32')
      : cast(
          equal(ids, g.constant(new BigInt64Array([BigInt(c.eos_token_id)]), [], { name: 'eos_id' })),
          'float32',
        );
  const pos1 = g.emit('ArgMax', [key], {
    attrs: { axis: { type: 'int', value: 1 }, keepdims: { type: 'int', value: 0 } },
    outputs: [{ shape: [b], dtype: 'int64' }],
  })[0]!;
  const rowStart = g.constant(
    BigInt64Array.from({ length: b }, (_, i) => BigInt(i * t)),
    [b],
    { name: 'row_start' },
  );
  const flatIdx = g.emit('Add', [pos1, rowStart], { outputs: [{ shape: [b], dtype: 'int64' }] })[0]!;
  const pooled = gather(reshape(h, [b * t, d]), flatIdx, 0);
  const embeds = p.linear(pooled, 'text_projection', d, config.projection_dim, false);
  return { lastHidden: h, pooled, embeds };
}
