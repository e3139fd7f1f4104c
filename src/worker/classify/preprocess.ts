// CLIP image preprocessing, as Hugging Face's CLIPImageProcessor does it: shortest side to the
// model's image size (bicubic, long side floored), center crop, rescale 1/255, normalise with
// CLIP's mean and std -> Float32Array [3, S, S] (CHW), or [N, 3, S, S] for a batch.
import { CodedError } from '../../shared/errors.js';
import {
  type DecodePlan,
  decodeImage,
  type ImageInfo,
  type ImageLimits,
  type RgbImage,
} from '../../shared/image/decode.js';

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export interface PreprocessOptions {
  /** The model's image_size (224 for ViT-B/32). */
  readonly size: number;
  /** @defaultValue CLIP_MEAN */
  readonly mean?: readonly [number, number, number];
  /** @defaultValue CLIP_STD */
  readonly std?: readonly [number, number, number];
  /** Byte and pixel caps for the encoded input. @defaultValue DefaultImageLimits */
  readonly limits?: ImageLimits;
}

/** Hugging Face's shortest-edge rule: short side -> size, long side -> floor(size * long / short). */
export function resizeTarget(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.floor((size * height) / width) };
  return { width: Math.floor((size * width) / height), height: size };
}

/** Hugging Face's center crop offsets: floor((dim - size) / 2). */
export function centerOffset(dim: number, size: number): number {
  return Math.floor((dim - size) / 2);
}

/**
 * Where the work happens for one image. Downscaling runs in sharp (libvips cubic with antialiasing,
 * JPEG shrink-on-load: fast on multi-megapixel photos, within a few grey levels of PIL). Upscaling
 * runs here, with PIL's exact algorithm: libvips aligns pixel centres differently when enlarging
 * (whole-pixel differences in our comparison), and small images are cheap to resample in JS.
 */
function planFor(info: ImageInfo, size: number): DecodePlan | undefined {
  const short = Math.min(info.width, info.height);
  if (short <= size) return undefined;
  const t = resizeTarget(info.width, info.height, size);
  return {
    resize: t,
    extract: {
      left: centerOffset(t.width, size),
      top: centerOffset(t.height, size),
      width: size,
      height: size,
    },
  };
}

/** Decodes one image and returns it as [3, S, S], ready for the vision tower. */
export async function preprocessImage(bytes: Uint8Array, options: PreprocessOptions): Promise<Float32Array> {
  const out = new Float32Array(3 * options.size * options.size);
  await preprocessInto(bytes, options, out, 0);
  return out;
}

/**
 * Decodes several images into one [N, 3, S, S] buffer. Decoding runs concurrently (sharp works on
 * libuv's thread pool). A bad image fails the whole call with its coded error, with `details.index`.
 */
export async function preprocessImages(
  images: readonly Uint8Array[],
  options: PreprocessOptions,
): Promise<Float32Array> {
  const plane = 3 * options.size * options.size;
  const out = new Float32Array(images.length * plane);
  await Promise.all(
    images.map(async (bytes, i) => {
      try {
        await preprocessInto(bytes, options, out, i * plane);
      } catch (err) {
        throw withIndex(err, i, images.length);
      }
    }),
  );
  return out;
}

/** The same coded error with the failing image's position, so a reply can say which upload was bad. */
function withIndex(err: unknown, index: number, count: number): unknown {
  if (count <= 1 || !(err instanceof CodedError)) return err;
  return new CodedError(err.code, err.message, { details: { ...err.details, index }, cause: err });
}

async function preprocessInto(
  bytes: Uint8Array,
  options: PreprocessOptions,
  out: Float32Array,
  offset: number,
): Promise<void> {
  const size = options.size;
  if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`bad image size ${size}`);
  const img = await decodeImage(bytes, { ...options.limits, plan: (info) => planFor(info, size) });
  const cropped = img.width === size && img.height === size ? img : resizeAndCrop(img, size);
  normalizeInto(cropped, options.mean ?? CLIP_MEAN, options.std ?? CLIP_STD, out, offset);
}

/** Shortest side to `size` with PIL's bicubic, then the center crop; only the crop is computed. */
export function resizeAndCrop(img: RgbImage, size: number): RgbImage {
  const t = resizeTarget(img.width, img.height, size);
  return resampleBicubic(img, t.width, t.height, {
    left: centerOffset(t.width, size),
    top: centerOffset(t.height, size),
    width: size,
    height: size,
  });
}

/** RGB uint8 (HWC) -> float32 CHW: (v / 255 - mean) / std. */
export function normalize(
  img: RgbImage,
  mean: readonly number[] = CLIP_MEAN,
  std: readonly number[] = CLIP_STD,
): Float32Array {
  const out = new Float32Array(3 * img.width * img.height);
  normalizeInto(img, mean, std, out, 0);
  return out;
}

function normalizeInto(
  img: RgbImage,
  mean: readonly number[],
  std: readonly number[],
  out: Float32Array,
  offset: number,
): void {
  const n = img.width * img.height;
  for (let c = 0; c < 3; c++) {
    // A 256-entry table per channel: one lookup per pixel, and exactly the same float for the same byte.
    const m = mean[c]!;
    const s = std[c]!;
    const lut = Float32Array.from({ length: 256 }, (_, v) => (v / 255 - m) / s);
    const base = offset + c * n;
    for (let i = 0; i < n; i++) out[base + i] = lut[img.data[i * 3 + c]!]!;
  }
}

// ---------------------------------------------------------------------------------------------
// PIL's resampling (Pillow src/libImaging/Resample.c), 8-bit path: separable, horizontal pass
// first, antialiased (the filter is stretched by the scale when shrinking), fixed-point weights
// with 22 fractional bits, rounding to uint8 after each pass. Reproduced exactly so that upscaled
// images match what CLIP's reference preprocessing produces.

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  readonly ksize: number;
  /** Per output position: first input index and tap count. */
  readonly bounds: Int32Array;
  /** Fixed-point weights, ksize per output position. */
  readonly k: Int32Array;
}

function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x]! / ww : w[x]!;
      k[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, k };
}

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return Math.max(0, Math.min(v, 255));
}

/**
 * Resamples to `outW` x `outH` exactly as PIL's `Image.resize(..., BICUBIC)` does, computing only
 * the `window` of the output (defaults to all of it): a 10x10000 strip scaled to 224 high would
 * otherwise build a 224x224000 intermediate to keep one 224x224 crop.
 */
export function resampleBicubic(
  img: RgbImage,
  outW: number,
  outH: number,
  window: { left: number; top: number; width: number; height: number } = {
    left: 0,
    top: 0,
    width: outW,
    height: outH,
  },
): RgbImage {
  const { width: inW, height: inH, data } = img;
  const needH = outW !== inW;
  const needV = outH !== inH;
  const { left, top, width: ww, height: wh } = window;
  if (left < 0 || top < 0 || left + ww > outW || top + wh > outH) {
    throw new RangeError(`window ${JSON.stringify(window)} outside ${outW}x${outH}`);
  }

  // Horizontal pass over the input rows the vertical pass will read (all rows of the window when
  // there is no vertical pass), into a uint8 buffer as PIL does.
  const cv = needV ? precomputeCoeffs(inH, outH) : undefined;
  let rowFirst: number;
  let rowLast: number;
  if (cv) {
    rowFirst = cv.bounds[top * 2]!;
    const lastY = top + wh - 1;
    rowLast = cv.bounds[lastY * 2]! + cv.bounds[lastY * 2 + 1]!;
  } else {
    rowFirst = top;
    rowLast = top + wh;
  }
  const rows = rowLast - rowFirst;
  let mid: Uint8Array;
  if (needH) {
    const ch = precomputeCoeffs(inW, outW);
    mid = new Uint8Array(rows * ww * 3);
    for (let y = 0; y < rows; y++) {
      const src = (rowFirst + y) * inW * 3;
      for (let x = 0; x < ww; x++) {
        const xx = left + x;
        const xmin = ch.bounds[xx * 2]!;
        const n = ch.bounds[xx * 2 + 1]!;
        const kb = xx * ch.ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let t = 0; t < n; t++) {
          const kv = ch.k[kb + t]!;
          const p = src + (xmin + t) * 3;
          s0 += data[p]! * kv;
          s1 += data[p + 1]! * kv;
          s2 += data[p + 2]! * kv;
        }
        const o = (y * ww + x) * 3;
        mid[o] = clip8(s0);
        mid[o + 1] = clip8(s1);
        mid[o + 2] = clip8(s2);
      }
    }
  } else {
    mid = new Uint8Array(rows * ww * 3);
    for (let y = 0; y < rows; y++) {
      const src = ((rowFirst + y) * inW + left) * 3;
      mid.set(data.subarray(src, src + ww * 3), y * ww * 3);
    }
  }
  if (!cv) return { data: mid, width: ww, height: wh };

  const out = new Uint8Array(ww * wh * 3);
  for (let y = 0; y < wh; y++) {
    const yy = top + y;
    const ymin = cv.bounds[yy * 2]! - rowFirst;
    const n = cv.bounds[yy * 2 + 1]!;
    const kb = yy * cv.ksize;
    for (let x = 0; x < ww; x++) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let t = 0; t < n; t++) {
        const kv = cv.k[kb + t]!;
        const p = ((ymin + t) * ww + x) * 3;
        s0 += mid[p]! * kv;
        s1 += mid[p + 1]! * kv;
        s2 += mid[p + 2]! * kv;
      }
      const o = (y * ww + x) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { data: out, width: ww, height: wh };
}
