// Prompt embeddings for generation: text through CLIP's text tower, image prompts through its image
// tower, both L2-normalised. Sessions take one row at a time (prompts are few) and are built on
// first use; the tokenizer is passed in, so this module does not care where ids come from.
import { Graph, type Tensor } from '../graph/graph.js';
import { mul, sub } from '../graph/ops/elementwise.js';
import { serialize } from '../graph/serialize.js';
import { type ClipConfig, clipText, clipVision } from '../models/clip.js';
import type { WeightSource } from '../models/params.js';
import { ModelSession, type SessionOptions } from '../onnx/session.js';
import { CLIP_MEAN, CLIP_STD } from './step-graph.js';

/** Texts -> int64 ids [texts.length, contextLength] (CLIP's start, tokens, end, padding). */
export type Tokenize = (texts: readonly string[]) => BigInt64Array;

export interface ClipEmbedderOptions {
  readonly tokenize: Tokenize;
  /** Ids per row the tokenizer returns. @defaultValue 77 */
  readonly contextLength?: number;
  readonly session?: SessionOptions;
}

/** Scales each row of `v` ([rows, d]) to unit length, in place; returns it. */
export function normalizeRows(v: Float32Array, d: number): Float32Array {
  for (let r = 0; r < v.length / d; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += v[r * d + i]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let i = 0; i < d; i++) v[r * d + i]! *= inv;
  }
  return v;
}

export class ClipEmbedder {
  private text: Promise<ModelSession> | undefined;
  private image: Promise<ModelSession> | undefined;
  private readonly contextLength: number;

  constructor(
    readonly clip: { readonly config: ClipConfig; readonly weights: WeightSource },
    private readonly options: ClipEmbedderOptions,
  ) {
    this.contextLength = options.contextLength ?? 77;
  }

  /** Unit embeddings [D] of each text. */
  async embedTexts(texts: readonly string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const t = this.contextLength;
    const ids = this.options.tokenize(texts);
    if (ids.length !== texts.length * t) {
      throw new RangeError(`tokenize returned ${ids.length} ids for ${texts.length} texts of ${t}`);
    }
    this.text ??= this.build((g) => {
      const input = g.input('ids', [1, t], 'int64');
      return clipText(g, input, this.clip.config, this.clip.weights).embeds;
    });
    const session = await this.text;
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i++) {
      const r = await session.run({ ids: { data: ids.slice(i * t, (i + 1) * t), dims: [1, t] } });
      out.push(normalizeRows(Float32Array.from(r.y!.data as Float32Array), this.clip.config.projection_dim));
    }
    return out;
  }

  /** Unit embeddings [D] of images given as planar [3, S, S] pixels in [0, 1] (S = CLIP's image size). */
  async embedImages(images: readonly Float32Array[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    const s = this.clip.config.vision_config.image_size;
    this.image ??= this.build((g) => {
      const x = g.input('pixels', [1, 3, s, s]);
      const normed = mul(
        sub(x, g.constant(Float32Array.from(CLIP_MEAN), [1, 3, 1, 1])),
        g.constant(
          Float32Array.from(CLIP_STD, (v) => 1 / v),
          [1, 3, 1, 1],
        ),
      );
      return clipVision(g, normed, this.clip.config, this.clip.weights).embeds;
    });
    const session = await this.image;
    const out: Float32Array[] = [];
    for (const pixels of images) {
      if (pixels.length !== 3 * s * s)
        throw new RangeError(`image prompt has ${pixels.length} values, not 3x${s}x${s}`);
      const r = await session.run({ pixels: { data: pixels, dims: [1, 3, s, s] } });
      out.push(normalizeRows(Float32Array.from(r.y!.data as Float32Array), this.clip.config.projection_dim));
    }
    return out;
  }

  async release(): Promise<void> {
    const sessions = [this.text, this.image];
    this.text = undefined;
    this.image = undefined;
    for (const s of sessions) if (s) await (await s).release();
  }

  private build(body: (g: Graph) => Tensor): Promise<ModelSession> {
    const g = new Graph();
    const y = body(g);
    return ModelSession.create(serialize(g, { outputs: { y } }).bytes, this.options.session ?? {});
  }
}
