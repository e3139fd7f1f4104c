import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { expectBuildError } from '../../helpers/build-error.js';
import { reduceAxes } from '../../helpers/nd.js';
import { checkOp } from '../../helpers/op-check.js';

describe('reduceSum / reduceMean', () => {
  const cases: [string, readonly number[], readonly number[] | undefined, boolean][] = [
    ['single axis', [2, 3, 4], [1], false],
    ['single axis, keepdims', [2, 3, 4], [1], true],
    ['first axis', [2, 3, 4], [0], false],
    ['last axis', [2, 3, 4], [2], true],
    ['several axes', [2, 3, 4], [0, 2], false],
    ['several axes, keepdims', [2, 3, 2, 2], [1, 3], true],
    ['several axes given out of order', [2, 3, 4], [2, 0], false],
    ['negative axis', [2, 3, 4], [-1], false],
    ['negative axis, keepdims', [2, 3, 4], [-2], true],
    ['mixed signs', [2, 3, 4], [0, -1], true],
    ['all axes (omitted) to a scalar', [2, 3, 4], undefined, false],
    ['all axes listed to a scalar', [3, 4], [0, 1], false],
    ['all axes, keepdims', [2, 3, 4], undefined, true],
    ['1-D to a scalar', [5], [0], false],
  ];
  for (const [opName, op, kind] of [
    ['ReduceSum', G.reduceSum, 'sum'],
    ['ReduceMean', G.reduceMean, 'mean'],
  ] as const) {
    for (const [name, shape, axes, keepdims] of cases) {
      it(`${opName}: ${name}`, async () => {
        await checkOp({
          inputs: [{ shape }],
          build: (_g, [x]) => op(x!, axes, { keepdims }),
          ref: ([x]) => reduceAxes(x!, axes ?? shape.map((_, i) => i), keepdims, kind),
        });
      });
    }
  }

  it('gives the documented output shapes', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3, 4]);
    expect(G.reduceSum(x).shape).toEqual([]);
    expect(G.reduceSum(x, undefined, { keepdims: true }).shape).toEqual([1, 1, 1]);
    expect(G.reduceMean(x, [-1, 0]).shape).toEqual([3]);
    expect(G.reduceMean(x, [1, -2], { keepdims: true }).shape).toEqual([2, 1, 4]);
  });

  it('reduceMax matches the reference forward', async () => {
    await checkOp({
      inputs: [{ shape: [2, 3, 4], grad: false }],
      build: (_g, [x]) => G.reduceMax(x!, [1], { keepdims: true }),
      ref: ([x]) => reduceAxes(x!, [1], true, 'max'),
    });
  });

  it('refuses to differentiate through reduceMax with a message naming it', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    expect(() => G.grad(G.reduceSum(G.reduceMax(x, [1])), [x])).toThrow(/ReduceMax has no gradient/);
  });

  it('rejects an axis out of range, naming the op and the shape', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    expectBuildError(() => G.reduceSum(x, [2]), 'ReduceSum', '[2,3]', 'axis 2');
    expectBuildError(() => G.reduceMean(x, [-3]), 'ReduceMean', '[2,3]', 'axis -3');
  });
});
