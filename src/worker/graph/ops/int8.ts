// Linear layers with int8 weights for inference-only graphs: the activations are quantised to uint8
// at run time (one scale per tensor, computed by the kernel) and multiplied with weights quantised
// per output channel at build time, in ONNX Runtime's com.microsoft DynamicQuantizeMatMul (int8 GEMM,
// then scales and bias in float). No VJP: grad() refuses a gradient through it.
import { fmtShape, GraphError, type Tensor } from '../graph.js';

/**
 * Largest quantised weight. 7 bits, not 8: x86 CPUs without VNNI (AVX2, the CPUs this runs on) multiply
 * uint8 activations by int8 weights with VPMADDUBSW, which adds two products into a saturating int16;
 * 255 * 127 * 2 overflows it (19% error on a random 48-wide layer in test/worker/graph/int8.test.ts,
 * against 1.5-2.5% with 7 bits), 255 * 63 * 2 never does. ORT's quantisation tool calls this
 * `reduce_range`.
 */
export const INT8_WEIGHT_MAX = 63;

/**
 * Per-row symmetric quantisation of a constant [out, in] weight to [-INT8_WEIGHT_MAX, INT8_WEIGHT_MAX],
 * stored transposed [in, out] as int8, with one float scale per row.
 */
export function quantizeWeightPerChannel(
  w: Float32Array,
  out: number,
  inF: number,
): { q: Int8Array; scales: Float32Array } {
  const qmax = INT8_WEIGHT_MAX;
  const q = new Int8Array(out * inF);
  const scales = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let m = 0;
    for (let i = 0; i < inF; i++) m = Math.max(m, Math.abs(w[o * inF + i]!));
    const s = m > 0 ? m / qmax : 1;
    scales[o] = s;
    for (let i = 0; i < inF; i++) q[i * out + o] = Math.round(w[o * inF + i]! / s);
  }
  return { q, scales };
}

/**
 * y = x W^T + b like `linear`, with W ([out, in], PyTorch layout) a constant quantised per output
 * channel at build time. x is [..., in] float32.
 */
export function quantizedLinear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (weight.shape.length !== 2 || !(weight.value instanceof Float32Array)) {
    throw new GraphError(
      `QuantizedLinear: weight must be a 2-D float32 constant, got ${fmtShape(weight.shape)}`,
    );
  }
  const [out, inF] = weight.shape as [number, number];
  if (x.dtype !== 'float32' || x.shape.length < 2 || x.shape[x.shape.length - 1] !== inF) {
    throw new GraphError(
      `QuantizedLinear: input ${x.dtype} ${fmtShape(x.shape)} must be float32 [..., ${inF}] (weight ${fmtShape(weight.shape)})`,
    );
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) {
    throw new GraphError(`QuantizedLinear: bias ${fmtShape(bias.shape)} does not match ${out} outputs`);
  }
  const g = x.graph;
  const data = weight.value;
  // Quantised once per graph, weight array and shape.
  let quantized: ReturnType<typeof quantizeWeightPerChannel> | undefined;
  const quantize = () => {
    quantized ??= quantizeWeightPerChannel(data, out, inF);
    return quantized;
  };
  const key = `int8:${out},${inF}`;
  const qw = g.derived(data, key, () =>
    g.constant(quantize().q, [inF, out], { name: `${weight.name}_int8` }),
  );
  const scale = g.derived(data, `${key}:scale`, () =>
    g.constant(quantize().scales, [out], { name: `${weight.name}_scale` }),
  );
  // Inputs: A, B, b_scale, b_zero_point (absent: symmetric), bias.
  return g.emit('DynamicQuantizeMatMul', [x, qw, scale, undefined, bias], {
    domain: 'com.microsoft',
    outputs: [{ shape: [...x.shape.slice(0, -1), out], dtype: 'float32' }],
  })[0]!;
}
