// CLIP's two towers as ONNX Runtime sessions, for inference only (classification, indexing, search).
// Our graphs have static shapes, so a session serves one batch size (and, for text, one token
// length): sessions are built on first use per shape bucket and kept in a small LRU per tower.
import { Graph } from '../graph/graph.js';
import { serialize } from '../graph/serialize.js';
import { type ClipConfig, clipText, clipVision, type WeightSource } from '../models/clip.js';
import type { ClipTokenizer } from '../models/tokenizer.js';
import { ModelSession, type SessionOptions } from '../onnx/session.js';

export interface ClipEncodersOptions {
  /**
   * Most images per session run. Batches are padded up to a power of two (at most 2x the work), so
   * at most log2(max) + 1 image sessions exist. @defaultValue 16
   */
  readonly maxImageBatch?: number;
  /** Most prompts per text session run, padded like images. @defaultValue 64 */
  readonly maxTextBatch?: number;
  /**
   * Token lengths are rounded up to a multiple of this (capped at the context, 77) to pick a text
   * session. The text tower is causal and pools at the end token, so tokens after it never change
   * the result: running 16 positions instead of 77 gives the same embedding for ~1/5 of the work.
   * @defaultValue 8
   */
  readonly textLengthStep?: number;
  /** Sessions kept per tower; each holds a copy of its tower's weights (~350 / 250 MB full size). @defaultValue 3 */
  readonly maxSessionsPerTower?: number;
  /** Passed to every ModelSession. @defaultValue {} (ModelSession's defaults) */
  readonly session?: SessionOptions;
  /**
   * Arithmetic of the image tower's encoder layers. 'int8' (dynamic quantisation, weights per output
   * channel) is ~2x faster on CPU; its embeddings differ from fp32 by a cosine of ~1e-3 (bench/README.md).
   * @defaultValue 'fp32'
   */
  readonly imagePrecision?: ImagePrecision;
}

export type ImagePrecision = 'fp32' | 'int8';

export const DefaultClipEncodersOptions = {
  maxImageBatch: 16,
  maxTextBatch: 64,
  textLengthStep: 8,
  maxSessionsPerTower: 3,
  session: {},
  imagePrecision: 'fp32',
} as const satisfies Required<ClipEncodersOptions>;

/** Smallest power of two >= n, but never above `max` (which need not be a power of two). */
export function batchBucket(n: number, max: number): number {
  if (!Number.isInteger(n) || n < 1 || n > max) throw new RangeError(`batch of ${n} outside [1, ${max}]`);
  let b = 1;
  while (b < n) b *= 2;
  return Math.min(b, max);
}

/** `length` rounded up to a multiple of `step`, capped at `context`. */
export function lengthBucket(length: number, step: number, context: number): number {
  if (!Number.isInteger(length) || length < 1 || length > context) {
    throw new RangeError(`token length ${length} outside [1, ${context}]`);
  }
  return Math.min(Math.ceil(length / step) * step, context);
}

export interface EncoderStats {
  /** Session runs of the image tower. */
  imageRuns: number;
  /** Session runs of the text tower. */
  textRuns: number;
  /** Sessions built (both towers), including rebuilds after eviction. */
  sessionsBuilt: number;
}

interface CacheEntry {
  readonly session: Promise<ModelSession>;
  busy: number;
  lastUse: number;
}

/** A few sessions by key, built once, evicted least-recently-used when idle. */
class SessionCache {
  private readonly entries = new Map<string, CacheEntry>();
  private clock = 0;

  constructor(
    private readonly max: number,
    private readonly build: (key: string) => Promise<ModelSession>,
  ) {}

  async use<T>(key: string, fn: (s: ModelSession) => Promise<T>): Promise<T> {
    let entry = this.entries.get(key);
    if (!entry) {
      const session = this.build(key);
      entry = { session, busy: 0, lastUse: 0 };
      this.entries.set(key, entry);
      // A failed build must not stay cached: the next call retries.
      session.catch(() => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      });
    }
    entry.busy++;
    entry.lastUse = ++this.clock;
    try {
      return await fn(await entry.session);
    } finally {
      entry.busy--;
      await this.evict();
    }
  }

  get size(): number {
    return this.entries.size;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  private async evict(): Promise<void> {
    while (this.entries.size > this.max) {
      let victim: [string, CacheEntry] | undefined;
      for (const e of this.entries) {
        if (e[1].busy === 0 && (!victim || e[1].lastUse < victim[1].lastUse)) victim = e;
      }
      if (!victim) return; // everything is in use; shrink later
      this.entries.delete(victim[0]);
      await (await victim[1].session.catch(() => undefined))?.release();
    }
  }

  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map(async (e) => (await e.session.catch(() => undefined))?.release()));
  }
}

export interface TextBatch {
  /** Positions of this batch's prompts in the caller's list. */
  readonly indices: readonly number[];
  /** [indices.length, dim], unnormalised. */
  readonly embeds: Float32Array;
}

/** Image and text encoders over one CLIP model's weights. */
export class ClipEncoders {
  readonly dim: number;
  readonly imageSize: number;
  /** exp(logit_scale): the factor on cosine similarities (100 for the released models). */
  readonly logitScale: number;
  readonly stats: EncoderStats = { imageRuns: 0, textRuns: 0, sessionsBuilt: 0 };
  private readonly o: Required<ClipEncodersOptions>;
  private readonly images: SessionCache;
  private readonly texts: SessionCache;

  constructor(
    private readonly config: ClipConfig,
    private readonly weights: WeightSource,
    private readonly tokenizer: ClipTokenizer,
    options: ClipEncodersOptions = {},
  ) {
    this.o = { ...DefaultClipEncodersOptions, ...options };
    for (const k of ['maxImageBatch', 'maxTextBatch', 'textLengthStep', 'maxSessionsPerTower'] as const) {
      if (!Number.isInteger(this.o[k]) || this.o[k] < 1)
        throw new RangeError(`${k} must be a positive integer`);
    }
    if (this.o.imagePrecision !== 'fp32' && this.o.imagePrecision !== 'int8')
      throw new RangeError(`imagePrecision must be 'fp32' or 'int8', got '${String(this.o.imagePrecision)}'`);
    if (tokenizer.contextLength > config.text_config.max_position_embeddings) {
      throw new RangeError(
        `tokenizer context ${tokenizer.contextLength} exceeds the text tower's ${config.text_config.max_position_embeddings} positions`,
      );
    }
    this.dim = config.projection_dim;
    this.imageSize = config.vision_config.image_size;
    this.logitScale = Math.exp(weights.get('logit_scale', [])[0]!);
    this.images = new SessionCache(this.o.maxSessionsPerTower, (key) => this.buildImage(Number(key)));
    this.texts = new SessionCache(this.o.maxSessionsPerTower, (key) => {
      const [b, t] = key.split('x').map(Number) as [number, number];
      return this.buildText(b, t);
    });
  }

  private async buildImage(batch: number): Promise<ModelSession> {
    const s = this.imageSize;
    const g = new Graph();
    const pixels = g.input('pixels', [batch, 3, s, s]);
    const { embeds } = clipVision(g, pixels, this.config, this.weights, { precision: this.o.imagePrecision });
    const { bytes } = serialize(g, {
      outputs: { embeds },
      name: `clip_vision_${this.o.imagePrecision}_b${batch}`,
    });
    this.stats.sessionsBuilt++;
    return ModelSession.create(bytes, this.o.session);
  }

  private async buildText(batch: number, length: number): Promise<ModelSession> {
    const g = new Graph();
    const ids = g.input('input_ids', [batch, length], 'int64');
    const { embeds } = clipText(g, ids, this.config, this.weights);
    const { bytes } = serialize(g, { outputs: { embeds }, name: `clip_text_b${batch}_t${length}` });
    this.stats.sessionsBuilt++;
    return ModelSession.create(bytes, this.o.session);
  }

  /** Arithmetic of the image tower's encoder layers. */
  get imagePrecision(): ImagePrecision {
    return this.o.imagePrecision;
  }

  /** Shapes of the sessions alive now: image batch sizes, and text `batch x tokens`. */
  sessionShapes(): { image: number[]; text: string[] } {
    return { image: this.images.keys().map(Number), text: this.texts.keys() };
  }

  /**
   * Image embeddings [count, dim] (unnormalised) of CLIP-normalised pixels [count, 3, S, S]:
   * one session run per `maxImageBatch` images.
   */
  async encodeImages(pixels: Float32Array, count: number): Promise<Float32Array> {
    const plane = 3 * this.imageSize * this.imageSize;
    if (pixels.length !== count * plane) {
      throw new RangeError(
        `${pixels.length} values are not ${count} images of [3, ${this.imageSize}, ${this.imageSize}]`,
      );
    }
    const out = new Float32Array(count * this.dim);
    for (let start = 0; start < count; start += this.o.maxImageBatch) {
      const n = Math.min(this.o.maxImageBatch, count - start);
      const b = batchBucket(n, this.o.maxImageBatch);
      // Padding rows are zeros (a mid-grey image); their embeddings are dropped.
      const data = new Float32Array(b * plane);
      data.set(pixels.subarray(start * plane, (start + n) * plane));
      const res = await this.images.use(String(b), (s) =>
        s.run({ pixels: { data, dims: [b, 3, this.imageSize, this.imageSize] } }),
      );
      this.stats.imageRuns++;
      out.set((res.embeds!.data as Float32Array).subarray(0, n * this.dim), start * this.dim);
    }
    return out;
  }

  /**
   * Encodes prompts in batches of similar token length (sorted by length, so each batch runs the
   * fewest positions) and hands each batch to `onBatch` as it completes: a caller embedding 80,000
   * prompts can reduce them on the fly instead of holding them all. Returns how many prompts were
   * truncated to the context.
   */
  async encodeTextBatches(
    prompts: readonly string[],
    onBatch: (batch: TextBatch) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<{ truncated: number }> {
    const ctx = this.tokenizer.contextLength;
    const rows: Int32Array[] = [];
    let truncated = 0;
    for (const p of prompts) {
      const e = this.tokenizer.encode(p);
      if (e.truncated) truncated++;
      rows.push(Int32Array.from(e.ids.slice(0, e.length)));
    }
    const order = rows.map((_, i) => i).sort((a, b) => rows[a]!.length - rows[b]!.length);
    const pad = BigInt(this.tokenizer.padId);
    for (let start = 0; start < order.length; start += this.o.maxTextBatch) {
      signal?.throwIfAborted();
      const indices = order.slice(start, start + this.o.maxTextBatch);
      const longest = rows[indices.at(-1)!]!.length;
      const t = lengthBucket(longest, this.o.textLengthStep, ctx);
      const b = batchBucket(indices.length, this.o.maxTextBatch);
      const ids = new BigInt64Array(b * t).fill(pad);
      for (let r = 0; r < b; r++) {
        // Padding rows repeat the first prompt: a valid row whose embedding is dropped.
        const row = rows[indices[r] ?? indices[0]!]!;
        for (let c = 0; c < row.length; c++) ids[r * t + c] = BigInt(row[c]!);
      }
      const res = await this.texts.use(`${b}x${t}`, (s) => s.run({ input_ids: { data: ids, dims: [b, t] } }));
      this.stats.textRuns++;
      const embeds = (res.embeds!.data as Float32Array).slice(0, indices.length * this.dim);
      await onBatch({ indices, embeds });
    }
    return { truncated };
  }

  /** Text embeddings [prompts, dim] (unnormalised), in the order given. */
  async encodeTexts(prompts: readonly string[], signal?: AbortSignal): Promise<Float32Array> {
    const out = new Float32Array(prompts.length * this.dim);
    await this.encodeTextBatches(
      prompts,
      ({ indices, embeds }) => {
        indices.forEach((p, r) => {
          out.set(embeds.subarray(r * this.dim, (r + 1) * this.dim), p * this.dim);
        });
      },
      signal,
    );
    return out;
  }

  /** Releases every session (they are rebuilt on the next call). */
  async release(): Promise<void> {
    await Promise.all([this.images.clear(), this.texts.clear()]);
  }
}
