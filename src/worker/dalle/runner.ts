// Runs minDALL-E's prefill and decode-step graphs (transformer.ts) for N candidates that share one
// prompt, and owns the fixed-size key/value cache between steps. The graphs return only the new
// keys and values; they are written into the cache here, in place, so a step never copies the cache
// (at full size it is 1.3 GB for 8 candidates).
import { Graph, type Tensor } from '../graph/graph.js';
import { serialize } from '../graph/serialize.js';
import { type HostTensor, ModelSession, type SessionOptions } from '../onnx/session.js';
import type { DalleConfig } from './config.js';
import {
  type BuildOptions,
  buildDecodeStep,
  buildFullForward,
  buildPrefill,
  cacheKeyName,
  cacheLength,
  cacheValueName,
  type DalleWeights,
  type DecodeGraph,
  type PrefillGraph,
  presentKeyName,
  presentValueName,
} from './transformer.js';

/** A graph's outputs by the names the runner fetches. */
function named(g: PrefillGraph | DecodeGraph): Record<string, Tensor> {
  const out: Record<string, Tensor> = { logits: g.logits };
  g.presentKeys.forEach((t, i) => {
    out[presentKeyName(i)] = t;
  });
  g.presentValues.forEach((t, i) => {
    out[presentValueName(i)] = t;
  });
  return out;
}

export interface DalleRunnerOptions {
  /** Candidates decoded together (the decode graph's batch). @defaultValue 1 */
  readonly candidates?: number;
  /** @defaultValue {} */
  readonly session?: SessionOptions;
  /** How the decode graph is built (transformer.ts BuildOptions). @defaultValue {} */
  readonly build?: BuildOptions;
}

function weightFeeds(weights: DalleWeights, names: readonly string[]): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const name of names) {
    const w = weights.get(name);
    if (w) feeds[name] = w;
  }
  return feeds;
}

export class DalleRunner {
  /** Per layer: keys [N, H, hd, S] and values [N, H, S, hd]. */
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  private readonly prefillWeights: Record<string, HostTensor>;
  private readonly decodeWeights: Record<string, HostTensor>;
  /** Image tokens fed so far (the next decode step's position). */
  private fed = -1;

  private constructor(
    readonly config: DalleConfig,
    readonly candidates: number,
    private readonly prefillSession: ModelSession,
    private readonly decodeSession: ModelSession,
    weights: DalleWeights,
  ) {
    const c = config;
    const hd = c.embed_dim / c.n_heads;
    const size = candidates * c.n_heads * hd * cacheLength(c);
    this.keys = Array.from({ length: c.n_layers }, () => new Float32Array(size));
    this.values = Array.from({ length: c.n_layers }, () => new Float32Array(size));
    this.prefillWeights = weightFeeds(weights, prefillSession.inputNames);
    this.decodeWeights = weightFeeds(weights, decodeSession.inputNames);
  }

  static async create(
    config: DalleConfig,
    weights: DalleWeights,
    options: DalleRunnerOptions = {},
  ): Promise<DalleRunner> {
    const n = options.candidates ?? 1;
    if (!Number.isInteger(n) || n < 1)
      throw new RangeError(`candidates must be a positive integer, got ${n}`);
    const sessionOptions = options.session ?? {};
    // The prompt is the same for every candidate: prefill runs once at batch 1 and its cache is
    // copied to each candidate's rows.
    const pg = new Graph();
    const prefill = buildPrefill(pg, config, weights, 1, options.build);
    const dg = new Graph();
    const decode = buildDecodeStep(dg, config, weights, n, options.build);
    const prefillBytes = serialize(pg, { outputs: named(prefill), name: 'mindalle_prefill' }).bytes;
    const decodeBytes = serialize(dg, { outputs: named(decode), name: 'mindalle_decode' }).bytes;
    const [ps, ds] = await Promise.all([
      ModelSession.create(prefillBytes, sessionOptions),
      ModelSession.create(decodeBytes, sessionOptions),
    ]);
    return new DalleRunner(config, n, ps, ds, weights);
  }

  /** Image tokens fed since the last prefill. */
  get position(): number {
    return Math.max(0, this.fed);
  }

  /**
   * Runs the prompt (`text`: ctx_len_txt ids, already padded) and fills the cache's text slots for
   * every candidate. Returns the first image token's logits, [vocab_img] (the same for all).
   */
  async prefill(text: ArrayLike<number>): Promise<Float32Array> {
    const c = this.config;
    if (text.length !== c.ctx_len_txt)
      throw new RangeError(`prefill needs ${c.ctx_len_txt} text ids, got ${text.length}`);
    const ids = BigInt64Array.from(Array.from(text), (v) => BigInt(v));
    const out = await this.prefillSession.run({
      ...this.prefillWeights,
      text: { data: ids, dims: [1, c.ctx_len_txt] },
    });
    const heads = c.n_heads;
    const hd = c.embed_dim / heads;
    const s = cacheLength(c);
    const t = c.ctx_len_txt;
    for (let l = 0; l < c.n_layers; l++) {
      const pk = out[presentKeyName(l)]!.data as Float32Array; // [1, H, hd, T]
      const pv = out[presentValueName(l)]!.data as Float32Array; // [1, H, T, hd]
      const K = this.keys[l]!;
      const V = this.values[l]!;
      K.fill(0);
      V.fill(0);
      for (let n = 0; n < this.candidates; n++) {
        for (let h = 0; h < heads; h++) {
          for (let d = 0; d < hd; d++) {
            const src = (h * hd + d) * t;
            K.set(pk.subarray(src, src + t), ((n * heads + h) * hd + d) * s);
          }
          V.set(pv.subarray(h * t * hd, (h + 1) * t * hd), (n * heads + h) * s * hd);
        }
      }
    }
    this.fed = 0;
    return out.logits!.data as Float32Array;
  }

  /**
   * Feeds image token `position` (one id per candidate) and returns the logits of the next one,
   * [candidates, vocab_img]. Positions must follow each other from 0 after a prefill.
   */
  async step(tokens: ArrayLike<number>): Promise<Float32Array> {
    const c = this.config;
    if (this.fed < 0) throw new Error('minDALL-E: step before prefill');
    const position = this.fed;
    if (position >= c.ctx_len_img - 1)
      throw new RangeError(`minDALL-E: all ${c.ctx_len_img} image tokens are already decoded`);
    if (tokens.length !== this.candidates)
      throw new RangeError(`step needs ${this.candidates} tokens, got ${tokens.length}`);
    const heads = c.n_heads;
    const hd = c.embed_dim / heads;
    const s = cacheLength(c);
    const n = this.candidates;
    const feeds: Record<string, HostTensor> = {
      ...this.decodeWeights,
      token: { data: BigInt64Array.from(Array.from(tokens), (v) => BigInt(v)), dims: [n, 1] },
      position: { data: new BigInt64Array([BigInt(position)]), dims: [1] },
    };
    for (let l = 0; l < c.n_layers; l++) {
      feeds[cacheKeyName(l)] = { data: this.keys[l]!, dims: [n, heads, hd, s] };
      feeds[cacheValueName(l)] = { data: this.values[l]!, dims: [n, heads, s, hd] };
    }
    const out = await this.decodeSession.run(feeds);
    const slot = c.ctx_len_txt + position;
    for (let l = 0; l < c.n_layers; l++) {
      const pk = out[presentKeyName(l)]!.data as Float32Array; // [N, H, hd, 1]
      const pv = out[presentValueName(l)]!.data as Float32Array; // [N, H, 1, hd]
      const K = this.keys[l]!;
      const V = this.values[l]!;
      for (let r = 0; r < n * heads; r++) {
        for (let d = 0; d < hd; d++) K[(r * hd + d) * s + slot] = pk[r * hd + d]!;
        V.set(pv.subarray(r * hd, (r + 1) * hd), (r * s + slot) * hd);
      }
    }
    this.fed = position + 1;
    return out.logits!.data as Float32Array;
  }

  async release(): Promise<void> {
    await Promise.all([this.prefillSession.release(), this.decodeSession.release()]);
  }
}

/**
 * Logits of every image position for whole sequences, recomputed without a cache (buildFullForward):
 * [batch, n + 1, vocab_img] for `text` [batch * ctx_len_txt] and `image` [batch * n].
 */
export async function fullForwardLogits(
  config: DalleConfig,
  weights: DalleWeights,
  text: ArrayLike<number>,
  image: ArrayLike<number>,
  batch: number,
  session: SessionOptions = {},
): Promise<Float32Array> {
  const n = image.length / batch;
  const g = new Graph();
  const logits = buildFullForward(g, config, weights, batch, n);
  const model = serialize(g, { outputs: { logits }, name: 'mindalle_full' });
  const s = await ModelSession.create(model.bytes, session);
  try {
    const feeds: Record<string, HostTensor> = {
      ...weightFeeds(weights, s.inputNames),
      text: {
        data: BigInt64Array.from(Array.from(text), (v) => BigInt(v)),
        dims: [batch, config.ctx_len_txt],
      },
    };
    if (n > 0)
      feeds.image = { data: BigInt64Array.from(Array.from(image), (v) => BigInt(v)), dims: [batch, n] };
    return (await s.run(feeds)).logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}
