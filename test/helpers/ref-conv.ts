// Float64 references for the data-movement and convolution ops of the graph builder: conv2d with
// stride/pad/dilation, nearest x2 upsampling, pad, slice, gather, concat, split and expand.
// Written as direct loops over output coordinates, independent of src/, so they can judge it.
import { type Nd, nd, ravel, size, unravel, zeros } from './nd.js';

export interface RefConvOptions {
  readonly strides?: readonly [number, number];
  /** [top, left, bottom, right] */
  readonly pads?: readonly [number, number, number, number];
  readonly dilations?: readonly [number, number];
}

/** NCHW x OIHW convolution (groups = 1) with zero padding. */
export function conv2dRef(x: Nd, w: Nd, b: Nd | undefined, options: RefConvOptions = {}): Nd {
  const [s0, s1] = options.strides ?? [1, 1];
  const [pt, pl, pb, pr] = options.pads ?? [0, 0, 0, 0];
  const [d0, d1] = options.dilations ?? [1, 1];
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [o, ci, kh, kw] = w.shape as [number, number, number, number];
  if (ci !== c) throw new Error(`conv2dRef: channels ${ci} != ${c}`);
  const oh = Math.floor((h + pt + pb - d0 * (kh - 1) - 1) / s0) + 1;
  const ow = Math.floor((wd + pl + pr - d1 * (kw - 1) - 1) / s1) + 1;
  const out = zeros([n, o, oh, ow]);
  for (let ni = 0; ni < n; ni++)
    for (let oi = 0; oi < o; oi++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let s = b ? b.data[oi]! : 0;
          for (let cc = 0; cc < c; cc++)
            for (let ki = 0; ki < kh; ki++)
              for (let kj = 0; kj < kw; kj++) {
                const yi = i * s0 - pt + ki * d0;
                const xj = j * s1 - pl + kj * d1;
                if (yi < 0 || yi >= h || xj < 0 || xj >= wd) continue;
                s += x.data[ravel([ni, cc, yi, xj], x.shape)]! * w.data[ravel([oi, cc, ki, kj], w.shape)]!;
              }
          out.data[ravel([ni, oi, i, j], out.shape)] = s;
        }
  return out;
}

/** out[n, c, i, j] = x[n, c, floor(i/2), floor(j/2)]. */
export function upsampleNearest2xRef(x: Nd): Nd {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const out = zeros([n, c, 2 * h, 2 * w]);
  for (let k = 0; k < out.data.length; k++) {
    const [a, b, i, j] = unravel(k, out.shape) as [number, number, number, number];
    out.data[k] = x.data[ravel([a, b, Math.floor(i / 2), Math.floor(j / 2)], x.shape)]!;
  }
  return out;
}

/** Constant padding in ONNX pad order [begin..., end...]; negative pads crop. */
export function padRef(x: Nd, pads: readonly number[], value = 0): Nd {
  const rank = x.shape.length;
  const shape = x.shape.map((d, a) => d + pads[a]! + pads[a + rank]!);
  const out = zeros(shape);
  for (let k = 0; k < out.data.length; k++) {
    const src = unravel(k, shape).map((v, a) => v - pads[a]!);
    const inside = src.every((v, a) => v >= 0 && v < x.shape[a]!);
    out.data[k] = inside ? x.data[ravel(src, x.shape)]! : value;
  }
  return out;
}

/** Indices one Python slice `start:end:step` picks from an axis of length d. */
export function pythonSliceIndices(d: number, start: number, end: number, step: number): number[] {
  // CPython's PySlice_AdjustIndices, which numpy follows.
  const adjust = (v: number) => {
    if (v < 0) {
      const r = v + d;
      return r < 0 ? (step < 0 ? -1 : 0) : r;
    }
    return v >= d ? (step < 0 ? d - 1 : d) : v;
  };
  const s = adjust(start);
  const e = adjust(end);
  const out: number[] = [];
  if (step > 0) for (let i = s; i < e; i += step) out.push(i);
  else for (let i = s; i > e; i += step) out.push(i);
  return out;
}

export interface RefSliceSpec {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  readonly axes?: readonly number[];
  readonly steps?: readonly number[];
}

/** Multi-axis slice with numpy semantics. */
export function sliceRef(x: Nd, spec: RefSliceSpec): Nd {
  const rank = x.shape.length;
  const picks = x.shape.map((d) => Array.from({ length: d }, (_, i) => i));
  spec.starts.forEach((start, k) => {
    const axisIn = spec.axes?.[k] ?? k;
    const a = axisIn < 0 ? axisIn + rank : axisIn;
    picks[a] = pythonSliceIndices(x.shape[a]!, start, spec.ends[k]!, spec.steps?.[k] ?? 1);
  });
  const shape = picks.map((p) => p.length);
  const out = zeros(shape);
  for (let k = 0; k < out.data.length; k++) {
    const src = unravel(k, shape).map((v, a) => picks[a]![v]!);
    out.data[k] = x.data[ravel(src, x.shape)]!;
  }
  return out;
}

/** numpy.take(x, indices, axis) with negative indices counting from the end. */
export function gatherRef(
  x: Nd,
  indices: readonly number[],
  indexShape: readonly number[],
  axis: number,
): Nd {
  const a = axis < 0 ? axis + x.shape.length : axis;
  const before = x.shape.slice(0, a);
  const after = x.shape.slice(a + 1);
  const shape = [...before, ...indexShape, ...after];
  const out = zeros(shape);
  const d = x.shape[a]!;
  for (let k = 0; k < out.data.length; k++) {
    const c = unravel(k, shape);
    const idxCoord = c.slice(before.length, before.length + indexShape.length);
    const raw = indices[ravel(idxCoord, indexShape)]!;
    const i = raw < 0 ? raw + d : raw;
    out.data[k] =
      x.data[
        ravel([...c.slice(0, before.length), i, ...c.slice(before.length + indexShape.length)], x.shape)
      ]!;
  }
  return out;
}

export function concatRef(xs: readonly Nd[], axis: number): Nd {
  const first = xs[0]!;
  const a = axis < 0 ? axis + first.shape.length : axis;
  const total = xs.reduce((s, x) => s + x.shape[a]!, 0);
  const shape = first.shape.map((d, i) => (i === a ? total : d));
  const out = zeros(shape);
  for (let k = 0; k < out.data.length; k++) {
    const c = unravel(k, shape);
    let pos = c[a]!;
    let part = 0;
    while (pos >= xs[part]!.shape[a]!) pos -= xs[part++]!.shape[a]!;
    const src = xs[part]!;
    out.data[k] =
      src.data[
        ravel(
          c.map((v, i) => (i === a ? pos : v)),
          src.shape,
        )
      ]!;
  }
  return out;
}

export function splitRef(x: Nd, sizes: readonly number[], axis: number): Nd[] {
  const a = axis < 0 ? axis + x.shape.length : axis;
  let offset = 0;
  return sizes.map((s) => {
    const start = offset;
    offset += s;
    const shape = x.shape.map((d, i) => (i === a ? s : d));
    const out = zeros(shape);
    for (let k = 0; k < out.data.length; k++) {
      const c = unravel(k, shape);
      out.data[k] =
        x.data[
          ravel(
            c.map((v, i) => (i === a ? v + start : v)),
            x.shape,
          )
        ]!;
    }
    return out;
  });
}

/** numpy.broadcast_to(x, shape). */
export function expandRef(x: Nd, shape: readonly number[]): Nd {
  const out = zeros(shape);
  const lead = shape.length - x.shape.length;
  for (let k = 0; k < out.data.length; k++) {
    const c = unravel(k, shape).slice(lead);
    out.data[k] =
      x.data[
        ravel(
          c.map((v, i) => (x.shape[i] === 1 ? 0 : v)),
          x.shape,
        )
      ]!;
  }
  return out;
}

/** Same values, new shape (row-major). */
export function reshapeRef(x: Nd, shape: readonly number[]): Nd {
  if (size(shape) !== x.data.length) throw new Error(`reshapeRef: ${x.shape} -> ${shape}`);
  return nd(Float64Array.from(x.data), shape);
}
