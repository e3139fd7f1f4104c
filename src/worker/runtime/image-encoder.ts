// Image bytes -> unit CLIP image embedding, micro-batched: classify and embed-image jobs running at
// the same time in one worker hand their images here, and those that arrive within a few ms are
// decoded together and go through the image tower in one session run.
import { asCodedError } from '../../shared/errors.js';
import type { ImageLimits } from '../../shared/image/decode.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { preprocessImage } from '../classify/preprocess.js';
import { MicroBatcher } from './micro-batcher.js';

/** What the encoder needs from CLIP's image tower (ClipEncoders satisfies it). */
export interface ImageTower {
  readonly imageSize: number;
  readonly dim: number;
  /** Embeddings [count, dim] of CLIP-normalised pixels [count, 3, S, S]. */
  encodeImages(pixels: Float32Array, count: number): Promise<Float32Array>;
  readonly stats: { readonly imageRuns: number };
}

export interface BatchedImageEncoderOptions {
  /**
   * Images per batch. Keep it at or below the tower's own batch limit (ClipEncoders' maxImageBatch,
   * 16 by default), so that one batch is one session run. 1 turns micro-batching off. @defaultValue 16
   */
  maxBatch?: number;
  /** How long the first image of a batch waits for others. @defaultValue 5 */
  maxWaitMs?: number;
  /** Byte and pixel caps on input images. @defaultValue DefaultImageLimits */
  limits?: ImageLimits;
  logger?: Logger;
}

export const DefaultBatchedImageEncoderOptions = {
  maxBatch: 16,
  maxWaitMs: 5,
} as const satisfies Partial<BatchedImageEncoderOptions>;

export class BatchedImageEncoder {
  readonly #tower: ImageTower;
  readonly #limits: ImageLimits;
  readonly #logger: Logger;
  readonly #batcher: MicroBatcher<Uint8Array, Float32Array>;

  constructor(tower: ImageTower, options: BatchedImageEncoderOptions = {}) {
    const o = { ...DefaultBatchedImageEncoderOptions, ...options };
    this.#tower = tower;
    this.#limits = o.limits ?? {};
    this.#logger = o.logger ?? silentLogger;
    this.#batcher = new MicroBatcher({
      run: (images) => this.#runBatch(images),
      maxBatch: o.maxBatch,
      maxWaitMs: o.maxWaitMs,
    });
  }

  get dim(): number {
    return this.#tower.dim;
  }

  /** Batches run and their sizes so far. */
  get stats(): { batches: number; images: number; largest: number; sessionRuns: number } {
    const s = this.#batcher.stats;
    return {
      batches: s.batches,
      images: s.items,
      largest: s.largest,
      sessionRuns: this.#tower.stats.imageRuns,
    };
  }

  /**
   * The unit embedding [dim] of one encoded image. Bad bytes reject with the image's own coded
   * error (`not_an_image`, `image_too_large`) without touching the other images of its batch.
   */
  embed(bytes: Uint8Array, signal?: AbortSignal): Promise<Float32Array> {
    return this.#batcher.add(bytes, signal);
  }

  /** Runs what is queued and stops taking images. */
  close(): Promise<void> {
    return this.#batcher.close();
  }

  async #runBatch(images: readonly Uint8Array[]): Promise<(Float32Array | Error)[]> {
    const size = this.#tower.imageSize;
    const plane = 3 * size * size;
    // Decoding runs on libuv's pool, so the images of a batch decode concurrently.
    const decoded = await Promise.allSettled(
      images.map((bytes) => preprocessImage(bytes, { size, limits: this.#limits })),
    );
    const ok: number[] = [];
    decoded.forEach((d, i) => {
      if (d.status === 'fulfilled') ok.push(i);
    });
    const results: (Float32Array | Error)[] = decoded.map((d) =>
      d.status === 'rejected' ? asCodedError(d.reason) : new Float32Array(0),
    );
    if (ok.length === 0) return results;
    const pixels = new Float32Array(ok.length * plane);
    ok.forEach((i, row) => {
      pixels.set((decoded[i] as PromiseFulfilledResult<Float32Array>).value, row * plane);
    });
    const started = performance.now();
    const embeds = await this.#tower.encodeImages(pixels, ok.length);
    const dim = this.#tower.dim;
    ok.forEach((i, row) => {
      results[i] = unit(embeds.subarray(row * dim, (row + 1) * dim));
    });
    this.#logger.debug(
      {
        batch: images.length,
        decoded: ok.length,
        ms: Math.round(performance.now() - started),
        sessionRuns: this.#tower.stats.imageRuns,
      },
      'image batch',
    );
    return results;
  }
}

/** A unit-length copy; a zero vector (never seen from CLIP) stays zero. */
function unit(v: Float32Array): Float32Array {
  let ss = 0;
  for (const x of v) ss += x * x;
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  return Float32Array.from(v, (x) => x * inv);
}
