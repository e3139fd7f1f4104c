// Matrix products: batched MatMul with numpy batch broadcasting, and Linear (x W^T + b with
// weights in PyTorch's [out, in] layout, transposed once at build time when constant).
import { fmtShape, GraphError, type Tensor } from '../graph.js';
import { add, sumToShape } from './elementwise.js';
import { reshape, transpose } from './shape.js';
import { broadcastShapes } from './shape-utils.js';

const swapLast = (t: Tensor): Tensor => {
  // A constant matrix is transposed at build time (and a transposed weight maps back to the
  // original array), so the backward pass adds no Transpose node for ORT to fold into yet another
  // copy of the weights.
  if (t.value instanceof Float32Array && t.shape.length === 2) return constTranspose2d(t);
  const r = t.shape.length;
  return transpose(
    t,
    t.shape.map((_, i) => (i === r - 2 ? r - 1 : i === r - 1 ? r - 2 : i)),
  );
};

/** a [..., m, k] x b [..., k, n] -> [..., m, n]; batch dims broadcast. Both operands rank >= 2. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new GraphError(
      `MatMul: operands need rank >= 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  }
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new GraphError(
      `MatMul: operands must be float32, got ${a.dtype} ${fmtShape(a.shape)} and ${b.dtype} ${fmtShape(b.shape)}`,
    );
  }
  const [m, k] = a.shape.slice(-2) as [number, number];
  const [k2, n] = b.shape.slice(-2) as [number, number];
  if (k !== k2)
    throw new GraphError(`MatMul: inner dimensions differ: ${fmtShape(a.shape)} x ${fmtShape(b.shape)}`);
  let batch: number[];
  try {
    batch = broadcastShapes('MatMul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch {
    throw new GraphError(
      `MatMul: batch dimensions of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} do not broadcast`,
    );
  }
  return a.graph.emit('MatMul', [a, b], {
    outputs: [{ shape: [...batch, m, n], dtype: 'float32' }],
    vjp: ([gy], needs) => {
      if (!gy) return [];
      return [
        needs[0] ? sumToShape(matmul(gy, swapLast(b)), a.shape) : undefined,
        needs[1] ? sumToShape(matmul(swapLast(a), gy), b.shape) : undefined,
      ];
    },
  })[0]!;
}

/**
 * y = x W^T + b with W of shape [out, in] (PyTorch / Hugging Face layout). A constant W is
 * stored transposed so ORT runs a plain MatMul (and can fuse the bias into Gemm).
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (weight.shape.length !== 2)
    throw new GraphError(`Linear: weight must be 2-D, got ${fmtShape(weight.shape)}`);
  const [out, inF] = weight.shape as [number, number];
  if (x.shape[x.shape.length - 1] !== inF) {
    throw new GraphError(
      `Linear: input ${fmtShape(x.shape)} does not end in ${inF} (weight ${fmtShape(weight.shape)})`,
    );
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) {
    throw new GraphError(`Linear: bias ${fmtShape(bias.shape)} does not match ${out} outputs`);
  }
  const wt = weight.value instanceof Float32Array ? constTranspose2d(weight) : transpose(weight, [1, 0]);
  // MatMul needs rank >= 2 on both sides: lift a 1-D input.
  const y = x.shape.length === 1 ? reshape(matmul(reshape(x, [1, inF]), wt), [out]) : matmul(x, wt);
  return bias ? add(y, bias) : y;
}

/** Transposes a constant [r, c] weight at build time, once per graph, weight array and shape. */
function constTranspose2d(w: Tensor): Tensor {
  const data = w.value as Float32Array;
  const [r, c] = w.shape as [number, number];
  // Keyed by shape too: the same array may back constants of different shapes ([r, c] and [c, r]).
  return w.graph.derived(data, `T:${r},${c}`, () => {
    const t = new Float32Array(r * c);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = data[i * c + j]!;
    const wt = w.graph.constant(t, [c, r], { name: `${w.name}_T` });
    // The transpose of the transpose is w itself (linear's VJP asks for it).
    w.graph.derived(t, `T:${c},${r}`, () => w);
    return wt;
  });
}
