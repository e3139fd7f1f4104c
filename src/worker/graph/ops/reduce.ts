// Reductions over static axes. Their VJPs broadcast the gradient back (Expand), scaled by
// 1/count for the mean.
import { fmtShape, type Tensor } from '../graph.js';
import { mul } from './elementwise.js';
import { expand, reshape } from './shape.js';
import { normAxis } from './shape-utils.js';

export interface ReduceOptions {
  /** Keep reduced axes as size 1. @defaultValue false */
  readonly keepdims?: boolean;
}

function reduce(
  op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax',
  x: Tensor,
  axesIn: readonly number[] | undefined,
  options: ReduceOptions,
): Tensor {
  const rank = x.shape.length;
  // The shape in the op label makes a bad axis easy to place in a big graph.
  const where = `${op} of ${fmtShape(x.shape)}`;
  const axes = [...new Set((axesIn ?? x.shape.map((_, i) => i)).map((a) => normAxis(where, a, rank)))].sort(
    (a, b) => a - b,
  );
  const keepdims = options.keepdims ?? false;
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const shape = keepdims ? kept : x.shape.filter((_, i) => !axes.includes(i));
  if (axes.length === 0) return x;
  const g = x.graph;
  const count = axes.reduce((acc, a) => acc * x.shape[a]!, 1);
  return g.emit(op, [x, g.int64s(axes, 'axes')], {
    attrs: { keepdims: { type: 'int', value: keepdims ? 1 : 0 } },
    outputs: [{ shape, dtype: x.dtype }],
    ...(op !== 'ReduceMax' && {
      vjp: ([gy]: readonly (Tensor | undefined)[]) => {
        if (!gy) return [];
        const back = expand(keepdims ? gy : reshape(gy, kept), x.shape);
        return [op === 'ReduceMean' ? mul(back, 1 / count) : back];
      },
    }),
  })[0]!;
}

/** Sum over `axes` (all when omitted). */
export const reduceSum = (x: Tensor, axes?: readonly number[], options: ReduceOptions = {}): Tensor =>
  reduce('ReduceSum', x, axes, options);

/** Mean over `axes` (all when omitted). */
export const reduceMean = (x: Tensor, axes?: readonly number[], options: ReduceOptions = {}): Tensor =>
  reduce('ReduceMean', x, axes, options);

/** Max over `axes`; used for numerics (e.g. stable softmax), it carries no gradient. */
export const reduceMax = (x: Tensor, axes?: readonly number[], options: ReduceOptions = {}): Tensor =>
  reduce('ReduceMax', x, axes, options);
