// Random square cutouts of the generated image, resized to CLIP's input size, expressed as
// interpolation matrices: cutout_k = A_k · img · B_kᵀ per channel. Made per step in plain
// TypeScript from a seeded PRNG and fed to the step graph as inputs, so the graph stays static.

export interface CutoutOptions {
  /** Number of cutouts. */
  readonly count: number;
  /** Output side (CLIP's image_size, 224 for ViT-B/32). */
  readonly size: number;
  /** Image height and width in pixels. */
  readonly height: number;
  readonly width: number;
  /** Crop sizes are drawn as min + (max - min) · u^cutPow: > 1 favours small crops. @defaultValue 1 */
  readonly cutPow?: number;
  /** Smallest crop side as a fraction of the image's short side. @defaultValue 0.25 */
  readonly minFraction?: number;
  /** Probability of a horizontal flip per cutout. @defaultValue 0.5 */
  readonly flipProbability?: number;
}

export interface CutoutSpec {
  readonly top: number;
  readonly left: number;
  readonly side: number;
  readonly flip: boolean;
}

export interface CutoutMatrices {
  /** [count, size, height]: row interpolation (vertical). */
  readonly rows: Float32Array;
  /** [count, size, width]: column interpolation (horizontal), flip folded in. */
  readonly cols: Float32Array;
  readonly specs: readonly CutoutSpec[];
}

/**
 * Weights of an antialiased linear (triangle) resampling of the source span [offset, offset+len)
 * to `out` samples, as PIL's BILINEAR resize does: the filter widens by the scale when shrinking,
 * so downsampled cutouts are not aliased. Returns a dense [out, total] matrix.
 */
export function resampleMatrix(out: number, offset: number, len: number, total: number): Float32Array {
  const m = new Float32Array(out * total);
  const scale = len / out;
  const support = Math.max(scale, 1);
  for (let i = 0; i < out; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(len, Math.ceil(center + support));
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      const w = Math.max(0, 1 - Math.abs((j + 0.5 - center) / support));
      m[i * total + offset + j] = w;
      sum += w;
    }
    if (sum > 0) for (let j = lo; j < hi; j++) m[i * total + offset + j]! /= sum;
  }
  return m;
}

/** Draws cutout crops and builds their matrices. `rand` returns uniform [0, 1). */
export function makeCutouts(rand: () => number, o: CutoutOptions): CutoutMatrices {
  const cutPow = o.cutPow ?? 1;
  const flipP = o.flipProbability ?? 0.5;
  const short = Math.min(o.height, o.width);
  const minSide = Math.max(1, Math.min(short, Math.round(short * (o.minFraction ?? 0.25))));
  const specs: CutoutSpec[] = [];
  for (let k = 0; k < o.count; k++) {
    const side = Math.min(short, Math.floor(rand() ** cutPow * (short - minSide + 1)) + minSide);
    const top = Math.floor(rand() * (o.height - side + 1));
    const left = Math.floor(rand() * (o.width - side + 1));
    specs.push({ top, left, side, flip: rand() < flipP });
  }
  return cutoutMatrices(specs, o.size, o.height, o.width);
}

/** Matrices for given crops (also used by tests and for a deterministic full-image view). */
export function cutoutMatrices(
  specs: readonly CutoutSpec[],
  size: number,
  height: number,
  width: number,
): CutoutMatrices {
  const rows = new Float32Array(specs.length * size * height);
  const cols = new Float32Array(specs.length * size * width);
  specs.forEach((s, k) => {
    rows.set(resampleMatrix(size, s.top, s.side, height), k * size * height);
    const c = resampleMatrix(size, s.left, s.side, width);
    if (s.flip) {
      for (let i = 0; i < size; i++)
        cols.set(c.subarray((size - 1 - i) * width, (size - i) * width), (k * size + i) * width);
    } else {
      cols.set(c, k * size * width);
    }
  });
  return { rows, cols, specs };
}
