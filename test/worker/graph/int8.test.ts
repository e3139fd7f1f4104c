// int8 linear layers (DynamicQuantizeMatMul): the per-channel weight quantiser exactly, the op against
// a float64 x W^T + b within int8 error, and its refusals (no gradient, weights that are not constants).
import { describe, expect, it } from 'vitest';
import { grad } from '../../../src/worker/graph/autodiff.js';
import { Graph } from '../../../src/worker/graph/graph.js';
import {
  INT8_WEIGHT_MAX,
  quantizedLinear,
  quantizeWeightPerChannel,
} from '../../../src/worker/graph/ops/int8.js';
import { linear } from '../../../src/worker/graph/ops/matmul.js';
import { reduceSum } from '../../../src/worker/graph/ops/reduce.js';
import { serialize } from '../../../src/worker/graph/serialize.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { mulberry32, randomArray } from '../../helpers/random.js';

describe('quantizeWeightPerChannel', () => {
  it('scales each output row to 63 (7 bits) and rounds to the nearest step, stored [in, out]', () => {
    expect(INT8_WEIGHT_MAX).toBe(63);
    const w = Float32Array.from([0.5, -1, 0.25, 0, 0, 0, 2, 1, -0.02]); // [3 out, 3 in]; row 1 all zero
    const { q, scales } = quantizeWeightPerChannel(w, 3, 3);
    expect(Array.from(scales)).toEqual([1 / 63, 1, 2 / 63].map(Math.fround));
    // Column o of q is row o of w.
    expect([q[0], q[3], q[6]]).toEqual([32, -63, 16]);
    expect([q[1], q[4], q[7]]).toEqual([0, 0, 0]);
    expect([q[2], q[5], q[8]]).toEqual([63, 32, -1]);
  });
});

describe('quantizedLinear', () => {
  const rand = mulberry32(3);
  const [rows, inF, out] = [6, 48, 20];
  const x = randomArray(rand, rows * inF);
  const w = randomArray(rand, out * inF, 0.2);
  const b = randomArray(rand, out, 0.1);

  it('matches x W^T + b to int8 accuracy, with and without bias', async () => {
    const g = new Graph();
    const xin = g.input('x', [2, 3, inF]);
    const wt = g.constant(w, [out, inF]);
    const bias = g.constant(b, [out]);
    const outputs = {
      q: quantizedLinear(xin, wt, bias),
      q0: quantizedLinear(xin, wt),
      f: linear(xin, wt, bias),
    };
    expect(outputs.q.shape).toEqual([2, 3, out]);
    const s = await ModelSession.create(serialize(g, { outputs }).bytes, { intraOpThreads: 1 });
    const res = await s.run({ x: { data: x, dims: [2, 3, inF] } });
    await s.release();
    const q = res.q!.data as Float32Array;
    const q0 = res.q0!.data as Float32Array;
    let maxErr = 0;
    let maxRef = 0;
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < out; o++) {
        let ref = 0;
        for (let i = 0; i < inF; i++) ref += x[r * inF + i]! * w[o * inF + i]!;
        maxErr = Math.max(maxErr, Math.abs(q[r * out + o]! - (ref + b[o]!)));
        maxRef = Math.max(maxRef, Math.abs(ref));
        expect(q0[r * out + o]! + b[o]!).toBeCloseTo(q[r * out + o]!, 5);
      }
    }
    // Activations quantised to 255 levels and weights to 127 per row: 1.5-2.5% of the output scale
    // over seeds (full-range 8-bit weights saturate VPMADDUBSW on AVX2 here: 19%).
    expect(maxErr / maxRef).toBeLessThan(0.04);
    // ... and not exact: the int8 kernel really ran.
    expect(maxErr).toBeGreaterThan(1e-5);
  });

  it('refuses gradients, non-constant weights and mismatched shapes', () => {
    const g = new Graph();
    const xin = g.input('x', [2, inF]);
    const y = quantizedLinear(xin, g.constant(w, [out, inF]));
    expect(() => grad(reduceSum(y), [xin])).toThrow(/DynamicQuantizeMatMul has no gradient/);
    expect(() => quantizedLinear(xin, g.input('w', [out, inF]))).toThrow(/2-D float32 constant/);
    expect(() => quantizedLinear(g.input('x2', [2, inF + 1]), g.constant(w, [out, inF]))).toThrow(
      /must be float32 \[\.\.\., 48\]/,
    );
    expect(() =>
      quantizedLinear(xin, g.constant(w, [out, inF]), g.constant(b.subarray(1), [out - 1])),
    ).toThrow(/bias \[19\] does not match 20 outputs/);
  });
});
