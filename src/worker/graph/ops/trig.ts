// Ops the VQGAN+CLIP loss needs beyond the basic set: Asin, L2 normalisation, the spherical
// distance between unit embeddings (2*asin(|a-b|/2)^2, as VQGAN-CLIP), and VQGAN-CLIP's clamp whose
// gradient still flows where it pushes a value back into range.
import { fmtShape, GraphError, type Tensor } from '../graph.js';
import { abs, add, clip, div, greater, less, mul, neg, sign, sqrt, sub, where } from './elementwise.js';
import { reduceSum } from './reduce.js';
import { reshape } from './shape.js';
import { normAxis } from './shape-utils.js';

function requireFloat(op: string, x: Tensor): void {
  if (x.dtype !== 'float32') {
    throw new GraphError(`${op}: "${x.name}" is ${x.dtype} ${fmtShape(x.shape)}; this op takes float32`);
  }
}

// Abramowitz & Stegun 4.4.46: asin(x) = pi/2 - sqrt(1 - x) * sum(a_k x^k) on [0, 1], error <= 2e-8.
const ASIN_POLY = [
  1.570796305, -0.2145988016, 0.0889789874, -0.0501743046, 0.030891881, -0.0170881256, 0.0066700901,
  -0.0012624911,
] as const;

/**
 * asin(x) for x in [-1, 1]; d/dx = 1 / sqrt(1 - x^2). Built from Abs, Sqrt, Mul, Add and Sign rather
 * than ONNX Asin: onnxruntime's CUDA provider has no Asin (nor Atan) kernel, so an Asin node would run
 * on the CPU with copies across the device each step. The polynomial is within ~1e-7 of asin in float32
 * (the A&S bound plus rounding), and the VJP is the exact derivative.
 */
export function asin(x: Tensor): Tensor {
  requireFloat('Asin', x);
  const [y] = x.graph.composite(
    'Asin',
    [x],
    () => {
      const ax = abs(x);
      let poly = mul(ax, ASIN_POLY[7]);
      for (let k = 6; k >= 1; k--) poly = mul(add(poly, ASIN_POLY[k]!), ax);
      poly = add(poly, ASIN_POLY[0]);
      // asin is odd: asin(x) = sign(x) * asin(|x|); at x = 0 the polynomial gives ~2e-8, Sign gives 0.
      return [mul(sign(x), sub(Math.PI / 2, mul(sqrt(sub(1, ax)), poly)))];
    },
    ([gy]) => [gy ? div(gy, sqrt(sub(1, mul(x, x)))) : undefined],
  );
  return y!;
}

/**
 * x / max(||x||, eps) along `axis` (torch.nn.functional.normalize). One composite with the exact
 * VJP (gy - y * <gy, y>) / ||x||, rather than differentiating sqrt and division separately.
 */
export function l2Normalize(x: Tensor, axis = -1, eps = 1e-12): Tensor {
  requireFloat('L2Normalize', x);
  const a = normAxis(`L2Normalize of ${fmtShape(x.shape)}`, axis, x.shape.length);
  const g = x.graph;
  let norm!: Tensor;
  let denom!: Tensor;
  let y!: Tensor;
  g.composite(
    'L2Normalize',
    [x],
    () => {
      norm = sqrt(reduceSum(mul(x, x), [a], { keepdims: true }));
      denom = clip(norm, eps);
      y = div(x, denom);
      return [y];
    },
    ([gy]) => {
      if (!gy) return [];
      // Below eps the denominator is a constant and the map is linear: the projection drops out.
      const proj = mul(y, reduceSum(mul(gy, y), [a], { keepdims: true }));
      const active = greater(norm, g.scalar(eps));
      return [div(sub(gy, where(active, proj, g.scalar(0))), denom)];
    },
  );
  return y;
}

/**
 * Spherical distance between every row of a [N, D] and every row of b [P, D], both unit rows:
 * 2 * asin(|a - b| / 2)^2, giving [N, P]. This is half the squared angle between them, VQGAN-CLIP's
 * loss. The VJP is written out because autodiff through |a - b| would divide 0 by 0 where rows
 * coincide, while the true gradient there is finite (d/da -> a - b as |a - b| -> 0).
 */
export function sphericalDistance(a: Tensor, b: Tensor): Tensor {
  requireFloat('SphericalDistance', a);
  requireFloat('SphericalDistance', b);
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[1]) {
    throw new GraphError(
      `SphericalDistance: expected [N, D] and [P, D], got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  }
  const [n, d] = a.shape as [number, number];
  const p = b.shape[0]!;
  const g = a.graph;
  let diff!: Tensor; // [N, P, D]
  let r!: Tensor; // [N, P]
  let h!: Tensor; // r / 2 clamped to 1 (rounding can push unit vectors' distance a hair past 2)
  let s!: Tensor; // asin(h)
  let out!: Tensor;
  g.composite(
    'SphericalDistance',
    [a, b],
    () => {
      diff = sub(reshape(a, [n, 1, d]), reshape(b, [1, p, d]));
      r = sqrt(reduceSum(mul(diff, diff), [2]));
      h = clip(mul(r, 0.5), undefined, 1);
      s = asin(h);
      out = mul(mul(s, s), 2);
      return [out];
    },
    ([gy], needs) => {
      if (!gy) return [];
      // d out / d diff = 2 * asin(h) / (r * sqrt(1 - h^2)) * diff; the factor tends to 1 as r -> 0.
      const factor = div(mul(s, 2), mul(r, sqrt(sub(1, mul(h, h)))));
      const safe = where(greater(r, g.scalar(1e-6)), factor, g.scalar(1));
      const gd = mul(reshape(mul(gy, safe), [n, p, 1]), diff); // [N, P, D]
      return [needs[0] ? reduceSum(gd, [1]) : undefined, needs[1] ? neg(reduceSum(gd, [0])) : undefined];
    },
  );
  return out;
}

/**
 * Clamp to [min, max] whose gradient passes wherever following it moves the value toward the
 * range (VQGAN-CLIP's ClampWithGrad): a pixel saturated by the decoder can still be pulled back,
 * instead of going dead as under torch.clamp. Inside the range it is the identity, like Clip.
 * This is not the derivative outside the range, by design.
 */
export function clampWithGrad(x: Tensor, min: number, max: number): Tensor {
  requireFloat('ClampWithGrad', x);
  if (!(min < max)) throw new GraphError(`ClampWithGrad: min ${min} must be below max ${max}`);
  const g = x.graph;
  let y!: Tensor;
  g.composite(
    'ClampWithGrad',
    [x],
    () => {
      y = clip(x, min, max);
      return [y];
    },
    ([gy]) => {
      if (!gy) return [];
      // Gradient descent moves x by -gy: keep gy where gy * (x - clamp(x)) >= 0.
      const away = less(mul(gy, sub(x, y)), g.scalar(0));
      return [where(away, g.scalar(0), gy)];
    },
  );
  return y;
}
