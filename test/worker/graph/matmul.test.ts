import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { expectBuildError } from '../../helpers/build-error.js';
import { matmulNd } from '../../helpers/nd.js';
import { checkOp } from '../../helpers/op-check.js';
import { linear } from '../../helpers/ref-nn.js';

describe('matmul', () => {
  const cases: [string, readonly number[], readonly number[]][] = [
    ['2-D', [3, 4], [4, 2]],
    ['vector-like rows and columns', [1, 4], [4, 1]],
    ['batched 3-D', [2, 3, 4], [2, 4, 5]],
    ['batch broadcast [2,1,3,4] x [5,4,2]', [2, 1, 3, 4], [5, 4, 2]],
    ['2-D lhs against batched rhs [3,4] x [2,4,5]', [3, 4], [2, 4, 5]],
    ['batched lhs against 2-D rhs [2,3,4] x [4,5]', [2, 3, 4], [4, 5]],
    ['size-1 batch on the left [1,3,4] x [3,4,2]', [1, 3, 4], [3, 4, 2]],
  ];
  for (const [name, sa, sb] of cases) {
    it(`${name}: forward and gradients of both operands`, async () => {
      const { gradErrors } = await checkOp({
        inputs: [{ shape: sa }, { shape: sb }],
        build: (_g, [a, b]) => G.matmul(a!, b!),
        ref: ([a, b]) => matmulNd(a!, b!),
      });
      expect(gradErrors).toHaveLength(2);
    });
  }

  it('gradient of one operand when the other is constant', async () => {
    await checkOp({
      inputs: [{ shape: [2, 1, 3, 4] }, { shape: [5, 4, 2], kind: 'constant' }],
      build: (_g, [a, b]) => G.matmul(a!, b!),
      ref: ([a, b]) => matmulNd(a!, b!),
    });
    await checkOp({
      inputs: [{ shape: [3, 4], kind: 'constant' }, { shape: [2, 4, 5] }],
      build: (_g, [a, b]) => G.matmul(a!, b!),
      ref: ([a, b]) => matmulNd(a!, b!),
    });
  });
});

describe('linear', () => {
  const shapes: [string, readonly number[]][] = [
    ['1-D input', [4]],
    ['2-D input', [3, 4]],
    ['3-D input', [2, 3, 4]],
  ];
  for (const [name, xs] of shapes) {
    it(`${name}, constant weight and bias`, async () => {
      await checkOp({
        inputs: [{ shape: xs }, { shape: [5, 4], kind: 'constant' }, { shape: [5], kind: 'constant' }],
        build: (_g, [x, w, b]) => G.linear(x!, w!, b!),
        ref: ([x, w, b]) => linear(x!, w!, b!),
      });
    });
    it(`${name}, constant weight, no bias`, async () => {
      await checkOp({
        inputs: [{ shape: xs }, { shape: [5, 4], kind: 'constant' }],
        build: (_g, [x, w]) => G.linear(x!, w!),
        ref: ([x, w]) => linear(x!, w!),
      });
    });
    it(`${name}, weight and bias as inputs (gradients for all three)`, async () => {
      const { gradErrors } = await checkOp({
        inputs: [{ shape: xs }, { shape: [5, 4] }, { shape: [5] }],
        build: (_g, [x, w, b]) => G.linear(x!, w!, b!),
        ref: ([x, w, b]) => linear(x!, w!, b!),
      });
      expect(gradErrors).toHaveLength(3);
    });
  }

  it('one weight array used as two constants of different shapes', async () => {
    // The build-time transpose of constant weights is cached per data array; the cache must not
    // hand a [4,3] weight the transpose of a [3,4] weight that shares its data.
    const data = Float32Array.from({ length: 12 }, (_, i) => (i - 5.5) / 4);
    await checkOp({
      inputs: [{ shape: [2, 4] }],
      build: (g, [x]) => {
        const w1 = g.constant(data, [3, 4], { name: 'w1' });
        const w2 = g.constant(data, [4, 3], { name: 'w2' });
        return G.linear(G.linear(x!, w1), w2);
      },
      ref: ([x]) => {
        const w = Float64Array.from(data);
        return linear(linear(x!, { data: w, shape: [3, 4] }), { data: w, shape: [4, 3] });
      },
    });
  });
});

describe('matmul and linear build errors', () => {
  it('inner dimension mismatch names the op and both shapes', () => {
    const g = new G.Graph();
    expectBuildError(
      () => G.matmul(g.input('a', [2, 3]), g.input('b', [4, 5])),
      'MatMul',
      '[2,3]',
      '[4,5]',
      'inner',
    );
  });

  it('batch dimensions that do not broadcast', () => {
    const g = new G.Graph();
    expectBuildError(
      () => G.matmul(g.input('a', [2, 3, 4]), g.input('b', [3, 4, 5])),
      'MatMul',
      '[2,3,4]',
      '[3,4,5]',
    );
  });

  it('rank-1 operands', () => {
    const g = new G.Graph();
    expectBuildError(() => G.matmul(g.input('a', [4]), g.input('b', [4, 2])), 'MatMul', '[4]', '[4,2]');
  });

  it('int64 operands', () => {
    const g = new G.Graph();
    const a = g.input('a', [2, 3], 'int64');
    const b = g.input('b', [3, 2]);
    expectBuildError(() => G.matmul(a, b), 'MatMul', 'int64', '[2,3]');
  });

  it('linear with a mismatched input or bias', () => {
    const g = new G.Graph();
    const w = g.constant(new Float32Array(15), [5, 3], { name: 'w' });
    expectBuildError(() => G.linear(g.input('x', [2, 4]), w), 'Linear', '[2,4]', '[5,3]');
    expectBuildError(
      () => G.linear(g.input('y', [2, 3]), w, g.constant(new Float32Array(4), [4])),
      'Linear',
      '[4]',
    );
  });
});
