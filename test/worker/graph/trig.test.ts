import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { map, type Nd, nd, reduceAxes, zip } from '../../helpers/nd.js';
import { checkOp } from '../../helpers/op-check.js';
import { mulberry32, randn } from '../../helpers/random.js';

/** Seeded values uniform in [lo, hi). */
function uniform(n: number, seed: number, lo: number, hi: number): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

/** float64 reference of 2 * asin(|a_i - b_j| / 2)^2 for a [N, D], b [P, D]. */
function sphericalRef(a: Nd, b: Nd): Nd {
  const [n, d] = a.shape as [number, number];
  const p = b.shape[0]!;
  const out = new Float64Array(n * p);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (a.data[i * d + k]! - b.data[j * d + k]!) ** 2;
      out[i * p + j] = 2 * Math.asin(Math.sqrt(s) / 2) ** 2;
    }
  }
  return nd(out, [n, p]);
}

describe('Asin', () => {
  it('matches Math.asin and 1/sqrt(1-x^2) inside (-1, 1)', async () => {
    await checkOp({
      inputs: [{ shape: [4, 5], data: uniform(20, 3, -0.9, 0.9) }],
      build: (_g, [x]) => G.asin(x!),
      ref: ([x]) => map(x!, Math.asin),
    });
  });

  it('is within 1e-6 of Math.asin over all of [-1, 1], endpoints and zero included', async () => {
    // Dense near +-1, where asin is steepest, plus the exact points the spherical distance reaches.
    const xs = [-1, 0, 1, 1e-8, -1e-8, ...uniform(2000, 7, -1, 1)];
    for (let i = 1; i <= 200; i++) xs.push(1 - i * 1e-5, -1 + i * 1e-5);
    const g = new G.Graph();
    const x = g.input('x', [xs.length]);
    const session = await ModelSession.create(G.serialize(g, { outputs: { y: G.asin(x) } }).bytes);
    const fx = Float32Array.from(xs);
    const out = (await session.run({ x: { data: fx, dims: [xs.length] } })).y!.data as Float32Array;
    await session.release();
    let worst = 0;
    for (let i = 0; i < fx.length; i++) worst = Math.max(worst, Math.abs(out[i]! - Math.asin(fx[i]!)));
    expect(worst).toBeLessThan(1e-6);
    expect(out[1]).toBe(0);
    expect(out[2]).toBeCloseTo(Math.PI / 2, 6);
  });
});

describe('L2Normalize', () => {
  const normalizeRef = (x: Nd, axis: number, eps = 1e-12) => {
    const norms = map(
      reduceAxes(
        map(x, (v) => v * v),
        [axis],
        true,
      ),
      Math.sqrt,
    );
    return zip(x, norms, (v, n) => v / Math.max(n, eps));
  };
  it('along the last axis', async () => {
    await checkOp({
      inputs: [{ shape: [3, 5] }],
      build: (_g, [x]) => G.l2Normalize(x!),
      ref: ([x]) => normalizeRef(x!, 1),
    });
  });
  it('along a middle axis', async () => {
    await checkOp({
      inputs: [{ shape: [2, 4, 3] }],
      build: (_g, [x]) => G.l2Normalize(x!, 1),
      ref: ([x]) => normalizeRef(x!, 1),
    });
  });
  it('below eps the denominator is eps (a linear map, gradient 1/eps)', async () => {
    await checkOp({
      inputs: [{ shape: [2, 3], data: uniform(6, 5, -1e-3, 1e-3) }],
      build: (_g, [x]) => G.l2Normalize(x!, -1, 0.5),
      ref: ([x]) => normalizeRef(x!, 1, 0.5),
    });
  });
});

describe('SphericalDistance', () => {
  it('matches 2 asin(|a-b|/2)^2 for every pair, gradients to both sides', async () => {
    await checkOp({
      inputs: [
        { shape: [4, 6], data: uniform(24, 7, -0.4, 0.4) },
        { shape: [3, 6], data: uniform(18, 8, -0.4, 0.4) },
      ],
      build: (_g, [a, b]) => G.sphericalDistance(a!, b!),
      ref: ([a, b]) => sphericalRef(a!, b!),
    });
  });

  it('on unit vectors equals half the squared angle', async () => {
    const rand = mulberry32(11);
    const unit = (n: number, d: number) => {
      const v = Array.from({ length: n * d }, () => randn(rand));
      for (let i = 0; i < n; i++) {
        const norm = Math.hypot(...v.slice(i * d, (i + 1) * d));
        for (let k = 0; k < d; k++) v[i * d + k]! /= norm;
      }
      return v;
    };
    const a = unit(3, 8);
    const b = unit(2, 8);
    const g = new G.Graph();
    const y = G.sphericalDistance(
      g.constant(Float32Array.from(a), [3, 8]),
      g.constant(Float32Array.from(b), [2, 8]),
    );
    const session = await ModelSession.create(G.serialize(g, { outputs: { y } }).bytes);
    const out = (await session.run({})).y!.data as Float32Array;
    await session.release();
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 2; j++) {
        let dot = 0;
        for (let k = 0; k < 8; k++) dot += a[i * 8 + k]! * b[j * 8 + k]!;
        const angle = Math.acos(Math.min(1, Math.max(-1, dot)));
        expect(out[i * 2 + j]).toBeCloseTo(angle ** 2 / 2, 5);
      }
    }
  });

  it('keeps a finite gradient where two rows coincide', async () => {
    const b = uniform(12, 9, -0.4, 0.4);
    // Row 1 of a equals row 2 of b exactly: |a - b| = 0 there.
    const a = [...uniform(4, 10, -0.4, 0.4), ...b.slice(8, 12), ...uniform(4, 12, -0.4, 0.4)];
    const result = await checkOp({
      inputs: [
        { shape: [3, 4], data: a },
        { shape: [3, 4], data: b },
      ],
      build: (_g, [x, y]) => G.sphericalDistance(x!, y!),
      ref: ([x, y]) => sphericalRef(x!, y!),
    });
    for (const e of result.gradErrors) expect(Number.isFinite(e)).toBe(true);
  });

  it('refuses mismatched shapes', () => {
    const g = new G.Graph();
    expect(() => G.sphericalDistance(g.input('a', [2, 3]), g.input('b', [2, 4]))).toThrow(/\[N, D\]/);
  });
});

describe('ClampWithGrad', () => {
  it('is the identity (value and gradient) inside the range', async () => {
    await checkOp({
      inputs: [{ shape: [3, 4], data: uniform(12, 13, 0.05, 0.95) }],
      build: (_g, [x]) => G.clampWithGrad(x!, 0, 1),
      ref: ([x]) => x!,
    });
  });

  it('outside the range passes the gradient only where descent moves x back toward it', async () => {
    const x = [-0.5, -0.5, 1.5, 1.5, 0.3, 0.7];
    // r is d(loss)/dy; descent moves x by -r. Below the range r = -1 moves x up (passes) and r = 1
    // moves it further down (blocked); above the range the other way round; inside, everything passes.
    const r = [1, -1, 1, -1, 2, -3];
    const expected = [0, -1, 1, 0, 2, -3];
    const g = new G.Graph();
    const xt = g.input('x', [6]);
    const y = G.clampWithGrad(xt, 0, 1);
    const loss = G.reduceSum(G.mul(y, g.constant(Float32Array.from(r), [6])));
    const [gx] = G.grad(loss, [xt]);
    const session = await ModelSession.create(G.serialize(g, { outputs: { y, gx: gx! } }).bytes);
    const out = await session.run({ x: { data: Float32Array.from(x), dims: [6] } });
    await session.release();
    expect(Array.from(out.y!.data as Float32Array)).toEqual([0, 0, 1, 1, Math.fround(0.3), Math.fround(0.7)]);
    expect(Array.from(out.gx!.data as Float32Array)).toEqual(expected);
  });

  it('refuses an empty range', () => {
    const g = new G.Graph();
    expect(() => G.clampWithGrad(g.input('x', [2]), 1, 0)).toThrow(/below/);
  });
});
