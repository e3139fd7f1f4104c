// Static shape arithmetic shared by the ops: numpy broadcasting and axis normalisation.
import { fmtShape, GraphError, type Shape } from '../graph.js';

/** Numpy-style broadcast of two shapes, or a GraphError naming the op and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new GraphError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Normalises a possibly negative axis for a tensor of `rank`. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank)
    throw new GraphError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Axes to sum a gradient of shape `from` over so it fits `to` (which broadcast up to `from`):
 * the leading extra axes and the axes where `to` has 1 and `from` does not.
 */
export function broadcastAxes(from: Shape, to: Shape): number[] {
  const lead = from.length - to.length;
  const axes: number[] = [];
  for (let i = 0; i < from.length; i++) {
    if (i < lead || (to[i - lead] === 1 && from[i] !== 1)) axes.push(i);
  }
  return axes;
}

/** Strides of a row-major shape. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}
