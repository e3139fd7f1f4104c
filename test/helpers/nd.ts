// A deliberately plain float64 n-d array for reference implementations in tests. Written for
// clarity, not speed: every op loops over output coordinates. Independent of src/.
export interface Nd {
  readonly data: Float64Array;
  readonly shape: readonly number[];
}

export const nd = (data: Float64Array | readonly number[], shape: readonly number[]): Nd => ({
  data: data instanceof Float64Array ? data : Float64Array.from(data),
  shape: [...shape],
});

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function strides(shape: readonly number[]): number[] {
  const s: number[] = new Array(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Coordinates of flat index `i` in `shape`. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let a = shape.length - 1; a >= 0; a--) {
    c[a] = i % shape[a]!;
    i = Math.floor(i / shape[a]!);
  }
  return c;
}

export function ravel(c: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let a = 0; a < shape.length; a++) i = i * shape[a]! + c[a]!;
  return i;
}

export function zeros(shape: readonly number[]): Nd {
  return nd(new Float64Array(size(shape)), shape);
}

export function map(x: Nd, f: (v: number) => number): Nd {
  return nd(x.data.map(f), x.shape);
}

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`ref: cannot broadcast ${a} and ${b}`);
    return Math.max(da, db) === 1 ? 1 : da === 1 ? db : da;
  });
}

/** Reads x at output coordinate `c` of a broadcast result. */
export function atBroadcast(x: Nd, c: readonly number[]): number {
  const lead = c.length - x.shape.length;
  let i = 0;
  for (let a = 0; a < x.shape.length; a++) {
    const d = x.shape[a]!;
    i = i * d + (d === 1 ? 0 : c[lead + a]!);
  }
  return x.data[i]!;
}

export function zip(a: Nd, b: Nd, f: (x: number, y: number) => number): Nd {
  const shape = broadcastShape(a.shape, b.shape);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, shape);
    out.data[i] = f(atBroadcast(a, c), atBroadcast(b, c));
  }
  return out;
}

/** Sum (or any fold) over `axes`, keeping them as size 1 when keepdims. */
export function reduceAxes(
  x: Nd,
  axes: readonly number[],
  keepdims: boolean,
  op: 'sum' | 'mean' | 'max' = 'sum',
): Nd {
  const ax = axes.map((a) => (a < 0 ? a + x.shape.length : a));
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const out = zeros(kept);
  if (op === 'max') out.data.fill(Number.NEGATIVE_INFINITY);
  const count = ax.reduce((acc, a) => acc * x.shape[a]!, 1);
  for (let i = 0; i < x.data.length; i++) {
    const c = unravel(i, x.shape).map((v, a) => (ax.includes(a) ? 0 : v));
    const j = ravel(c, kept);
    out.data[j] = op === 'max' ? Math.max(out.data[j]!, x.data[i]!) : out.data[j]! + x.data[i]!;
  }
  if (op === 'mean') for (let j = 0; j < out.data.length; j++) out.data[j]! /= count;
  return keepdims
    ? out
    : nd(
        out.data,
        x.shape.filter((_, i) => !ax.includes(i)),
      );
}

export function transposeNd(x: Nd, perm: readonly number[]): Nd {
  const shape = perm.map((p) => x.shape[p]!);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) {
    const c = unravel(i, shape);
    const src = new Array<number>(c.length);
    perm.forEach((p, k) => {
      src[p] = c[k]!;
    });
    out.data[i] = x.data[ravel(src, x.shape)]!;
  }
  return out;
}

/** Batched matmul with numpy batch broadcasting; both operands rank >= 2. */
export function matmulNd(a: Nd, b: Nd): Nd {
  const m = a.shape[a.shape.length - 2]!;
  const k = a.shape[a.shape.length - 1]!;
  const n = b.shape[b.shape.length - 1]!;
  const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const shape = [...batch, m, n];
  const out = zeros(shape);
  const aB = nd(new Float64Array(0), a.shape.slice(0, -2));
  const bB = nd(new Float64Array(0), b.shape.slice(0, -2));
  const batchIndex = (x: Nd, c: readonly number[]) => {
    const lead = c.length - x.shape.length;
    let i = 0;
    for (let q = 0; q < x.shape.length; q++) i = i * x.shape[q]! + (x.shape[q] === 1 ? 0 : c[lead + q]!);
    return i;
  };
  for (let bi = 0; bi < size(batch); bi++) {
    const c = unravel(bi, batch);
    const ao = batchIndex(aB, c) * m * k;
    const bo = batchIndex(bB, c) * k * n;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += a.data[ao + i * k + q]! * b.data[bo + q * n + j]!;
        out.data[bi * m * n + i * n + j] = s;
      }
  }
  return out;
}
