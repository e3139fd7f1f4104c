import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { expectBuildError } from '../../helpers/build-error.js';
import { nd } from '../../helpers/nd.js';
import { mulberry32, randomArray } from '../../helpers/random.js';
import { nearestRows } from '../../helpers/ref-nn.js';

const Z_SHAPE = [2, 3, 2, 3] as const; // [N, D, H, W]
const K = 7;

/** A seeded latent and codebook, rounded to float32 so graph and reference see the same numbers. */
function fixture(seed: number) {
  const rand = mulberry32(seed);
  const z = randomArray(
    rand,
    Z_SHAPE.reduce((a, b) => a * b, 1),
  );
  const codebook = randomArray(rand, K * Z_SHAPE[1]);
  const ref = nearestRows(
    nd(Float64Array.from(z), Z_SHAPE),
    nd(Float64Array.from(codebook), [K, Z_SHAPE[1]]),
  );
  return { z, codebook, ref, rand };
}

async function run(g: G.Graph, outputs: Record<string, G.Tensor>, z: Float32Array) {
  const session = await ModelSession.create(G.serialize(g, { outputs }).bytes, { intraOpThreads: 1 });
  try {
    return await session.run({ z: { data: z, dims: Z_SHAPE } });
  } finally {
    await session.release();
  }
}

describe('vectorQuantize', () => {
  for (const seed of [1, 2, 3]) {
    it(`forward picks the brute-force nearest codebook row (seed ${seed})`, async () => {
      const { z, codebook, ref } = fixture(seed);
      // No near-ties, so float32 distances must agree with float64 on the winner.
      expect(ref.minMargin).toBeGreaterThan(1e-4);
      // Several rows must be used, or "always row 0" would pass.
      expect(new Set(ref.indices).size).toBeGreaterThan(2);
      const g = new G.Graph();
      const zt = g.input('z', Z_SHAPE);
      const { quantized, indices } = G.vectorQuantize(
        zt,
        g.constant(codebook, [K, Z_SHAPE[1]], { name: 'cb' }),
      );
      expect(quantized.shape).toEqual(Z_SHAPE);
      expect(indices.shape).toEqual([Z_SHAPE[0], Z_SHAPE[2], Z_SHAPE[3]]);
      expect(indices.dtype).toBe('int64');
      const out = await run(g, { q: quantized, idx: indices }, z);
      expect(Array.from(out.idx!.data as BigInt64Array, Number)).toEqual(ref.indices);
      // Values are copies of codebook rows: exact.
      expect(Array.from(out.q!.data as Float32Array)).toEqual(Array.from(ref.quantized.data));
    });
  }

  it('passes the gradient straight through: d sum(q * r) / dz == r exactly', async () => {
    const { z, codebook, rand } = fixture(4);
    const r = randomArray(rand, z.length);
    const g = new G.Graph();
    const zt = g.input('z', Z_SHAPE);
    const { quantized } = G.vectorQuantize(zt, g.constant(codebook, [K, Z_SHAPE[1]], { name: 'cb' }));
    const loss = G.reduceSum(G.mul(quantized, g.constant(r, Z_SHAPE, { name: 'r' })));
    const [dz] = G.grad(loss, [zt]);
    const out = await run(g, { dz: dz! }, z);
    expect(Array.from(out.dz!.data as Float32Array)).toEqual(Array.from(r));
  });

  it('composes with ops after it: d sum(tanh(q) * r) / dz == r (1 - tanh(q)^2)', async () => {
    const { z, codebook, ref, rand } = fixture(5);
    const r = randomArray(rand, z.length);
    const g = new G.Graph();
    const zt = g.input('z', Z_SHAPE);
    const { quantized } = G.vectorQuantize(zt, g.constant(codebook, [K, Z_SHAPE[1]], { name: 'cb' }));
    const loss = G.reduceSum(G.mul(G.tanh(quantized), g.constant(r, Z_SHAPE, { name: 'r' })));
    const [dz] = G.grad(loss, [zt]);
    const out = await run(g, { dz: dz! }, z);
    const got = out.dz!.data as Float32Array;
    ref.quantized.data.forEach((q, i) => {
      expect(Math.abs(got[i]! - r[i]! * (1 - Math.tanh(q) ** 2))).toBeLessThan(1e-6);
    });
  });

  it('int64 indices used downstream do not break grad, and can be fetched with it', async () => {
    const { z, codebook, ref, rand } = fixture(6);
    const r = randomArray(rand, z.length);
    const g = new G.Graph();
    const zt = g.input('z', Z_SHAPE);
    const { quantized, indices } = G.vectorQuantize(
      zt,
      g.constant(codebook, [K, Z_SHAPE[1]], { name: 'cb' }),
    );
    // A loss term that reads the indices (through a cast) adds no gradient: it is piecewise constant in z.
    const idxTerm = G.reduceSum(G.cast(indices, 'float32'));
    const loss = G.add(G.reduceSum(G.mul(quantized, g.constant(r, Z_SHAPE, { name: 'r' }))), idxTerm);
    const [dz] = G.grad(loss, [zt]);
    const out = await run(g, { dz: dz!, idx: indices, idxTerm }, z);
    expect(Array.from(out.dz!.data as Float32Array)).toEqual(Array.from(r));
    expect(Array.from(out.idx!.data as BigInt64Array, Number)).toEqual(ref.indices);
    expect((out.idxTerm!.data as Float32Array)[0]).toBe(ref.indices.reduce((a, b) => a + b, 0));
  });

  it('rejects bad shapes and a non-constant codebook, naming the op and shapes', () => {
    const g = new G.Graph();
    const cb = g.constant(new Float32Array(K * 3), [K, 3], { name: 'cb' });
    expectBuildError(() => G.vectorQuantize(g.input('a', [2, 3, 4]), cb), 'VectorQuantize', '[2,3,4]');
    expectBuildError(
      () => G.vectorQuantize(g.input('b', [1, 4, 2, 2]), cb),
      'VectorQuantize',
      '[7,3]',
      '[1,4,2,2]',
    );
    expectBuildError(
      () => G.vectorQuantize(g.input('c', [1, 3, 2, 2]), g.input('cbIn', [K, 3])),
      'VectorQuantize',
    );
  });
});
