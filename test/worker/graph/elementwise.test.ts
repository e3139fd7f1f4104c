import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { expectBuildError } from '../../helpers/build-error.js';
import { atBroadcast, broadcastShape, map, nd, unravel, zeros, zip } from '../../helpers/nd.js';
import { checkOp } from '../../helpers/op-check.js';
import { mulberry32, randn } from '../../helpers/random.js';
import { erf, gelu } from '../../helpers/ref-nn.js';

describe('binary ops with broadcasting', () => {
  const cases = [
    ['same shape', [2, 3], [2, 3]],
    ['bias add', [2, 3, 4], [4]],
    ['per-channel', [2, 3, 2, 2], [1, 3, 1, 1]],
    ['scalar', [2, 3], []],
    ['both broadcast', [3, 1], [1, 4]],
  ] as const;
  const ops = [
    ['Add', G.add, (a: number, b: number) => a + b],
    ['Sub', G.sub, (a: number, b: number) => a - b],
    ['Mul', G.mul, (a: number, b: number) => a * b],
    ['Div', G.div, (a: number, b: number) => a / b],
  ] as const;
  for (const [opName, op, f] of ops) {
    for (const [caseName, sa, sb] of cases) {
      it(`${opName}: ${caseName}`, async () => {
        const n = sb.reduce((x: number, y: number) => x * y, 1);
        // Keep divisors away from zero.
        const bData =
          opName === 'Div' ? Array.from({ length: n }, (_, i) => 0.8 + 0.3 * ((i * 7) % 5)) : undefined;
        await checkOp({
          inputs: [{ shape: sa }, { shape: sb, ...(bData && { data: bData }) }],
          build: (_g, [a, b]) => op(a!, b!),
          ref: ([a, b]) => zip(a!, b!, f),
        });
      });
    }
  }
});

describe('unary ops', () => {
  const ops: [string, (t: G.Tensor) => G.Tensor, (v: number) => number, ((i: number) => number)?][] = [
    ['Exp', G.exp, Math.exp],
    ['Neg', G.neg, (v) => -v],
    ['Log', G.log, Math.log, (i) => 0.3 + (i % 7) * 0.4],
    ['Sqrt', G.sqrt, Math.sqrt, (i) => 0.3 + (i % 7) * 0.4],
    ['Sigmoid', G.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
    ['Tanh', G.tanh, Math.tanh],
    ['SiLU', G.silu, (v) => v / (1 + Math.exp(-v))],
    ['QuickGELU', G.quickGelu, (v) => v / (1 + Math.exp(-1.702 * v))],
  ];
  for (const [name, op, f, gen] of ops) {
    it(name, async () => {
      await checkOp({
        inputs: [{ shape: [3, 5], ...(gen && { data: Array.from({ length: 15 }, (_, i) => gen(i)) }) }],
        build: (_g, [x]) => op(x!),
        ref: ([x]) => map(x!, f),
      });
    });
  }
});

/** Seeded normal samples at least `margin` from every kink, so finite differences never straddle one. */
function awayFrom(n: number, kinks: readonly number[], seed: number, margin = 0.05, scale = 1.5): number[] {
  const rand = mulberry32(seed);
  const out: number[] = [];
  while (out.length < n) {
    const v = Math.fround(randn(rand) * scale);
    if (kinks.every((k) => Math.abs(v - k) >= margin)) out.push(v);
  }
  return out;
}

/** Positive seeded values in [lo, lo + width), for ops defined or smooth only there. */
function positive(n: number, seed: number, lo = 0.3, width = 2): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => lo + width * rand());
}

describe('erf reference', () => {
  it('matches tabulated values to 1e-12', () => {
    // Values from Abramowitz & Stegun / mpmath.
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [1.5, 0.9661051464753108],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4, 0.9999999845827421],
      [-0.7, -0.6778011938374184],
    ];
    for (const [x, want] of table) expect(Math.abs(erf(x) - want), `erf(${x})`).toBeLessThan(1e-12);
    // Odd symmetry and the derivative 2/sqrt(pi) exp(-x^2) by central differences.
    expect(erf(-1.3)).toBe(-erf(1.3));
    const h = 1e-5;
    for (const x of [-2, -0.3, 0.8, 2.5]) {
      const d = (erf(x + h) - erf(x - h)) / (2 * h);
      expect(Math.abs(d - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x))).toBeLessThan(1e-9);
    }
  });
});

describe('more unary ops', () => {
  const n = 15;
  const cases: [string, (t: G.Tensor) => G.Tensor, (v: number) => number, number[]?][] = [
    ['Pow 2', (x) => G.pow(x, 2), (v) => v ** 2],
    ['Pow 3', (x) => G.pow(x, 3), (v) => v ** 3],
    ['Pow 0.5 (positive inputs)', (x) => G.pow(x, 0.5), Math.sqrt, positive(n, 11)],
    ['Pow -1 (positive inputs)', (x) => G.pow(x, -1), (v) => 1 / v, positive(n, 12)],
    ['Pow -1 (negative inputs)', (x) => G.pow(x, -1), (v) => 1 / v, positive(n, 13).map((v) => -v)],
    ['Pow 1.5', (x) => G.pow(x, 1.5), (v) => v ** 1.5, positive(n, 14)],
    ['Pow 1 (identity)', (x) => G.pow(x, 1), (v) => v],
    ['GELU', G.gelu, gelu],
    ['GELU (wide inputs)', G.gelu, gelu, awayFrom(n, [], 15, 0, 3)],
    ['Erf', G.erf, erf],
    ['Erf (wide inputs)', G.erf, erf, awayFrom(n, [], 16, 0, 2.5)],
    ['Abs', G.abs, Math.abs, awayFrom(n, [0], 17)],
    ['Relu', G.relu, (v) => Math.max(v, 0), awayFrom(n, [0], 18)],
    ['Identity', G.identity, (v) => v],
    ['Cast float32 -> float32', (x) => G.cast(x, 'float32'), (v) => v],
    ['Clip min only', (x) => G.clip(x, -0.5), (v) => Math.max(v, -0.5), awayFrom(n, [-0.5], 19)],
    ['Clip max only', (x) => G.clip(x, undefined, 0.7), (v) => Math.min(v, 0.7), awayFrom(n, [0.7], 20)],
    [
      'Clip both',
      (x) => G.clip(x, -0.5, 0.7),
      (v) => Math.min(Math.max(v, -0.5), 0.7),
      awayFrom(n, [-0.5, 0.7], 21),
    ],
  ];
  for (const [name, op, f, data] of cases) {
    it(name, async () => {
      await checkOp({
        inputs: [{ shape: [3, 5], ...(data && { data }) }],
        build: (_g, [x]) => op(x!),
        ref: ([x]) => map(x!, f),
      });
    });
  }

  it('inputs of the kink tests lie on both sides of every kink', () => {
    // Otherwise Relu/Abs/Clip would only be tested on one linear piece.
    for (const [kinks, seed] of [
      [[0], 17],
      [[0], 18],
      [[-0.5], 19],
      [[0.7], 20],
      [[-0.5, 0.7], 21],
    ] as const) {
      const v = awayFrom(n, kinks, seed);
      for (const k of kinks) {
        expect(v.some((t) => t < k)).toBe(true);
        expect(v.some((t) => t > k)).toBe(true);
      }
    }
  });

  it('Pow 0 has a zero gradient, also at x = 0', async () => {
    // d(x^0)/dx = 0 everywhere; 0 * x^-1 would give NaN at 0.
    await checkOp({
      inputs: [{ shape: [5], data: [0, 1.5, -2, 0.25, 3] }],
      build: (_g, [x]) => G.pow(x!, 0),
      ref: ([x]) => map(x!, () => 1),
    });
  });
});

describe('where with a constant mask', () => {
  const cases = [
    ['same shapes', [2, 3], [2, 3], [2, 3]],
    ['broadcast cond', [3], [2, 3], [2, 3]],
    ['cond [2,1], branches broadcast', [2, 1], [2, 3], [3]],
    ['cond widest', [2, 3, 4], [3, 1], [4]],
  ] as const;
  for (const [name, sc, sa, sb] of cases) {
    it(name, async () => {
      const nc = sc.reduce((p: number, q: number) => p * q, 1);
      const rand = mulberry32(nc + 7);
      const mask = Uint8Array.from({ length: nc }, (_, i) =>
        i === 0 ? 1 : i === 1 ? 0 : rand() < 0.5 ? 1 : 0,
      );
      const maskNd = nd(Float64Array.from(mask), sc);
      await checkOp({
        inputs: [{ shape: sa }, { shape: sb }],
        build: (g, [a, b]) => G.where(g.constant(mask, sc, { name: 'mask', dtype: 'bool' }), a!, b!),
        ref: ([a, b]) => {
          const shape = broadcastShape(broadcastShape(sc, sa), sb);
          const out = zeros(shape);
          for (let i = 0; i < out.data.length; i++) {
            const c = unravel(i, shape);
            out.data[i] = atBroadcast(maskNd, c) ? atBroadcast(a!, c) : atBroadcast(b!, c);
          }
          return out;
        },
      });
    });
  }

  it('takes number branches', async () => {
    const mask = Uint8Array.from([1, 0, 0, 1, 1, 0]);
    await checkOp({
      inputs: [{ shape: [2, 3] }],
      build: (g, [a]) => G.where(g.constant(mask, [2, 3], { name: 'mask', dtype: 'bool' }), a!, -2),
      ref: ([a]) =>
        nd(
          a!.data.map((v, i) => (mask[i] ? v : -2)),
          [2, 3],
        ),
    });
  });
});

describe('casts across dtypes', () => {
  it('a bool -> float32 cast of a comparison carries no gradient; the other path does', async () => {
    // y = x * float(x > 0): d/dx is the mask, with nothing flowing back through the comparison.
    await checkOp({
      inputs: [{ shape: [3, 4], data: awayFrom(12, [0], 22) }],
      build: (g, [x]) => G.mul(x!, G.cast(G.greater(x!, g.scalar(0)), 'float32')),
      ref: ([x]) => map(x!, (v) => Math.max(v, 0)),
    });
  });

  it('a float32 -> int64 -> float32 round trip truncates and carries no gradient', async () => {
    const data = [1.7, -2.2, 0.4, 3.9, -0.6, 2.5];
    await checkOp({
      inputs: [{ shape: [6], data }],
      build: (_g, [x]) => G.add(x!, G.cast(G.cast(x!, 'int64'), 'float32')),
      ref: ([x]) => map(x!, (v) => v + Math.trunc(v)),
    });
  });
});

describe('elementwise build errors', () => {
  it('broadcasting mismatch names the op and both shapes', () => {
    const g = new G.Graph();
    const a = g.input('a', [2, 3]);
    const b = g.input('b', [4]);
    expectBuildError(() => G.add(a, b), 'Add', '[2,3]', '[4]');
    expectBuildError(
      () => G.mul(g.input('c', [2, 3, 4]), g.input('d', [3, 1, 5])),
      'Mul',
      '[2,3,4]',
      '[3,1,5]',
    );
    expectBuildError(() => G.greater(a, b), 'Greater', '[2,3]', '[4]');
    const mask = g.constant(new Uint8Array(5), [5], { dtype: 'bool' });
    expectBuildError(() => G.where(mask, a, a), 'Where', '[5]', '[2,3]');
  });

  it('float-only ops fed int64 name the op, the dtype and the shape', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3], 'int64');
    const ops: [string, (t: G.Tensor) => G.Tensor][] = [
      ['Exp', G.exp],
      ['Log', G.log],
      ['Sqrt', G.sqrt],
      ['Erf', G.erf],
      ['Abs', G.abs],
      ['Relu', G.relu],
      ['GELU', G.gelu],
      ['SiLU', G.silu],
      ['QuickGELU', G.quickGelu],
      ['Pow', (t) => G.pow(t, 2)],
      ['Clip', (t) => G.clip(t, 0, 1)],
    ];
    for (const [name, op] of ops) expectBuildError(() => op(x), name, 'int64', '[2,3]');
  });

  it('mixed dtypes and a non-bool condition', () => {
    const g = new G.Graph();
    const f = g.input('f', [2, 3]);
    const i = g.input('i', [2, 3], 'int64');
    expectBuildError(() => G.add(f, i), 'Add', 'float32 [2,3]', 'int64 [2,3]');
    expectBuildError(() => G.where(f, f, f), 'Where', 'float32', 'not bool');
  });
});
