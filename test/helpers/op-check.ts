// Checks a graph op (or a whole network) against a plain float64 reference: the forward output
// through ORT equals the reference, and the gradient built by our autodiff equals central finite
// differences of the reference. Every op test goes through here so the criteria stay uniform.
import { expect } from 'vitest';
import { grad } from '../../src/worker/graph/autodiff.js';
import { Graph, type Tensor } from '../../src/worker/graph/graph.js';
import { mul } from '../../src/worker/graph/ops/elementwise.js';
import { reduceSum } from '../../src/worker/graph/ops/reduce.js';
import { serialize } from '../../src/worker/graph/serialize.js';
import { ModelSession } from '../../src/worker/onnx/session.js';
import { type Nd, nd } from './nd.js';
import { mulberry32, randn } from './random.js';

export interface OpInput {
  readonly shape: readonly number[];
  /** Values; default standard normal from the seeded PRNG. */
  readonly data?: Float64Array | readonly number[];
  /** Fed as a graph input (differentiable) or baked in as a constant. @defaultValue 'input' */
  readonly kind?: 'input' | 'constant';
  /** Check the gradient w.r.t. this input. @defaultValue true for inputs */
  readonly grad?: boolean;
}

export interface OpCase {
  readonly inputs: readonly OpInput[];
  /** Builds the op under test from tensors in the order of `inputs`. */
  readonly build: (g: Graph, xs: Tensor[]) => Tensor;
  /** The float64 reference on plain arrays in the order of `inputs`. */
  readonly ref: (xs: Nd[]) => Nd;
  /** Forward tolerance, relative to the largest |reference| value. @defaultValue 1e-5 */
  readonly forwardTol?: number;
  /** Gradient tolerance, relative to the largest |finite difference|. @defaultValue 1e-3 */
  readonly gradTol?: number;
  /** Finite-difference step. @defaultValue 1e-4 */
  readonly eps?: number;
  /** Check at most this many coordinates per input (spread evenly). @defaultValue 48 */
  readonly maxCoords?: number;
  /** @defaultValue 1 */
  readonly seed?: number;
}

export interface OpCheckResult {
  readonly forwardError: number;
  readonly gradErrors: number[];
}

/** Largest |a - b| divided by the largest |b| (0 when both are all zero). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(Number(a[i]) - Number(b[i])));
    den = Math.max(den, Math.abs(Number(b[i])));
  }
  if (den === 0) return num;
  return num / den;
}

export async function checkOp(c: OpCase): Promise<OpCheckResult> {
  const rand = mulberry32(c.seed ?? 1);
  const values = c.inputs.map((inp) => {
    const n = inp.shape.reduce((a, b) => a * b, 1);
    const data = inp.data ? Float64Array.from(inp.data) : Float64Array.from({ length: n }, () => randn(rand));
    if (data.length !== n)
      throw new Error(`op-check: input data length ${data.length} != shape ${inp.shape}`);
    // Round to float32 so ORT and the reference see the same numbers.
    return nd(Float64Array.from(Float32Array.from(data)), inp.shape);
  });

  const g = new Graph();
  const tensors = c.inputs.map((inp, i) =>
    (inp.kind ?? 'input') === 'input'
      ? g.input(`x${i}`, inp.shape)
      : g.constant(Float32Array.from(values[i]!.data), inp.shape, { name: `c${i}` }),
  );
  const y = c.build(g, tensors);
  const refY = c.ref(values);
  expect(y.shape, 'output shape vs reference shape').toEqual(refY.shape);

  // Loss = sum(y * r) with a fixed random r, so every output element matters.
  const r = Float64Array.from({ length: refY.data.length }, () => randn(rand));
  const rConst = g.constant(Float32Array.from(r), y.shape, { name: 'r' });
  const loss = reduceSum(mul(y, rConst));
  const gradIdx = c.inputs
    .map((inp, i) => ((inp.kind ?? 'input') === 'input' && inp.grad !== false ? i : -1))
    .filter((i) => i >= 0);
  const grads = grad(
    loss,
    gradIdx.map((i) => tensors[i]!),
  );
  const outputs: Record<string, Tensor> = { y };
  grads.forEach((gt, k) => {
    outputs[`g${gradIdx[k]}`] = gt;
  });
  const model = serialize(g, { outputs });
  const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
  const feeds: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
  c.inputs.forEach((inp, i) => {
    if ((inp.kind ?? 'input') === 'input')
      feeds[`x${i}`] = { data: Float32Array.from(values[i]!.data), dims: inp.shape };
  });
  const out = await session.run(feeds);
  await session.release();

  const forwardError = relError(out.y!.data as Float32Array, refY.data);
  expect(forwardError, 'forward vs float64 reference').toBeLessThanOrEqual(c.forwardTol ?? 1e-5);

  const objective = (xs: Nd[]) => {
    const yy = c.ref(xs).data;
    let s = 0;
    for (let i = 0; i < yy.length; i++) s += yy[i]! * r[i]!;
    return s;
  };
  const eps = c.eps ?? 1e-4;
  const gradErrors = gradIdx.map((i) => {
    const got = out[`g${i}`]!.data as Float32Array;
    const x = values[i]!;
    const n = x.data.length;
    const maxCoords = c.maxCoords ?? 48;
    const coords =
      n <= maxCoords
        ? [...Array(n).keys()]
        : Array.from({ length: maxCoords }, (_, k) => Math.floor((k * n) / maxCoords));
    const fd = coords.map((j) => {
      const xs = values.slice();
      const plus = nd(Float64Array.from(x.data), x.shape);
      const minus = nd(Float64Array.from(x.data), x.shape);
      plus.data[j]! += eps;
      minus.data[j]! -= eps;
      xs[i] = plus;
      const fp = objective(xs);
      xs[i] = minus;
      const fm = objective(xs);
      return (fp - fm) / (2 * eps);
    });
    const err = relError(
      coords.map((j) => got[j]!),
      fd,
    );
    expect(err, `gradient w.r.t. input ${i} vs finite differences`).toBeLessThanOrEqual(c.gradTol ?? 1e-3);
    return err;
  });
  return { forwardError, gradErrors };
}
