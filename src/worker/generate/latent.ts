// Where a generation's latent starts: random codebook entries from the seed (as VQGAN-CLIP does),
// or an init image through the VQGAN encoder and quantiser. The encoder graph is built per call and
// released: init images are occasional, and the encoder is as large as the decoder.
import { Graph } from '../graph/graph.js';
import { add, mul } from '../graph/ops/elementwise.js';
import { serialize } from '../graph/serialize.js';
import type { WeightSource } from '../models/params.js';
import { type VqganConfig, vqganEncode, vqganFactor, vqganQuantize } from '../models/vqgan.js';
import { ModelSession, type SessionOptions } from '../onnx/session.js';
import { Rng } from './rng.js';

/** A latent as saved with a generation: [1, embed_dim, h, w]. */
export interface Latent {
  readonly data: Float32Array;
  readonly dims: readonly [number, number, number, number];
}

export function latentDims(
  config: VqganConfig,
  width: number,
  height: number,
): [number, number, number, number] {
  const f = vqganFactor(config);
  return [1, config.embed_dim, height / f, width / f];
}

/**
 * A random latent made of codebook rows picked uniformly by the seed, one per position (VQGAN-CLIP's
 * `one_hot(randint(n_embed)) @ codebook`). It starts on the codebook, so the straight-through
 * quantiser is the identity at step 0 and the first image is already a decoder image, not noise
 * the decoder never saw.
 */
export function randomLatent(
  vqgan: { readonly config: VqganConfig; readonly weights: WeightSource },
  width: number,
  height: number,
  seed: number,
): Latent {
  const { embed_dim: d, n_embed: k } = vqgan.config;
  const dims = latentDims(vqgan.config, width, height);
  const positions = dims[2] * dims[3];
  const codebook = vqgan.weights.get('quantize.embedding.weight', [k, d]);
  const rng = new Rng(seed, 'init-latent');
  const data = new Float32Array(d * positions);
  for (let p = 0; p < positions; p++) {
    const row = rng.int(k);
    for (let c = 0; c < d; c++) data[c * positions + p] = codebook[row * d + c]!;
  }
  return { data, dims };
}

/** Encodes planar [3, H, W] pixels in [0, 1] to a quantised latent with the VQGAN encoder. */
export async function encodeLatent(
  vqgan: { readonly config: VqganConfig; readonly weights: WeightSource },
  pixels: Float32Array,
  width: number,
  height: number,
  options: SessionOptions = {},
): Promise<Latent> {
  const g = new Graph();
  const x = g.input('pixels', [1, 3, height, width]);
  const z = vqganEncode(g, add(mul(x, 2), -1), vqgan.config, vqgan.weights);
  const { quantized } = vqganQuantize(g, z, vqgan.config, vqgan.weights);
  const session = await ModelSession.create(serialize(g, { outputs: { z: quantized } }).bytes, options);
  try {
    const out = await session.run({ pixels: { data: pixels, dims: [1, 3, height, width] } });
    return { data: out.z!.data as Float32Array, dims: latentDims(vqgan.config, width, height) };
  } finally {
    await session.release();
  }
}
