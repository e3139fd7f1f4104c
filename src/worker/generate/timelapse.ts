// The timelapse of a generation: frames taken at a fixed step cadence, downscaled and kept as 8-bit
// RGB, then assembled into one animated WebP (src/shared/image). Memory stays bounded: past
// maxFrames, every other frame is dropped and the cadence doubles.
import type { RgbImage } from '../../shared/image/decode.js';
import { encodeAnimatedWebp } from '../../shared/image/encode.js';
import { resizeRgb } from '../../shared/image/resize.js';
import { toRgb8 } from './image.js';

export interface TimelapseOptions {
  /** Most frames kept (the final frame included). @defaultValue 60 */
  readonly maxFrames?: number;
  /** Steps between frames; by default the cadence that fits the run into maxFrames. */
  readonly every?: number;
  /** Longest side of a frame in pixels (frames are never upscaled). @defaultValue 128 */
  readonly size?: number;
  /** @defaultValue 100 */
  readonly frameDelayMs?: number;
  /** The last frame stays longer, so the loop shows the result. @defaultValue 1500 */
  readonly lastFrameDelayMs?: number;
  /** WebP quality. @defaultValue 75 */
  readonly quality?: number;
}

export const DefaultTimelapseOptions = {
  maxFrames: 60,
  size: 128,
  frameDelayMs: 100,
  lastFrameDelayMs: 1500,
  quality: 75,
} as const satisfies Required<Omit<TimelapseOptions, 'every'>>;

export interface Timelapse {
  readonly bytes: Uint8Array;
  readonly format: 'webp';
  readonly frames: number;
  readonly width: number;
  readonly height: number;
}

/**
 * Steps between frames for a run of `steps` steps: frames at steps 0, every, 2*every, ... below
 * `steps`, plus the final image, at most maxFrames in all.
 */
export function timelapseCadence(steps: number, maxFrames: number): number {
  return Math.max(1, Math.ceil(steps / Math.max(1, maxFrames - 1)));
}

/** Frames expected for a run of `steps` steps at cadence `every` (the final image included). */
export function timelapseFrameCount(steps: number, every: number): number {
  return Math.ceil(steps / every) + 1;
}

export class TimelapseRecorder {
  readonly frameWidth: number;
  readonly frameHeight: number;
  private readonly o: Required<Omit<TimelapseOptions, 'every'>>;
  private frames: RgbImage[] = [];
  private cadence: number;

  constructor(
    readonly width: number,
    readonly height: number,
    steps: number,
    options: TimelapseOptions = {},
  ) {
    this.o = { ...DefaultTimelapseOptions, ...options };
    if (!Number.isInteger(this.o.maxFrames) || this.o.maxFrames < 2) {
      throw new RangeError(`timelapse maxFrames must be an integer >= 2, got ${this.o.maxFrames}`);
    }
    this.cadence = options.every ?? timelapseCadence(steps, this.o.maxFrames);
    const scale = Math.min(1, this.o.size / Math.max(width, height));
    this.frameWidth = Math.max(1, Math.round(width * scale));
    this.frameHeight = Math.max(1, Math.round(height * scale));
  }

  get every(): number {
    return this.cadence;
  }

  get frameCount(): number {
    return this.frames.length;
  }

  /** Whether the image after `step` steps of this run (0 = the start) is a frame. */
  wants(step: number): boolean {
    return step % this.cadence === 0;
  }

  /** Adds a frame taken during the run from planar float [3, H, W] in [0, 1]. */
  async add(chw: Float32Array): Promise<void> {
    this.frames.push(await this.shrink(chw));
    // One place stays free for the final frame.
    if (this.frames.length > this.o.maxFrames - 1) {
      // Keep frames 0, 2, 4, ...: still a fixed cadence, twice as long.
      this.frames = this.frames.filter((_, i) => i % 2 === 0);
      this.cadence *= 2;
    }
  }

  /** Adds the final image (whatever the cadence). */
  async addFinal(chw: Float32Array): Promise<void> {
    this.frames.push(await this.shrink(chw));
  }

  private shrink(chw: Float32Array): Promise<RgbImage> {
    const { width, height } = this;
    return resizeRgb({ data: toRgb8(chw, width, height), width, height }, this.frameWidth, this.frameHeight);
  }

  /** One animated WebP of all frames, looping forever; undefined with no frames. */
  async encode(): Promise<Timelapse | undefined> {
    const n = this.frames.length;
    if (n === 0) return undefined;
    const delaysMs = Array.from({ length: n }, (_, i) =>
      i === n - 1 ? this.o.lastFrameDelayMs : this.o.frameDelayMs,
    );
    return {
      bytes: await encodeAnimatedWebp(this.frames, { quality: this.o.quality, delaysMs }),
      format: 'webp',
      frames: n,
      width: this.frameWidth,
      height: this.frameHeight,
    };
  }
}
