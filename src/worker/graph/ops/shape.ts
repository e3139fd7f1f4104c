// Ops that move data without arithmetic: reshape, transpose, concat, slice, split, gather,
// expand, pad. All shapes are resolved at build time; VJPs are the matching inverse moves.
import { fmtShape, type Graph, GraphError, type Shape, sizeOf, type Tensor } from '../graph.js';
import { sumToShape } from './elementwise.js';
import { normAxis, sameShape, stridesOf } from './shape-utils.js';

/** Reshape; one dimension may be -1 (inferred). */
export function reshape(x: Tensor, shapeIn: readonly number[]): Tensor {
  const total = sizeOf(x.shape);
  const unknown = shapeIn.filter((d) => d === -1).length;
  if (unknown > 1 || shapeIn.some((d) => d < -1 || !Number.isInteger(d))) {
    throw new GraphError(`Reshape: bad target shape ${fmtShape(shapeIn)}`);
  }
  const known = shapeIn.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const shape = shapeIn.map((d) => (d === -1 ? (known === 0 ? 0 : total / known) : d));
  if (sizeOf(shape) !== total || shape.some((d) => !Number.isInteger(d))) {
    throw new GraphError(
      `Reshape: cannot reshape ${fmtShape(x.shape)} (${total} values) to ${fmtShape(shapeIn)}`,
    );
  }
  if (sameShape(shape, x.shape)) return x;
  const g = x.graph;
  return g.emit('Reshape', [x, g.int64s(shape, 'shape')], {
    // ONNX reads a 0 in the target as "copy the input's dimension" unless allowzero is set; our
    // shapes are fully resolved, so a 0 always means an empty axis.
    ...(shape.includes(0) && { attrs: { allowzero: { type: 'int', value: 1 } } }),
    outputs: [{ shape, dtype: x.dtype }],
    vjp: ([gy]) => [gy ? reshape(gy, x.shape) : undefined],
  })[0]!;
}

export const unsqueeze = (x: Tensor, axis: number): Tensor => {
  const a = normAxis('Unsqueeze', axis, x.shape.length + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
};

export const squeeze = (x: Tensor, axis: number): Tensor => {
  const a = normAxis('Squeeze', axis, x.shape.length);
  if (x.shape[a] !== 1) throw new GraphError(`Squeeze: axis ${axis} of ${fmtShape(x.shape)} is not 1`);
  return reshape(
    x,
    x.shape.filter((_, i) => i !== a),
  );
};

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const rank = x.shape.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new GraphError(`Transpose: perm [${perm.join(',')}] is not a permutation of ${rank} axes`);
  }
  if (perm.every((p, i) => p === i)) return x;
  const inverse = new Array<number>(rank);
  perm.forEach((p, i) => {
    inverse[p] = i;
  });
  return x.graph.emit('Transpose', [x], {
    attrs: { perm: { type: 'ints', value: perm } },
    outputs: [{ shape: perm.map((p) => x.shape[p]!), dtype: x.dtype }],
    vjp: ([gy]) => [gy ? transpose(gy, inverse) : undefined],
  })[0]!;
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0];
  if (!first) throw new GraphError('Concat: needs at least one tensor');
  const rank = first.shape.length;
  const a = normAxis('Concat', axis, rank);
  for (const x of xs) {
    if (
      x.dtype !== first.dtype ||
      x.shape.length !== rank ||
      x.shape.some((d, i) => i !== a && d !== first.shape[i])
    ) {
      throw new GraphError(
        `Concat: shapes ${xs.map((t) => fmtShape(t.shape)).join(', ')} do not match outside axis ${axis}`,
      );
    }
  }
  if (xs.length === 1) return first;
  const sizes = xs.map((x) => x.shape[a]!);
  const shape = first.shape.map((d, i) => (i === a ? sizes.reduce((s, v) => s + v, 0) : d));
  return first.graph.emit('Concat', xs, {
    attrs: { axis: { type: 'int', value: a } },
    outputs: [{ shape, dtype: first.dtype }],
    vjp: ([gy], needs) => {
      if (!gy) return [];
      const parts = split(gy, sizes, a);
      return parts.map((p, i) => (needs[i] ? p : undefined));
    },
  })[0]!;
}

/** Split along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const a = normAxis('Split', axis, x.shape.length);
  if (sizes.reduce((s, v) => s + v, 0) !== x.shape[a] || sizes.some((s) => s < 0)) {
    throw new GraphError(
      `Split: sizes [${sizes.join(',')}] do not add up to axis ${axis} of ${fmtShape(x.shape)}`,
    );
  }
  if (sizes.length === 1) return [x];
  const g = x.graph;
  return g.emit('Split', [x, g.int64s(sizes, 'split')], {
    attrs: { axis: { type: 'int', value: a } },
    outputs: sizes.map((s) => ({ shape: x.shape.map((d, i) => (i === a ? s : d)), dtype: x.dtype })),
    vjp: (gys) => {
      const withGrad = gys.flatMap((gy, i) => (gy ? [i] : []));
      if (withGrad.length === 0) return [undefined];
      const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((s, v) => s + v, 0));
      if (withGrad.length === 1) {
        // One part carries a gradient: pad it back to x's shape (Pad writes the zeros as it copies).
        const i = withGrad[0]!;
        const pads = new Array<number>(2 * x.shape.length).fill(0);
        pads[a] = offsets[i]!;
        pads[a + x.shape.length] = x.shape[a]! - offsets[i]! - sizes[i]!;
        return [pad(gys[i]!, pads)];
      }
      // Several: concatenate, with one run-time zero tensor for each run of parts without one.
      const parts: Tensor[] = [];
      let run = 0;
      const flush = () => {
        if (run > 0)
          parts.push(
            zeros(
              g,
              x.shape.map((d, k) => (k === a ? run : d)),
            ),
          );
        run = 0;
      };
      gys.forEach((gy, i) => {
        if (gy) {
          flush();
          parts.push(gy);
        } else run += sizes[i]!;
      });
      flush();
      return [concat(parts, a)];
    },
  });
}

/**
 * A float32 zero tensor of `shape`, made at run time by ConstantOfShape: the model holds its int64
 * shape, not the zeros (a symbolic zero of a VJP or of grad() can be activation-sized). Untaped: it
 * is a constant to autodiff.
 */
export function zeros(g: Graph, shape: Shape): Tensor {
  // ConstantOfShape without a `value` attribute fills float32 zeros.
  return g.emit('ConstantOfShape', [g.int64s(shape, 'zeros_shape')], {
    outputs: [{ shape: [...shape], dtype: 'float32' }],
    noTape: true,
  })[0]!;
}

export interface SliceSpec {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  /** @defaultValue the first starts.length axes */
  readonly axes?: readonly number[];
  /** @defaultValue 1 for each axis */
  readonly steps?: readonly number[];
}

/** ONNX Slice with static starts/ends/axes/steps (numpy semantics, negative steps allowed). */
export function slice(x: Tensor, spec: SliceSpec): Tensor {
  const rank = x.shape.length;
  const axesIn = spec.axes ?? spec.starts.map((_, i) => i);
  const axes = axesIn.map((a) => normAxis('Slice', a, rank));
  const twice = axes.find((a, i) => axes.indexOf(a) !== i);
  // ORT rejects repeated axes only when the session is created; say so while building.
  if (twice !== undefined) throw new GraphError(`Slice: axes [${axesIn.join(',')}] name axis ${twice} twice`);
  const steps = spec.steps ?? axes.map(() => 1);
  if (
    spec.starts.length !== axes.length ||
    spec.ends.length !== axes.length ||
    steps.length !== axes.length
  ) {
    throw new GraphError('Slice: starts, ends, axes and steps must have the same length');
  }
  // Resolve each axis to the list of source indices it keeps (numpy clamping rules).
  const picks: number[][] = x.shape.map((d) => Array.from({ length: d }, (_, i) => i));
  // What ORT gets: the resolved bounds, never the raw ones. ONNX clamps differently from numpy
  // when a negative step starts before the beginning (ONNX keeps element 0, numpy keeps nothing),
  // and the declared output shape must be what ORT computes.
  const onnxStarts: number[] = [];
  const onnxEnds: number[] = [];
  const onnxSteps: number[] = [];
  axes.forEach((a, k) => {
    const d = x.shape[a]!;
    const step = steps[k]!;
    if (step === 0 || !Number.isInteger(step)) throw new GraphError('Slice: steps must be non-zero integers');
    let start = spec.starts[k]!;
    let end = spec.ends[k]!;
    // +-Infinity are fine ("to the end"): only the resolved bounds reach ONNX.
    if ([start, end].some((v) => !Number.isInteger(v) && Math.abs(v) !== Number.POSITIVE_INFINITY)) {
      throw new GraphError(`Slice: starts and ends must be integers, got ${start}:${end} on axis ${a}`);
    }
    if (start < 0) start += d;
    if (end < 0) end += d;
    const idx: number[] = [];
    if (step > 0) {
      start = Math.min(Math.max(start, 0), d);
      end = Math.min(Math.max(end, 0), d);
      for (let i = start; i < end; i += step) idx.push(i);
    } else {
      start = Math.min(Math.max(start, -1), d - 1);
      end = Math.min(Math.max(end, -1), d - 1);
      for (let i = start; i > end; i += step) idx.push(i);
    }
    picks[a] = idx;
    const first = idx[0];
    const last = idx[idx.length - 1];
    if (first === undefined || last === undefined) {
      onnxStarts.push(0);
      onnxEnds.push(0);
      onnxSteps.push(1);
    } else {
      onnxStarts.push(first);
      // An end of -1 would mean "the last element" to ONNX; -(d + 1) clamps to before index 0.
      onnxEnds.push(step > 0 ? last + 1 : last === 0 ? -(d + 1) : last - 1);
      onnxSteps.push(step);
    }
  });
  const shape = picks.map((p) => p.length);
  if (sameShape(shape, x.shape) && steps.every((s) => s > 0)) return x;
  const g = x.graph;
  return g.emit(
    'Slice',
    [
      x,
      g.int64s(onnxStarts, 'starts'),
      g.int64s(onnxEnds, 'ends'),
      g.int64s(axes, 'axes'),
      g.int64s(onnxSteps, 'steps'),
    ],
    {
      outputs: [{ shape, dtype: x.dtype }],
      vjp: ([gy]) => {
        if (!gy) return [];
        // Contiguous forward slices: pad the gradient back with zeros (cheap). Otherwise scatter.
        const contiguous = picks.every((p) => p.every((v, i) => i === 0 || v === p[i - 1]! + 1));
        if (contiguous) {
          const pads = [
            ...picks.map((p) => p[0] ?? 0),
            ...picks.map((p, a) => x.shape[a]! - (p.length ? p[p.length - 1]! + 1 : 0)),
          ];
          return [pad(gy, pads)];
        }
        return [scatterInto(gy, picks, x.shape)];
      },
    },
  )[0]!;
}

/** Places `src` (shape = picks lengths) at the cross product of `picks` in a zero tensor of `shape`. */
function scatterInto(src: Tensor, picks: readonly number[][], shape: Shape): Tensor {
  const g = src.graph;
  const rank = shape.length;
  const n = sizeOf(src.shape);
  const idx = new BigInt64Array(n * rank);
  const srcStrides = stridesOf(src.shape);
  for (let flat = 0; flat < n; flat++) {
    let rem = flat;
    for (let a = 0; a < rank; a++) {
      const coord = Math.floor(rem / srcStrides[a]!);
      rem -= coord * srcStrides[a]!;
      idx[flat * rank + a] = BigInt(picks[a]![coord]!);
    }
  }
  const indices = g.constant(idx, [...src.shape, rank], { name: 'scatter_idx' });
  return g.emit('ScatterND', [zeros(g, shape), indices, src], { outputs: [{ shape, dtype: src.dtype }] })[0]!;
}

/** Broadcast to `shape` (numpy rules; `shape` must be the full result). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const lead = shape.length - x.shape.length;
  if (lead < 0 || x.shape.some((d, i) => d !== 1 && d !== shape[lead + i])) {
    throw new GraphError(`Expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  const g = x.graph;
  return g.emit('Expand', [x, g.int64s(shape, 'shape')], {
    outputs: [{ shape: [...shape], dtype: x.dtype }],
    vjp: ([gy]) => [gy ? sumToShape(gy, x.shape) : undefined],
  })[0]!;
}

/**
 * Gather along `axis` with int64 indices (a constant or a graph input). The gradient w.r.t. the
 * data scatters-adds back (repeated indices accumulate); indices carry none.
 */
export function gather(data: Tensor, indices: Tensor, axis = 0): Tensor {
  const rank = data.shape.length;
  const a = normAxis('Gather', axis, rank);
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32') {
    throw new GraphError(`Gather: indices "${indices.name}" are ${indices.dtype}, not int64`);
  }
  if (indices.value) {
    const d = data.shape[a]!;
    for (const v of indices.value as BigInt64Array | Int32Array) {
      const n = Number(v);
      if (n < -d || n >= d)
        throw new GraphError(
          `Gather: index ${n} is out of range for axis ${axis} of ${fmtShape(data.shape)}`,
        );
    }
  }
  const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  const g = data.graph;
  return g.emit('Gather', [data, indices], {
    attrs: { axis: { type: 'int', value: a } },
    outputs: [{ shape, dtype: data.dtype }],
    vjp: ([gy], needs) => {
      if (!gy || !needs[0]) return [];
      // Move the gathered axis block to the front, scatter-add rows, move back.
      const idxRank = indices.shape.length;
      const before = data.shape.slice(0, a).length;
      const permFront = [
        ...Array.from({ length: idxRank }, (_, i) => before + i),
        ...Array.from({ length: before }, (_, i) => i),
        ...Array.from({ length: rank - a - 1 }, (_, i) => before + idxRank + i),
      ];
      const gyFront = transpose(gy, permFront);
      const dataFrontShape = [data.shape[a]!, ...data.shape.slice(0, a), ...data.shape.slice(a + 1)];
      const idx64 =
        indices.dtype === 'int64'
          ? indices
          : g.emit('Cast', [indices], {
              attrs: { to: { type: 'int', value: 7 } },
              outputs: [{ shape: indices.shape, dtype: 'int64' }],
            })[0]!;
      const idx = reshape(idx64, [...indices.shape, 1]);
      const scattered = g.emit('ScatterND', [zeros(g, dataFrontShape), idx, gyFront], {
        attrs: { reduction: { type: 'string', value: 'add' } },
        outputs: [{ shape: dataFrontShape, dtype: 'float32' }],
      })[0]!;
      const permBack = [
        ...Array.from({ length: a }, (_, i) => i + 1),
        0,
        ...Array.from({ length: rank - a - 1 }, (_, i) => a + 1 + i),
      ];
      return [transpose(scattered, permBack), undefined];
    },
  })[0]!;
}

/**
 * Constant zero padding; `pads` is ONNX order [x1_begin, x2_begin, ..., x1_end, x2_end, ...].
 * Negative pads crop. The VJP slices the gradient back out.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  const rank = x.shape.length;
  if (pads.length !== 2 * rank || pads.some((p) => !Number.isInteger(p))) {
    throw new GraphError(
      `Pad: needs ${2 * rank} integer pads for ${fmtShape(x.shape)}, got [${pads.join(',')}]`,
    );
  }
  if (pads.every((p) => p === 0)) return x;
  const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + rank]!);
  if (shape.some((d) => d < 0))
    throw new GraphError(`Pad: pads [${pads.join(',')}] crop ${fmtShape(x.shape)} below zero`);
  const g = x.graph;
  // ONNX requires the pad value in the data's own type.
  let padValue: Tensor;
  if (x.dtype === 'float32') padValue = g.scalar(value);
  else if (x.dtype === 'int64' && Number.isInteger(value)) padValue = g.scalar(value, 'int64');
  else throw new GraphError(`Pad: cannot pad a ${x.dtype} tensor ${fmtShape(x.shape)} with ${value}`);
  return g.emit('Pad', [x, g.int64s(pads, 'pads'), padValue], {
    attrs: { mode: { type: 'string', value: 'constant' } },
    outputs: [{ shape, dtype: x.dtype }],
    vjp: ([gy]) => {
      // Padding and cropping undo each other: the VJP of pad(x, p) is pad(gy, -p).
      return [
        gy
          ? pad(
              gy,
              pads.map((p) => -p),
            )
          : undefined,
      ];
    },
  })[0]!;
}
