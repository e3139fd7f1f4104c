// 2-D convolution (NCHW, groups = 1) and nearest x2 upsampling with their input VJPs.
// Stride-1 convs with constant weights differentiate as another Conv with flipped, transposed
// weights (ORT's fastest path, NCHWc); other cases use ConvTranspose with output_padding.
// upsampleConv3x3 fuses the decoder's upsampling and 3x3 conv into 2x2 phase convs.
import { attr, fmtShape, GraphError, type Tensor } from '../graph.js';
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

/**
 * A 3x3 conv after nearest x2 upsampling, per row (and likewise per column): even outputs 2i see
 * x[i-1] through w[0] and x[i] through w[1] + w[2]; odd outputs 2i+1 see x[i] through w[0] + w[1]
 * and x[i+1] through w[2]. Row k of this table is tap k of the 4-tap kernel that maps input row i to
 * output row 2i + k - 1 (so k = 3, 1 serve even outputs, k = 2, 0 odd ones): the kernel of a stride-2
 * transposed conv, and of the stride-2 conv that is its VJP.
 */
const UP_TAPS: readonly (readonly number[])[] = [
  [0, 0, 1],
  [0, 1, 1],
  [1, 1, 0],
  [1, 0, 0],
];
/** The 4-tap rows of output phase a (0: even, 1: odd), for input rows i-1+a and i+a. */
const PHASE_TAPS: readonly (readonly [number, number])[] = [
  [3, 1],
  [2, 0],
];

/** w[o, c, 3, 3] -> k[o, c, 4, 4] by UP_TAPS on both axes, summed in float64 and rounded once. */
function upKernel(weight: Tensor): Float32Array {
  const data = weight.value as Float32Array;
  const [o, c] = weight.shape as [number, number];
  const out = new Float32Array(o * c * 16);
  for (let i = 0; i < o * c; i++)
    for (let p = 0; p < 4; p++)
      for (let q = 0; q < 4; q++) {
        let s = 0;
        for (let a = 0; a < 3; a++)
          for (let b = 0; b < 3; b++) s += UP_TAPS[p]![a]! * UP_TAPS[q]![b]! * data[i * 9 + a * 3 + b]!;
        out[i * 16 + p * 4 + q] = s;
      }
  return out;
}

/**
 * conv3x3(upsampleNearest2x(x), weight, bias, pads 1) without making the upsampled tensor. Output
 * pixel (2i + a, 2j + b) depends on only 2x2 input pixels, so each of the four phases (a, b) is a 2x2
 * conv of x (padded on the side it reaches past); Concat and DepthToSpace interleave them. That is
 * 16/36 of the 3x3 conv's products. The VJP is one stride-2 4x4 Conv on the output gradient whose
 * kernel is the four phase kernels side by side (the transpose of the same linear map), again 16/36
 * of the products, and no 2x2 block sum. Same function up to float rounding (summed taps: 1.5e-6
 * relative on a full step's gradient). Weight and bias must be constants; otherwise the two ops as
 * before.
 */
export function upsampleConv3x3(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const desc = `upsampleConv3x3: input ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`;
  if (x.shape.length !== 4) throw new GraphError(`${desc}: input must be NCHW`);
  if (!(weight.value instanceof Float32Array) || (bias && bias.value === undefined)) {
    return conv2d(upsampleNearest2x(x), weight, bias, { pads: [1, 1, 1, 1] });
  }
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [o, ci, kh, kw] = weight.shape as [number, number, number, number];
  if (weight.shape.length !== 4 || kh !== 3 || kw !== 3 || ci !== c)
    throw new GraphError(`${desc}: weight must be [out, ${c}, 3, 3]`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== o))
    throw new GraphError(`${desc}: bias ${fmtShape(bias.shape)} does not match ${o} output channels`);
  const g = x.graph;
  const key = weight.shape.join(',');
  // The 4x4 kernel is only a source: the graph holds the four 2x2 phase kernels and, for the VJP,
  // the 4x4 one with its first two axes swapped (each made once per graph and weight).
  let k4: Float32Array | undefined;
  const kernel = () => (k4 ??= upKernel(weight));
  const source = weight.value;
  const phase = (a: number, b: number) =>
    g.derived(source, `up2:${key}:${a}${b}`, () => {
      const k = kernel();
      const out = new Float32Array(o * c * 4);
      for (let i = 0; i < o * c; i++)
        for (let p = 0; p < 2; p++)
          for (let q = 0; q < 2; q++)
            out[i * 4 + p * 2 + q] = k[i * 16 + PHASE_TAPS[a]![p]! * 4 + PHASE_TAPS[b]![q]!]!;
      return g.constant(out, [o, c, 2, 2], { name: `${weight.name}_up2_${a}${b}` });
    });
  const vjpKernel = () =>
    g.derived(source, `up4T:${key}`, () => {
      const k = kernel();
      const out = new Float32Array(k.length);
      for (let oi = 0; oi < o; oi++)
        for (let ci = 0; ci < c; ci++)
          out.set(k.subarray((oi * c + ci) * 16, (oi * c + ci + 1) * 16), (ci * o + oi) * 16);
      return g.constant(out, [c, o, 4, 4], { name: `${weight.name}_up4T` });
    });
  return g.composite(
    'UpsampleConv3x3',
    [x],
    () => {
      const phases: Tensor[] = [];
      for (const a of [0, 1])
        for (const b of [0, 1]) phases.push(conv2d(x, phase(a, b), bias, { pads: [1 - a, 1 - b, a, b] }));
      // Channel block 2a + b holds phase (a, b): DepthToSpace's DCR order.
      const stacked = g.emit('Concat', phases, {
        attrs: { axis: attr.int(1) },
        outputs: [{ shape: [n, 4 * o, h, w], dtype: 'float32' }],
      })[0]!;
      return g.emit('DepthToSpace', [stacked], {
        attrs: { blocksize: attr.int(2), mode: attr.string('DCR') },
        outputs: [{ shape: [n, o, 2 * h, 2 * w], dtype: 'float32' }],
      });
    },
    // Input row i reaches output rows 2i - 1 + k through tap k: a stride-2 4x4 Conv of the gradient
    // padded by 1, with the kernel's first two axes swapped (Conv's out channels are x's).
    ([gy]) => [
      gy
        ? g.emit('Conv', [gy, vjpKernel()], {
            attrs: {
              kernel_shape: attr.ints([4, 4]),
              strides: attr.ints([2, 2]),
              pads: attr.ints([1, 1, 1, 1]),
            },
            outputs: [{ shape: x.shape, dtype: 'float32' }],
          })[0]!
        : undefined,
    ],
  )[0]!;
}
