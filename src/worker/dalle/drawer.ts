// The DALL-E way of drawing: the prompt's tokens through minDALL-E's transformer (prefill once, then
// one decode step per image token for N candidates together), each token sampled in TypeScript
// (sampling.ts), the token grids looked up in the VQGAN codebook and decoded to pixels by our VQGAN
// decoder, and CLIP's reranking: every candidate scored against the prompt, the best k kept.
// An async iterator of progress (tokens/s, ETA), row-by-row previews and the result, as the
// VQGAN+CLIP loop (generate/loop.ts) is.
import { CancelledError } from '../../shared/errors.js';
import {
  decodeImage8,
  type EncodedImage,
  encodeImage,
  type ImageFormat,
  unitFloats,
} from '../generate/image.js';
import type { Latent } from '../generate/latent.js';
import { Rng } from '../generate/rng.js';
import { Graph } from '../graph/graph.js';
import { add, clip, mul } from '../graph/ops/elementwise.js';
import { serialize } from '../graph/serialize.js';
import type { WeightSource } from '../models/params.js';
import { type VqganConfig, vqganDecode, vqganFactor } from '../models/vqgan.js';
import { ModelSession, type SessionOptions } from '../onnx/session.js';
import { dalleGridSize } from './config.js';
import type { DalleModel } from './model.js';
import { DalleRunner } from './runner.js';
import { checkSamplingOptions, type SamplingOptions, sampleRows } from './sampling.js';

/** Most candidates one run decodes together. */
export const MAX_CANDIDATES = 16;

export interface DalleDrawerDeps {
  readonly model: DalleModel;
  /** The VQGAN whose codebook the model's tokens index (its own stage 1, or one of matching size). */
  readonly vqgan: { readonly config: VqganConfig; readonly weights: WeightSource };
  /** CLIP text embeddings [D] (any length: they are normalised here). */
  embedTexts(texts: readonly string[]): Promise<Float32Array[]>;
  /** CLIP image embeddings [D] of planar [3, S, S] images in [0, 1], S = clipImageSize. */
  embedImages(pixels: readonly Float32Array[]): Promise<Float32Array[]>;
  readonly clipImageSize: number;
}

export interface DrawRequest {
  /** The text the transformer reads and CLIP scores against. */
  readonly prompt: string;
  readonly seed: number;
  /** Samples decoded together, 1..MAX_CANDIDATES. @defaultValue 4 */
  readonly candidates?: number;
  /** Best candidates kept after CLIP's reranking, 1..candidates. @defaultValue 1 */
  readonly keep?: number;
  readonly sampling?: SamplingOptions;
}

export interface DrawOptions {
  readonly signal?: AbortSignal;
  /** A preview after every this many rows of the token grid; 0: none. @defaultValue 2 */
  readonly previewEveryRows?: number;
  /** @defaultValue 'webp' */
  readonly previewFormat?: ImageFormat;
  /** Milliseconds clock (injectable for tests). @defaultValue performance.now */
  readonly now?: () => number;
}

export interface TokensEvent {
  readonly type: 'tokens';
  /** Image tokens of each candidate decoded so far (the grid fills row by row). */
  readonly tokens: number;
  readonly total: number;
  /** Image tokens per second, all candidates together, since the prompt was read. */
  readonly tokensPerSecond: number;
  readonly elapsedMs: number;
  readonly etaMs: number;
}

export interface DrawPreviewEvent {
  readonly type: 'preview';
  /** Complete rows of the grid in this image; rows below are a neutral grey. */
  readonly rows: number;
  /** Image tokens of each candidate decoded when it was made. */
  readonly tokens: number;
  readonly image: EncodedImage;
}

export interface DrawnImage {
  /** Index among the candidates. */
  readonly candidate: number;
  /** Cosine similarity of its CLIP embedding to the prompt's. */
  readonly score: number;
  /** Its token grid, row-major. */
  readonly tokens: Int32Array;
  /** Planar [3, H, W] pixels in [0, 1]. */
  readonly pixels: Float32Array;
  readonly image: EncodedImage;
}

export interface DrawResult {
  /** The kept candidates, best first. */
  readonly images: readonly DrawnImage[];
  /** Every candidate's score, by candidate index. */
  readonly scores: readonly number[];
  readonly seed: number;
  /** Whether the prompt was longer than the text context and cut. */
  readonly truncated: boolean;
  readonly promptTokens: number;
  readonly width: number;
  readonly height: number;
  readonly tokensPerSecond: number;
  readonly timings: {
    readonly prefillMs: number;
    readonly decodeMs: number;
    readonly pixelsMs: number;
    readonly rerankMs: number;
    readonly totalMs: number;
  };
}

export interface DrawDoneEvent {
  readonly type: 'done';
  readonly result: DrawResult;
}

export type DrawEvent = TokensEvent | DrawPreviewEvent | DrawDoneEvent;

/** Cosine similarity of each image embedding to the text embedding. */
export function clipScores(images: readonly Float32Array[], text: Float32Array): number[] {
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  const t = norm(text);
  return images.map((v) => {
    if (v.length !== text.length) throw new RangeError(`embedding of ${v.length}, prompt of ${text.length}`);
    let dot = 0;
    for (let i = 0; i < v.length; i++) dot += v[i]! * text[i]!;
    return dot / (norm(v) * t);
  });
}

/** Indices of the `keep` best scores, best first (ties: the lower index first). */
export function bestK(scores: readonly number[], keep: number): number[] {
  return scores
    .map((s, i) => [s, i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, keep)
    .map(([, i]) => i);
}

/** The latent [1, embed_dim, g, g] of a token grid: the codebook row of each token, as VQGAN-CLIP's z. */
export function tokensLatent(
  vqgan: { readonly config: VqganConfig; readonly weights: WeightSource },
  tokens: ArrayLike<number>,
  grid: number,
  codebook = vqgan.weights.get('quantize.embedding.weight', [vqgan.config.n_embed, vqgan.config.embed_dim]),
): Latent {
  const { embed_dim: d, n_embed: k } = vqgan.config;
  const positions = grid * grid;
  if (tokens.length !== positions)
    throw new RangeError(`${tokens.length} tokens do not fill a ${grid}x${grid} grid`);
  const data = new Float32Array(d * positions);
  for (let p = 0; p < positions; p++) {
    const row = tokens[p]!;
    if (!(row >= 0 && row < k)) throw new RangeError(`token ${row} is outside the codebook of ${k}`);
    for (let c = 0; c < d; c++) data[c * positions + p] = codebook[row * d + c]!;
  }
  return { data, dims: [1, d, grid, grid] };
}

const NEUTRAL = 0.5;

/**
 * Draws with a minDALL-E model. Keeps its transformer sessions (per candidate count) and the VQGAN
 * decoder session between runs: building them costs seconds at full size.
 */
export class DalleDrawer {
  private readonly runners = new Map<number, Promise<DalleRunner>>();
  private decoder: Promise<ModelSession> | undefined;
  private codebook: Float32Array | undefined;
  readonly grid: number;
  readonly width: number;

  constructor(
    private readonly deps: DalleDrawerDeps,
    private readonly session: SessionOptions = {},
  ) {
    const { config } = deps.model;
    if (deps.vqgan.config.n_embed !== config.vocab_size_img) {
      throw new RangeError(
        `the VQGAN's codebook has ${deps.vqgan.config.n_embed} entries, the model's image vocabulary ${config.vocab_size_img}`,
      );
    }
    this.grid = dalleGridSize(config);
    this.width = this.grid * vqganFactor(deps.vqgan.config);
  }

  async *draw(req: DrawRequest, options: DrawOptions = {}): AsyncGenerator<DrawEvent, void, undefined> {
    const now = options.now ?? (() => performance.now());
    const started = now();
    const { config, tokenizer } = this.deps.model;
    const n = req.candidates ?? 4;
    const keep = req.keep ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > MAX_CANDIDATES)
      throw new RangeError(`candidates must be an integer from 1 to ${MAX_CANDIDATES}, got ${n}`);
    if (!Number.isInteger(keep) || keep < 1 || keep > n)
      throw new RangeError(`keep must be an integer from 1 to ${n} (the candidates), got ${keep}`);
    const sampling = checkSamplingOptions(req.sampling ?? {});
    const signal = options.signal;
    const everyRows = options.previewEveryRows ?? 2;
    const check = () => {
      if (signal?.aborted) throw new CancelledError();
    };
    check();

    const encoding = tokenizer.encode(req.prompt);
    const runner = await this.runner(n);
    const total = config.ctx_len_img;
    const tokens = Array.from({ length: n }, () => new Int32Array(total));
    // One stream per run: draws are taken in (step, candidate) order, so a seed fixes every token.
    const rng = new Rng(req.seed, 'dalle-sample');
    const next = () => rng.next();

    const prefillStart = now();
    const first = await runner.prefill(encoding.ids);
    const prefillMs = now() - prefillStart;
    const decodeStart = now();
    const firstRows = new Float32Array(n * first.length);
    for (let c = 0; c < n; c++) firstRows.set(first, c * first.length);
    let picked = sampleRows(firstRows, n, sampling, next);
    for (let step = 0; ; step++) {
      for (let c = 0; c < n; c++) tokens[c]![step] = picked[c]!;
      const done = step + 1;
      const elapsed = now() - decodeStart;
      const perToken = elapsed / done;
      yield {
        type: 'tokens',
        tokens: done,
        total,
        tokensPerSecond: elapsed > 0 ? (done * n * 1000) / elapsed : 0,
        elapsedMs: now() - started,
        etaMs: perToken * (total - done),
      };
      if (everyRows > 0 && done % (everyRows * this.grid) === 0 && done < total) {
        const rows = done / this.grid;
        const pixels = await this.pixels(tokens[0]!, rows);
        yield {
          type: 'preview',
          rows,
          tokens: done,
          image: await encodeImage(pixels, this.width, this.width, options.previewFormat ?? 'webp'),
        };
      }
      if (done === total) break;
      check();
      picked = sampleRows(await runner.step(picked), n, sampling, next);
    }
    const decodeMs = now() - decodeStart;

    check();
    const pixelsStart = now();
    const allPixels: Float32Array[] = [];
    for (const t of tokens) {
      allPixels.push(await this.pixels(t, this.grid));
      check();
    }
    const pixelsMs = now() - pixelsStart;

    const rerankStart = now();
    const S = this.deps.clipImageSize;
    const clipInputs: Float32Array[] = [];
    const encoded: EncodedImage[] = [];
    for (const px of allPixels) {
      const png = await encodeImage(px, this.width, this.width, 'png');
      encoded.push(png);
      // CLIP sees each candidate as it would see the PNG posted: resized to cover S x S, centre-cropped.
      clipInputs.push(unitFloats(await decodeImage8(png.bytes, S, S)));
    }
    const [text] = await this.deps.embedTexts([req.prompt]);
    const scores = clipScores(await this.deps.embedImages(clipInputs), text!);
    const order = bestK(scores, keep);
    const rerankMs = now() - rerankStart;

    yield {
      type: 'done',
      result: {
        images: order.map((c) => ({
          candidate: c,
          score: scores[c]!,
          tokens: tokens[c]!,
          pixels: allPixels[c]!,
          image: encoded[c]!,
        })),
        scores,
        seed: req.seed,
        truncated: encoding.truncated,
        promptTokens: encoding.total,
        width: this.width,
        height: this.width,
        tokensPerSecond: decodeMs > 0 ? (total * n * 1000) / decodeMs : 0,
        timings: { prefillMs, decodeMs, pixelsMs, rerankMs, totalMs: now() - started },
      },
    };
  }

  /** The VQGAN this drawer decodes with. */
  get vqgan(): DalleDrawerDeps['vqgan'] {
    return this.deps.vqgan;
  }

  /** The latent of a token grid in this drawer's VQGAN (what Refine starts VQGAN+CLIP from). */
  latent(tokens: ArrayLike<number>): Latent {
    this.codebook ??= this.deps.vqgan.weights.get('quantize.embedding.weight', [
      this.deps.vqgan.config.n_embed,
      this.deps.vqgan.config.embed_dim,
    ]);
    return tokensLatent(this.deps.vqgan, tokens, this.grid, this.codebook);
  }

  /**
   * Pixels [3, H, W] in [0, 1] of a token grid whose first `rows` rows are known: the grid decoded
   * (unknown positions as token 0) and the unknown rows' pixels painted a neutral grey.
   */
  async pixels(tokens: Int32Array, rows: number): Promise<Float32Array> {
    const g = this.grid;
    const grid = new Int32Array(g * g);
    grid.set(tokens.subarray(0, rows * g));
    const z = this.latent(grid);
    const session = await this.decoderSession();
    const out = await session.run({ z: { data: z.data, dims: z.dims } });
    const px = out.image!.data as Float32Array;
    const w = this.width;
    const from = rows * (w / g);
    if (from < w) for (let c = 0; c < 3; c++) px.fill(NEUTRAL, c * w * w + from * w, (c + 1) * w * w);
    return px;
  }

  private runner(n: number): Promise<DalleRunner> {
    let r = this.runners.get(n);
    if (!r) {
      // One transformer pair at a time: a full-size cache for 8 candidates holds 1.3 GB.
      for (const [k, old] of this.runners) {
        this.runners.delete(k);
        void old.then((x) => x.release()).catch(() => {});
      }
      r = DalleRunner.create(this.deps.model.config, this.deps.model.weights, {
        candidates: n,
        session: this.session,
      });
      r.catch(() => this.runners.delete(n));
      this.runners.set(n, r);
    }
    return r;
  }

  private decoderSession(): Promise<ModelSession> {
    if (!this.decoder) {
      const { config, weights } = this.deps.vqgan;
      const g = new Graph();
      const z = g.input('z', [1, config.embed_dim, this.grid, this.grid]);
      const image = clip(add(mul(vqganDecode(g, z, config, weights), 0.5), 0.5), 0, 1);
      const bytes = serialize(g, { outputs: { image }, name: 'dalle_vqgan_decode' }).bytes;
      this.decoder = ModelSession.create(bytes, this.session);
      this.decoder.catch(() => {
        this.decoder = undefined;
      });
    }
    return this.decoder;
  }

  async close(): Promise<void> {
    const all = [...this.runners.values()];
    this.runners.clear();
    await Promise.all(all.map(async (r) => (await r).release()));
    if (this.decoder) await (await this.decoder).release();
    this.decoder = undefined;
  }
}
