// Elementwise ops with numpy broadcasting and their VJPs. A gradient flowing into a broadcast
// input is summed back over the broadcast axes (sumToShape), so shapes stay static and exact.
import { type DType, fmtShape, type Graph, GraphError, ONNX_DTYPE, type Tensor } from '../graph.js';
import { reduceSum } from './reduce.js';
import { reshape } from './shape.js';
import { broadcastAxes, broadcastShapes, sameShape } from './shape-utils.js';

export type TensorLike = Tensor | number;

function graphOf(op: string, ...xs: TensorLike[]): Graph {
  for (const x of xs) if (typeof x !== 'number') return x.graph;
  throw new GraphError(`${op}: at least one operand must be a tensor`);
}

function lift(g: Graph, x: TensorLike): Tensor {
  return typeof x === 'number' ? g.scalar(x) : x;
}

function dtypeMismatch(op: string, a: Tensor, b: Tensor): GraphError {
  return new GraphError(
    `${op}: dtypes differ (${a.dtype} ${fmtShape(a.shape)} and ${b.dtype} ${fmtShape(b.shape)})`,
  );
}

function requireFloat(op: string, ...xs: Tensor[]): void {
  for (const x of xs) {
    if (x.dtype !== 'float32')
      throw new GraphError(`${op}: "${x.name}" is ${x.dtype} ${fmtShape(x.shape)}; this op takes float32`);
  }
}

/** Sums `t` over the axes it was broadcast along so that it gets `shape`. */
export function sumToShape(t: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(t.shape, shape)) return t;
  const axes = broadcastAxes(t.shape, shape);
  const summed = axes.length > 0 ? reduceSum(t, axes, { keepdims: true }) : t;
  return sameShape(summed.shape, shape) ? summed : reshape(summed, shape);
}

function binary(
  op: 'Add' | 'Sub' | 'Mul' | 'Div',
  aIn: TensorLike,
  bIn: TensorLike,
  vjp: (a: Tensor, b: Tensor, y: Tensor, gy: Tensor, needs: readonly boolean[]) => (Tensor | undefined)[],
): Tensor {
  const g = graphOf(op, aIn, bIn);
  const a = lift(g, aIn);
  const b = lift(g, bIn);
  if (a.dtype !== b.dtype) throw dtypeMismatch(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const y: Tensor = g.emit(op, [a, b], {
    outputs: [{ shape, dtype: a.dtype }],
    vjp: ([gy], needs) => (gy ? vjp(a, b, y, gy, needs) : []),
  })[0]!;
  return y;
}

export function add(a: TensorLike, b: TensorLike): Tensor {
  return binary('Add', a, b, (a, b, _y, gy, needs) => [
    needs[0] ? sumToShape(gy, a.shape) : undefined,
    needs[1] ? sumToShape(gy, b.shape) : undefined,
  ]);
}

export function sub(a: TensorLike, b: TensorLike): Tensor {
  return binary('Sub', a, b, (a, b, _y, gy, needs) => [
    needs[0] ? sumToShape(gy, a.shape) : undefined,
    needs[1] ? neg(sumToShape(gy, b.shape)) : undefined,
  ]);
}

export function mul(a: TensorLike, b: TensorLike): Tensor {
  return binary('Mul', a, b, (a, b, _y, gy, needs) => [
    needs[0] ? sumToShape(mul(gy, b), a.shape) : undefined,
    needs[1] ? sumToShape(mul(gy, a), b.shape) : undefined,
  ]);
}

export function div(a: TensorLike, b: TensorLike): Tensor {
  return binary('Div', a, b, (a, b, y, gy, needs) => {
    const ga = needs[0] || needs[1] ? div(gy, b) : undefined;
    return [
      needs[0] && ga ? sumToShape(ga, a.shape) : undefined,
      // d(a/b)/db = -a/b^2 = -y/b, so gb = -(gy/b)*y
      needs[1] && ga ? neg(sumToShape(mul(ga, y), b.shape)) : undefined,
    ];
  });
}

function unary(op: string, x: Tensor, vjp: (x: Tensor, y: Tensor, gy: Tensor) => Tensor, attrs = {}): Tensor {
  requireFloat(op, x);
  const y: Tensor = x.graph.emit(op, [x], {
    attrs,
    outputs: [{ shape: x.shape, dtype: x.dtype }],
    vjp: ([gy]) => [gy ? vjp(x, y, gy) : undefined],
  })[0]!;
  return y;
}

export const neg = (x: Tensor): Tensor => unary('Neg', x, (_x, _y, gy) => neg(gy));
export const exp = (x: Tensor): Tensor => unary('Exp', x, (_x, y, gy) => mul(gy, y));
export const log = (x: Tensor): Tensor => unary('Log', x, (x, _y, gy) => div(gy, x));
export const sqrt = (x: Tensor): Tensor => unary('Sqrt', x, (_x, y, gy) => div(mul(gy, 0.5), y));
export const sigmoid = (x: Tensor): Tensor => unary('Sigmoid', x, (_x, y, gy) => mul(gy, mul(y, sub(1, y))));
export const tanh = (x: Tensor): Tensor => unary('Tanh', x, (_x, y, gy) => mul(gy, sub(1, mul(y, y))));
export const abs = (x: Tensor): Tensor => unary('Abs', x, (x, _y, gy) => mul(gy, sign(x)));
/** Sign carries no gradient (zero almost everywhere). */
export const sign = (x: Tensor): Tensor =>
  x.graph.emit('Sign', [x], { outputs: [{ shape: x.shape, dtype: x.dtype }], vjp: () => [undefined] })[0]!;
export const relu = (x: Tensor): Tensor =>
  unary('Relu', x, (x, _y, gy) => where(greater(x, x.graph.scalar(0)), gy, x.graph.scalar(0)));
export const erf = (x: Tensor): Tensor =>
  // d erf(x)/dx = 2/sqrt(pi) * exp(-x^2)
  unary('Erf', x, (x, _y, gy) => mul(gy, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI))));

/** x^p for a constant exponent p. */
export function pow(x: Tensor, p: number): Tensor {
  requireFloat('Pow', x);
  if (p === 1) return identity(x);
  const g = x.graph;
  const y: Tensor = g.emit('Pow', [x, g.scalar(p)], {
    outputs: [{ shape: x.shape, dtype: 'float32' }],
    vjp: ([gy]) => {
      // x^0 is constant: no gradient (0 * x^-1 would give NaN at x = 0).
      if (!gy || p === 0) return [];
      const dydx = p === 2 ? mul(x, 2) : mul(pow(x, p - 1), p);
      return [mul(gy, dydx)];
    },
  })[0]!;
  return y;
}

export function identity(x: Tensor): Tensor {
  const y: Tensor = x.graph.emit('Identity', [x], {
    outputs: [{ shape: x.shape, dtype: x.dtype }],
    vjp: ([gy]) => [gy],
  })[0]!;
  return y;
}

/** x * sigmoid(alpha * x): SiLU for alpha = 1, QuickGELU for alpha = 1.702. One composite, exact VJP. */
function sigmoidGated(op: string, x: Tensor, alpha: number): Tensor {
  requireFloat(op, x);
  let s!: Tensor;
  let out!: Tensor;
  const [y] = x.graph.composite(
    op,
    [x],
    () => {
      s = sigmoid(alpha === 1 ? x : mul(x, alpha));
      out = mul(x, s);
      return [out];
    },
    ([gy]) => {
      if (!gy) return [];
      // d/dx x*s(ax) = s + a*x*s*(1-s) = s + a*y*(1-s): reusing y = x*s saves one pass over the
      // activation (these ops are memory-bound at decoder sizes, so passes are the cost).
      const ay = alpha === 1 ? out : mul(out, alpha);
      return [mul(gy, add(s, mul(ay, sub(1, s))))];
    },
  );
  return y!;
}

export const silu = (x: Tensor): Tensor => sigmoidGated('SiLU', x, 1);
export const quickGelu = (x: Tensor): Tensor => sigmoidGated('QuickGELU', x, 1.702);

/** GELU with erf: 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu(x: Tensor): Tensor {
  requireFloat('GELU', x);
  let phi!: Tensor;
  const [y] = x.graph.composite(
    'GELU',
    [x],
    () => {
      phi = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5); // standard normal CDF
      return [mul(x, phi)];
    },
    ([gy]) => {
      if (!gy) return [];
      // d/dx x*Phi(x) = Phi(x) + x*pdf(x)
      const pdf = mul(exp(mul(mul(x, x), -0.5)), 1 / Math.sqrt(2 * Math.PI));
      return [mul(gy, add(phi, mul(x, pdf)))];
    },
  );
  return y!;
}

/** Clamp to [min, max]; the gradient passes where min <= x <= max (as torch.clamp). */
export function clip(x: Tensor, min?: number, max?: number): Tensor {
  requireFloat('Clip', x);
  const g = x.graph;
  const y: Tensor = g.emit(
    'Clip',
    [x, min === undefined ? undefined : g.scalar(min), max === undefined ? undefined : g.scalar(max)],
    {
      outputs: [{ shape: x.shape, dtype: 'float32' }],
      vjp: ([gy]) => {
        if (!gy) return [];
        // y == x exactly inside the range (ties at the bounds included), so the mask is Equal(x, y).
        return [where(equal(x, y), gy, g.scalar(0))];
      },
    },
  )[0]!;
  return y;
}

function compare(
  op: 'Equal' | 'Greater' | 'Less' | 'GreaterOrEqual' | 'LessOrEqual',
  a: Tensor,
  b: Tensor,
): Tensor {
  if (a.dtype !== b.dtype) throw dtypeMismatch(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  return a.graph.emit(op, [a, b], { outputs: [{ shape, dtype: 'bool' }] })[0]!;
}

export const equal = (a: Tensor, b: Tensor) => compare('Equal', a, b);
export const greater = (a: Tensor, b: Tensor) => compare('Greater', a, b);
export const less = (a: Tensor, b: Tensor) => compare('Less', a, b);

/** Where(cond, a, b) with broadcasting. The condition carries no gradient. */
export function where(cond: Tensor, aIn: TensorLike, bIn: TensorLike): Tensor {
  const g = cond.graph;
  if (cond.dtype !== 'bool')
    throw new GraphError(`Where: condition "${cond.name}" is ${cond.dtype}, not bool`);
  const a = lift(g, aIn);
  const b = lift(g, bIn);
  if (a.dtype !== b.dtype) throw dtypeMismatch('Where', a, b);
  const shape = broadcastShapes('Where', broadcastShapes('Where', cond.shape, a.shape), b.shape);
  const zero = g.scalar(0);
  return g.emit('Where', [cond, a, b], {
    outputs: [{ shape, dtype: a.dtype }],
    vjp: ([gy], needs) =>
      gy
        ? [
            undefined,
            needs[1] ? sumToShape(where(cond, gy, zero), a.shape) : undefined,
            needs[2] ? sumToShape(where(cond, zero, gy), b.shape) : undefined,
          ]
        : [],
  })[0]!;
}

/** Cast between dtypes; a cast to float32 from float32 passes the gradient, others carry none. */
export function cast(x: Tensor, to: DType): Tensor {
  return x.graph.emit('Cast', [x], {
    attrs: { to: { type: 'int', value: ONNX_DTYPE[to] } },
    outputs: [{ shape: x.shape, dtype: to }],
    vjp: ([gy]) => [x.dtype === 'float32' && to === 'float32' ? gy : undefined],
  })[0]!;
}

/** Asserts two tensors have equal shapes (for ops that do not broadcast). */
export function assertSameShape(op: string, a: Tensor, b: Tensor): void {
  if (!sameShape(a.shape, b.shape))
    throw new GraphError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
}
