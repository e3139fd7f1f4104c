// The VQGAN of taming-transformers (vqgan_imagenet_f16_16384 architecture) as graphs from its
// state_dict names: encoder (+quant_conv) for init images, straight-through quantizer, and
// post_quant_conv + decoder for generation. Decoder output is in about [-1, 1], as in taming.
import type { Graph, Tensor } from '../graph/graph.js';
import { GraphError } from '../graph/graph.js';
import { upsampleConv3x3 } from '../graph/ops/conv.js';
import { add, mul, silu } from '../graph/ops/elementwise.js';
import { matmul } from '../graph/ops/matmul.js';
import { softmax } from '../graph/ops/norm.js';
import { vectorQuantize } from '../graph/ops/quantize.js';
import { pad, reshape, transpose } from '../graph/ops/shape.js';
import type { VqganConfig } from './config.js';
import { type Params, paramsFor, type WeightSource } from './params.js';

export type { VqganConfig } from './config.js';

/** Downsampling factor of the model (16 for f16). */
export const vqganFactor = (c: VqganConfig): number => 2 ** (c.ddconfig.ch_mult.length - 1);

const gn = (p: Params, x: Tensor, prefix: string, c: number) => p.groupNorm(x, prefix, c, 32, 1e-6);

function resnetBlock(p: Params, x: Tensor, prefix: string, cin: number, cout: number): Tensor {
  let h = p.conv(silu(gn(p, x, `${prefix}.norm1`, cin)), `${prefix}.conv1`, cin, cout, 3);
  h = p.conv(silu(gn(p, h, `${prefix}.norm2`, cout)), `${prefix}.conv2`, cout, cout, 3);
  const skip = cin === cout ? x : p.conv(x, `${prefix}.nin_shortcut`, cin, cout, 1);
  return add(skip, h);
}

function attnBlock(p: Params, x: Tensor, prefix: string, c: number): Tensor {
  const [b, , hh, ww] = x.shape as [number, number, number, number];
  const n = hh * ww;
  const h = gn(p, x, `${prefix}.norm`, c);
  const q = transpose(reshape(p.conv(h, `${prefix}.q`, c, c, 1), [b, c, n]), [0, 2, 1]); // [b, n, c]
  const k = reshape(p.conv(h, `${prefix}.k`, c, c, 1), [b, c, n]); // [b, c, n]
  const v = reshape(p.conv(h, `${prefix}.v`, c, c, 1), [b, c, n]); // [b, c, n]
  const attn = softmax(mul(matmul(q, k), c ** -0.5), 2); // [b, n(q), n(k)]
  const out = reshape(matmul(v, transpose(attn, [0, 2, 1])), [b, c, hh, ww]); // [b, c, n(q)]
  return add(x, p.conv(out, `${prefix}.proj_out`, c, c, 1));
}

function checkLatent(c: VqganConfig, z: Tensor, channels: number, what: string): void {
  if (z.shape.length !== 4 || z.shape[1] !== channels) {
    throw new GraphError(`VQGAN ${what}: expected [B, ${channels}, H, W], got [${z.shape}]`);
  }
  if (c.ddconfig.ch % 32 !== 0)
    throw new GraphError(`VQGAN: ch ${c.ddconfig.ch} must be a multiple of 32 (GroupNorm(32))`);
}

/** post_quant_conv + decoder: z [B, embed_dim, h, w] -> image [B, out_ch, h*f, w*f] in about [-1, 1]. */
export function vqganDecode(g: Graph, z: Tensor, config: VqganConfig, weights: WeightSource): Tensor {
  const d = config.ddconfig;
  checkLatent(config, z, config.embed_dim, 'decoder');
  const p = paramsFor(g, weights);
  const levels = d.ch_mult.length;
  let blockIn = d.ch * d.ch_mult[levels - 1]!;
  // Attention placement follows the configured training resolution, as taming builds it.
  let curRes = d.resolution / 2 ** (levels - 1);
  let h = p.conv(z, 'post_quant_conv', config.embed_dim, d.z_channels, 1);
  h = p.conv(h, 'decoder.conv_in', d.z_channels, blockIn, 3);
  h = resnetBlock(p, h, 'decoder.mid.block_1', blockIn, blockIn);
  h = attnBlock(p, h, 'decoder.mid.attn_1', blockIn);
  h = resnetBlock(p, h, 'decoder.mid.block_2', blockIn, blockIn);
  for (let level = levels - 1; level >= 0; level--) {
    const blockOut = d.ch * d.ch_mult[level]!;
    for (let i = 0; i <= d.num_res_blocks; i++) {
      h = resnetBlock(p, h, `decoder.up.${level}.block.${i}`, blockIn, blockOut);
      blockIn = blockOut;
      if (d.attn_resolutions.includes(curRes)) h = attnBlock(p, h, `decoder.up.${level}.attn.${i}`, blockIn);
    }
    if (level !== 0) {
      const up = `decoder.up.${level}.upsample.conv`;
      // taming's Upsample (nearest x2, then the 3x3 conv) as one op that skips the upsampled tensor.
      h = upsampleConv3x3(h, p.get(`${up}.weight`, [blockIn, blockIn, 3, 3]), p.get(`${up}.bias`, [blockIn]));
      curRes *= 2;
    }
  }
  h = silu(gn(p, h, 'decoder.norm_out', blockIn));
  return p.conv(h, 'decoder.conv_out', blockIn, d.out_ch, 3);
}

/** encoder + quant_conv: image [B, in_channels, H, W] in [-1, 1] -> z [B, embed_dim, H/f, W/f] (not quantised). */
export function vqganEncode(g: Graph, x: Tensor, config: VqganConfig, weights: WeightSource): Tensor {
  const d = config.ddconfig;
  checkLatent(config, x, d.in_channels, 'encoder');
  const f = vqganFactor(config);
  if (x.shape[2]! % f !== 0 || x.shape[3]! % f !== 0) {
    throw new GraphError(`VQGAN encoder: image size ${x.shape[2]}x${x.shape[3]} is not a multiple of ${f}`);
  }
  const p = paramsFor(g, weights);
  const levels = d.ch_mult.length;
  const inMult = [1, ...d.ch_mult];
  let curRes = d.resolution;
  let h = p.conv(x, 'encoder.conv_in', d.in_channels, d.ch, 3);
  let blockIn = d.ch;
  for (let level = 0; level < levels; level++) {
    blockIn = d.ch * inMult[level]!;
    const blockOut = d.ch * d.ch_mult[level]!;
    for (let i = 0; i < d.num_res_blocks; i++) {
      h = resnetBlock(p, h, `encoder.down.${level}.block.${i}`, blockIn, blockOut);
      blockIn = blockOut;
      if (d.attn_resolutions.includes(curRes))
        h = attnBlock(p, h, `encoder.down.${level}.attn.${i}`, blockIn);
    }
    if (level !== levels - 1) {
      // taming pads (0, 1, 0, 1) then convolves 3x3 with stride 2 and no padding.
      h = p.conv(
        pad(h, [0, 0, 0, 0, 0, 0, 1, 1]),
        `encoder.down.${level}.downsample.conv`,
        blockIn,
        blockIn,
        3,
        2,
        [0, 0, 0, 0],
      );
      curRes /= 2;
    }
  }
  h = resnetBlock(p, h, 'encoder.mid.block_1', blockIn, blockIn);
  h = attnBlock(p, h, 'encoder.mid.attn_1', blockIn);
  h = resnetBlock(p, h, 'encoder.mid.block_2', blockIn, blockIn);
  h = silu(gn(p, h, 'encoder.norm_out', blockIn));
  const zc = d.double_z ? 2 * d.z_channels : d.z_channels;
  h = p.conv(h, 'encoder.conv_out', blockIn, zc, 3);
  return p.conv(h, 'quant_conv', d.z_channels, config.embed_dim, 1);
}

/** Straight-through quantisation with the model's codebook. */
export function vqganQuantize(
  g: Graph,
  z: Tensor,
  config: VqganConfig,
  weights: WeightSource,
): { quantized: Tensor; indices: Tensor } {
  const p = paramsFor(g, weights);
  return vectorQuantize(z, p.get('quantize.embedding.weight', [config.n_embed, config.embed_dim]));
}
