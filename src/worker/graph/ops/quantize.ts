// The straight-through vector quantizer of VQGAN: forward snaps each latent vector to its
// nearest codebook row (argmin of squared distance), backward passes the gradient unchanged.
import { fmtShape, GraphError, type Tensor } from '../graph.js';
import { add, mul } from './elementwise.js';
import { matmul } from './matmul.js';
import { gather, reshape, transpose } from './shape.js';

export interface Quantized {
  /** Same shape as the input, every vector replaced by its nearest codebook row. */
  readonly quantized: Tensor;
  /** int64 codebook index per position, shape [N, H, W]. */
  readonly indices: Tensor;
}

/** z: [N, D, H, W]; codebook: constant [K, D]. */
export function vectorQuantize(z: Tensor, codebook: Tensor): Quantized {
  if (z.shape.length !== 4)
    throw new GraphError(`VectorQuantize: latent must be [N, D, H, W], got ${fmtShape(z.shape)}`);
  const [n, d, h, w] = z.shape as [number, number, number, number];
  if (codebook.shape.length !== 2 || codebook.shape[1] !== d) {
    throw new GraphError(
      `VectorQuantize: codebook ${fmtShape(codebook.shape)} does not match latent ${fmtShape(z.shape)}`,
    );
  }
  if (!(codebook.value instanceof Float32Array))
    throw new GraphError('VectorQuantize: the codebook must be a float32 constant');
  const g = z.graph;
  const k = codebook.shape[0]!;
  const e = codebook.value;
  // ||e_k||^2 and E^T are folded at build time; ||z||^2 does not change the argmin.
  const norms = new Float32Array(k);
  const et = new Float32Array(d * k);
  for (let r = 0; r < k; r++) {
    let s = 0;
    for (let c = 0; c < d; c++) {
      const v = e[r * d + c]!;
      s += v * v;
      et[c * k + r] = v;
    }
    norms[r] = s;
  }
  let indices!: Tensor;
  const [quantized] = g.composite(
    'VectorQuantize',
    [z],
    () => {
      const flat = reshape(transpose(z, [0, 2, 3, 1]), [n * h * w, d]);
      const dist = add(
        mul(matmul(flat, g.constant(et, [d, k], { name: `${codebook.name}_T` })), -2),
        g.constant(norms, [k], { name: `${codebook.name}_sqnorm` }),
      );
      const idx = g.emit('ArgMin', [dist], {
        attrs: { axis: { type: 'int', value: 1 }, keepdims: { type: 'int', value: 0 } },
        outputs: [{ shape: [n * h * w], dtype: 'int64' }],
      })[0]!;
      indices = reshape(idx, [n, h, w]);
      const rows = gather(codebook, idx, 0);
      return [transpose(reshape(rows, [n, h, w, d]), [0, 3, 1, 2])];
    },
    // Straight-through: d quantized / d z = identity.
    ([gq]) => [gq],
  );
  return { quantized: quantized!, indices };
}
