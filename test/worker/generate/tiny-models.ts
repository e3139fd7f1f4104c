// Tiny random-weight CLIP and VQGAN for the generation tests: the project's tiny configs and its
// random initialisation (models/random.ts), drawn lazily in memory (no files), plus a text embedder
// fed seeded token ids (the tests need embeddings, not real words).

import { ClipEmbedder } from '../../../src/worker/generate/embed.js';
import type { GenerateDeps } from '../../../src/worker/generate/loop.js';
import { Rng } from '../../../src/worker/generate/rng.js';
import {
  type ClipConfig,
  clipParameterShapes,
  type ParameterShapes,
  tinyClipConfig,
  tinyVqganConfig,
  type VqganConfig,
  vqganParameterShapes,
} from '../../../src/worker/models/config.js';
import type { WeightSource } from '../../../src/worker/models/params.js';
import { drawTensor, type InitExtras, initExtras, initFor } from '../../../src/worker/models/random.js';

export const TINY_VOCAB = 600;
export const TINY_BOS = 598;
export const TINY_EOS = 599;

export const tinyClip: ClipConfig = tinyClipConfig({
  vocabSize: TINY_VOCAB,
  bosTokenId: TINY_BOS,
  eosTokenId: TINY_EOS,
});
export const tinyVqgan: VqganConfig = tinyVqganConfig();

/**
 * Random weights drawn on first request, as models/random.ts draws them for the files it writes
 * (same per-name streams and inits), each array made once. `scales` multiplies chosen tensors.
 */
export class LazyRandomWeights implements WeightSource {
  private readonly shapes: Map<string, readonly number[]>;
  private readonly cache = new Map<string, Float32Array>();
  /** initFor's extras: a bias's init depends on the fan-in of the weight beside it. */
  private readonly extras: InitExtras;

  constructor(
    private readonly model: 'clip' | 'vqgan',
    shapes: ParameterShapes,
    private readonly seed: number,
    private readonly scales: Readonly<Record<string, number>> = {},
  ) {
    this.shapes = new Map(shapes);
    this.extras = initExtras(shapes);
  }

  get(name: string, expectedShape?: readonly number[]): Float32Array {
    const hit = this.cache.get(name);
    if (hit) return hit;
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`random ${this.model}: no tensor "${name}"`);
    if (expectedShape && expectedShape.join(',') !== shape.join(',')) {
      throw new Error(`random ${this.model}: "${name}" is [${shape}], expected [${expectedShape}]`);
    }
    const data = drawTensor(this.seed, name, shape, initFor(name, shape, this.model, this.extras));
    const scale = this.scales[name];
    if (scale !== undefined) for (let i = 0; i < data.length; i++) data[i]! *= scale;
    this.cache.set(name, data);
    return data;
  }
}

/** Seeded token ids per text: start id, a few ids from the text's hash, end id, end-id padding. */
export function tokenizeForTest(texts: readonly string[]): BigInt64Array {
  const t = 77;
  const out = new BigInt64Array(texts.length * t);
  texts.forEach((text, r) => {
    const rng = new Rng(7, 'tokens', text);
    const len = 2 + (text.length % 9);
    out.fill(BigInt(TINY_EOS), r * t, (r + 1) * t);
    out[r * t] = BigInt(TINY_BOS);
    for (let i = 1; i <= len; i++) out[r * t + i] = BigInt(rng.int(TINY_BOS));
    out[r * t + len + 1] = BigInt(TINY_EOS);
  });
  return out;
}

export interface TinyModels extends GenerateDeps {
  readonly embedder: ClipEmbedder;
}

/** Tiny CLIP + VQGAN with embedders; the scales multiply chosen tensors of either model. */
export function tinyModels(
  seed = 1,
  vqganScales: Readonly<Record<string, number>> = {},
  clipScales: Readonly<Record<string, number>> = {},
): TinyModels {
  const clip = {
    config: tinyClip,
    weights: new LazyRandomWeights('clip', clipParameterShapes(tinyClip), seed, clipScales),
  };
  const vqgan = {
    config: tinyVqgan,
    weights: new LazyRandomWeights('vqgan', vqganParameterShapes(tinyVqgan), seed + 1000, vqganScales),
  };
  const embedder = new ClipEmbedder(clip, { tokenize: tokenizeForTest });
  return {
    clip,
    vqgan,
    embedder,
    embedTexts: (texts) => embedder.embedTexts(texts),
    embedImages: (pixels) => embedder.embedImages(pixels),
  };
}
