// 2-D convolution (NCHW, groups = 1) and nearest x2 upsampling with their input VJPs.
// Stride-1 convs with constant weights differentiate as another Conv with flipped, transposed
// weights (ORT's fastest path, NCHWc); other cases use ConvTranspose with output_padding.
import { fmtShape, GraphError, type Tensor } from '../graph.js';
import { mul } from './elementwise.js';
import { reduceSum } from './reduce.js';

export interface ConvOptions {
  /** @defaultValue [1, 1] */
  readonly strides?: readonly [number, number];
  /** [top, left, bottom, right] (ONNX order). @defaultValue [0, 0, 0, 0] */
  readonly pads?: readonly [number, number, number, number];
  /** @defaultValue [1, 1] */
  readonly dilations?: readonly [number, number];
}

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor, options: ConvOptions = {}): Tensor {
  const strides = options.strides ?? [1, 1];
  const pads = options.pads ?? [0, 0, 0, 0];
  const dil = options.dilations ?? [1, 1];
  const desc = `Conv: input ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`;
  if (x.shape.length !== 4 || weight.shape.length !== 4)
    throw new GraphError(`${desc}: both must be 4-D (NCHW, OIHW)`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [o, ci, kh, kw] = weight.shape as [number, number, number, number];
  if (ci !== c) throw new GraphError(`${desc}: weight expects ${ci} input channels, input has ${c}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== o)) {
    throw new GraphError(`${desc}: bias ${fmtShape(bias.shape)} does not match ${o} output channels`);
  }
  if (
    [...strides, ...dil].some((v) => !Number.isInteger(v) || v < 1) ||
    pads.some((p) => !Number.isInteger(p) || p < 0)
  ) {
    throw new GraphError(`${desc}: bad strides [${strides}], pads [${pads}] or dilations [${dil}]`);
  }
  const ekh = dil[0] * (kh - 1) + 1;
  const ekw = dil[1] * (kw - 1) + 1;
  const oh = Math.floor((h + pads[0] + pads[2] - ekh) / strides[0]) + 1;
  const ow = Math.floor((w + pads[1] + pads[3] - ekw) / strides[1]) + 1;
  if (oh < 1 || ow < 1) throw new GraphError(`${desc}: kernel larger than the padded input`);
  const g = x.graph;
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return g.emit('Conv', inputs, {
    attrs: {
      kernel_shape: { type: 'ints', value: [kh, kw] },
      strides: { type: 'ints', value: strides },
      pads: { type: 'ints', value: pads },
      dilations: { type: 'ints', value: dil },
    },
    outputs: [{ shape: [n, o, oh, ow], dtype: 'float32' }],
    vjp: ([gy], needs) => {
      if (!gy) return [];
      if (needs[1])
        throw new GraphError(`${desc}: gradients w.r.t. the weights are not supported (only activations)`);
      let gx: Tensor | undefined;
      if (needs[0]) {
        const flipPads = [ekh - 1 - pads[0], ekw - 1 - pads[1], ekh - 1 - pads[2], ekw - 1 - pads[3]];
        const stride1 = strides[0] === 1 && strides[1] === 1 && dil[0] === 1 && dil[1] === 1;
        if (stride1 && weight.value instanceof Float32Array && flipPads.every((p) => p >= 0)) {
          gx = conv2d(gy, flippedTransposed(weight), undefined, {
            pads: flipPads as [number, number, number, number],
          });
        } else {
          gx = convTransposeForGrad(gy, weight, [h, w], strides, pads, dil);
        }
      }
      const gb = bias && needs[2] ? reduceSum(gy, [0, 2, 3]) : undefined;
      return [gx, undefined, gb];
    },
  })[0]!;
}

/** w[o, c, i, j] -> w'[c, o, kh-1-i, kw-1-j], made once per graph, weight array and shape. */
function flippedTransposed(weight: Tensor): Tensor {
  const data = weight.value as Float32Array;
  const [o, c, kh, kw] = weight.shape as [number, number, number, number];
  // Keyed by shape too: the same array may back weights of different shapes ([3,2,3,3] and [2,3,3,3]).
  return weight.graph.derived(data, `flipT:${weight.shape.join(',')}`, () => {
    const out = new Float32Array(data.length);
    for (let oi = 0; oi < o; oi++)
      for (let ci = 0; ci < c; ci++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            out[((ci * o + oi) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)] =
              data[((oi * c + ci) * kh + i) * kw + j]!;
          }
    return weight.graph.constant(out, [c, o, kh, kw], { name: `${weight.name}_flipT` });
  });
}

/** dx of a strided/dilated conv: ConvTranspose with the same weights, sized back to [h, w]. */
function convTransposeForGrad(
  gy: Tensor,
  weight: Tensor,
  [h, w]: [number, number],
  strides: readonly [number, number],
  pads: readonly [number, number, number, number],
  dil: readonly [number, number],
): Tensor {
  const [n, , oh, ow] = gy.shape as [number, number, number, number];
  const [, c, kh, kw] = weight.shape as [number, number, number, number];
  const base = (len: number, s: number, k: number, d: number, p0: number, p1: number) =>
    s * (len - 1) + d * (k - 1) + 1 - p0 - p1;
  const opH = h - base(oh, strides[0], kh, dil[0], pads[0], pads[2]);
  const opW = w - base(ow, strides[1], kw, dil[1], pads[1], pads[3]);
  if (opH < 0 || opW < 0 || opH >= Math.max(strides[0], dil[0]) || opW >= Math.max(strides[1], dil[1])) {
    throw new GraphError(
      `Conv VJP: cannot size ConvTranspose back to [${h},${w}] (output_padding ${opH},${opW})`,
    );
  }
  return gy.graph.emit('ConvTranspose', [gy, weight], {
    attrs: {
      kernel_shape: { type: 'ints', value: [kh, kw] },
      strides: { type: 'ints', value: strides },
      pads: { type: 'ints', value: pads },
      dilations: { type: 'ints', value: dil },
      output_padding: { type: 'ints', value: [opH, opW] },
    },
    outputs: [{ shape: [n, c, h, w], dtype: 'float32' }],
  })[0]!;
}

/** Nearest-neighbour x2 upsampling of NCHW; the VJP sums each 2x2 block. */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.shape.length !== 4) throw new GraphError(`Upsample: input must be NCHW, got ${fmtShape(x.shape)}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const g = x.graph;
  return g.emit(
    'Resize',
    [x, undefined, g.constant(new Float32Array([1, 1, 2, 2]), [4], { name: 'scales' })],
    {
      attrs: {
        mode: { type: 'string', value: 'nearest' },
        coordinate_transformation_mode: { type: 'string', value: 'asymmetric' },
        nearest_mode: { type: 'string', value: 'floor' },
      },
      outputs: [{ shape: [n, c, 2 * h, 2 * w], dtype: 'float32' }],
      // The 2x2 block sum as AveragePool * 4 (exact: 4 is a power of two). ORT pools in its
      // blocked layout; ReduceSum over axes 3 and 5 of a 6-D view took ~2x longer on CPU.
      vjp: ([gy]) => [
        gy
          ? mul(
              g.emit('AveragePool', [gy], {
                attrs: {
                  kernel_shape: { type: 'ints', value: [2, 2] },
                  strides: { type: 'ints', value: [2, 2] },
                },
                outputs: [{ shape: x.shape, dtype: 'float32' }],
              })[0]!,
              4,
            )
          : undefined,
      ],
    },
  )[0]!;
}
