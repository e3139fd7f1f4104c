import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { expectBuildError } from '../../helpers/build-error.js';
import type { OpInput } from '../../helpers/op-check.js';
import { checkOp } from '../../helpers/op-check.js';
import { mulberry32, randn } from '../../helpers/random.js';
import { groupNorm, layerNorm, logSoftmax, softmax } from '../../helpers/ref-nn.js';

describe('softmax and logSoftmax', () => {
  const cases: [string, readonly number[], number][] = [
    ['axis -1', [2, 3, 4], -1],
    ['axis 0', [2, 3, 4], 0],
    ['middle axis', [2, 3, 4], 1],
    ['middle axis, negative', [2, 3, 4], -2],
    ['1-D', [5], 0],
  ];
  for (const [opName, op, ref] of [
    ['Softmax', G.softmax, softmax],
    ['LogSoftmax', G.logSoftmax, logSoftmax],
  ] as const) {
    for (const [name, shape, axis] of cases) {
      it(`${opName}: ${name}`, async () => {
        await checkOp({
          inputs: [{ shape }],
          build: (_g, [x]) => op(x!, axis),
          ref: ([x]) => ref(x!, axis),
        });
      });
    }
    it(`${opName}: large logits stay finite`, async () => {
      // Shifted inputs: a naive exp would overflow float32; ORT's kernels subtract the max.
      await checkOp({
        inputs: [{ shape: [2, 4], data: [100, 101, 99, 100.5, -50, -49, -51, -50.25] }],
        build: (_g, [x]) => op(x!, -1),
        ref: ([x]) => ref(x!, -1),
      });
    });
  }
});

/** Inputs for an optional affine weight/bias of length `d`, as constants or graph inputs. */
function affineInputs(d: number, weight: boolean, bias: boolean, kind: 'input' | 'constant'): OpInput[] {
  // Weights around 1 (as trained norms are), biases around 0; distinct values so a mix-up shows.
  const w = Array.from({ length: d }, (_, i) => 0.6 + 0.15 * i);
  const b = Array.from({ length: d }, (_, i) => 0.3 - 0.2 * i);
  return [
    ...(weight ? [{ shape: [d], data: w, kind }] : []),
    ...(bias ? [{ shape: [d], data: b, kind }] : []),
  ];
}

describe('layerNorm', () => {
  const affine = [
    ['no affine', false, false],
    ['weight only', true, false],
    ['bias only', false, true],
    ['weight and bias', true, true],
  ] as const;
  const shapes: [string, readonly number[]][] = [
    ['[3,5]', [3, 5]],
    ['[2,3,4]', [2, 3, 4]],
    ['1-D [6]', [6]],
  ];
  for (const [affName, hasW, hasB] of affine) {
    for (const [shapeName, shape] of shapes) {
      for (const kind of ['constant', 'input'] as const) {
        if (kind === 'input' && !hasW && !hasB) continue;
        const d = shape[shape.length - 1]!;
        it(`${shapeName}, ${affName}${hasW || hasB ? ` as ${kind}s` : ''}`, async () => {
          const { gradErrors } = await checkOp({
            inputs: [{ shape }, ...affineInputs(d, hasW, hasB, kind)],
            build: (_g, [x, ...rest]) => {
              const w = hasW ? rest[0] : undefined;
              const b = hasB ? rest[hasW ? 1 : 0] : undefined;
              return G.layerNorm(x!, w, b);
            },
            ref: ([x, ...rest]) => {
              const w = hasW ? rest[0] : undefined;
              const b = hasB ? rest[hasW ? 1 : 0] : undefined;
              return layerNorm(x!, w, b, 1e-5);
            },
          });
          // x, plus weight and bias when they are inputs.
          expect(gradErrors).toHaveLength(1 + (kind === 'input' ? Number(hasW) + Number(hasB) : 0));
        });
      }
    }
  }

  it('honours eps (small variance where eps matters)', async () => {
    // Values spread ~1e-3: variance ~1e-6, so eps = 1e-5 changes the output markedly.
    const data = Array.from({ length: 8 }, (_, i) => 1 + 1e-3 * Math.sin(3 * i));
    for (const eps of [1e-5, 1e-3]) {
      await checkOp({
        inputs: [{ shape: [2, 4], data }],
        build: (_g, [x]) => G.layerNorm(x!, undefined, undefined, eps),
        ref: ([x]) => layerNorm(x!, undefined, undefined, eps),
        // Values near 1 lose digits to float32 rounding of x - mean; step and tolerance fit that.
        eps: 1e-6,
        forwardTol: 1e-3,
        gradTol: 5e-3,
      });
    }
  });
});

describe('groupNorm', () => {
  const shape = [2, 4, 2, 3] as const;
  const c = shape[1];
  for (const groups of [1, 2, 4]) {
    for (const eps of [1e-6, 1e-5]) {
      it(`groups ${groups}, eps ${eps}, no affine`, async () => {
        await checkOp({
          inputs: [{ shape }],
          build: (_g, [x]) => G.groupNorm(x!, groups, undefined, undefined, eps),
          ref: ([x]) => groupNorm(x!, groups, undefined, undefined, eps),
        });
      });
      it(`groups ${groups}, eps ${eps}, constant weight and bias`, async () => {
        await checkOp({
          inputs: [{ shape }, ...affineInputs(c, true, true, 'constant')],
          build: (_g, [x, w, b]) => G.groupNorm(x!, groups, w, b, eps),
          ref: ([x, w, b]) => groupNorm(x!, groups, w, b, eps),
        });
      });
    }
    it(`groups ${groups}, weight and bias as inputs`, async () => {
      const { gradErrors } = await checkOp({
        inputs: [{ shape }, ...affineInputs(c, true, true, 'input')],
        build: (_g, [x, w, b]) => G.groupNorm(x!, groups, w, b, 1e-5),
        ref: ([x, w, b]) => groupNorm(x!, groups, w, b, 1e-5),
      });
      expect(gradErrors).toHaveLength(3);
    });
  }

  it('weight only and bias only, as inputs', async () => {
    await checkOp({
      inputs: [{ shape }, ...affineInputs(c, true, false, 'input')],
      build: (_g, [x, w]) => G.groupNorm(x!, 2, w),
      ref: ([x, w]) => groupNorm(x!, 2, w, undefined, 1e-5),
    });
    await checkOp({
      inputs: [{ shape }, ...affineInputs(c, false, true, 'input')],
      build: (_g, [x, b]) => G.groupNorm(x!, 2, undefined, b),
      ref: ([x, b]) => groupNorm(x!, 2, undefined, b, 1e-5),
    });
  });

  it('other ranks: [N, C, L] and [N, C]', async () => {
    await checkOp({
      inputs: [{ shape: [2, 6, 3] }, ...affineInputs(6, true, true, 'input')],
      build: (_g, [x, w, b]) => G.groupNorm(x!, 3, w, b),
      ref: ([x, w, b]) => groupNorm(x!, 3, w, b, 1e-5),
    });
    await checkOp({
      inputs: [{ shape: [3, 6] }, ...affineInputs(6, true, true, 'input')],
      build: (_g, [x, w, b]) => G.groupNorm(x!, 2, w, b),
      ref: ([x, w, b]) => groupNorm(x!, 2, w, b, 1e-5),
    });
  });
});

describe('norm numerics', () => {
  // Activations with a large mean and a small spread: a one-pass E[x^2] - E[x]^2 variance in
  // float32 would lose every digit here (1e4 - 1e4 for a variance of 1e-2).
  const rand = mulberry32(3);
  const data = Array.from({ length: 128 }, () => 100 + 0.1 * randn(rand));
  it('layerNorm with mean 100 and std 0.1', async () => {
    await checkOp({
      inputs: [{ shape: [2, 64], data }],
      build: (_g, [x]) => G.layerNorm(x!, undefined, undefined, 1e-6),
      ref: ([x]) => layerNorm(x!, undefined, undefined, 1e-6),
      forwardTol: 5e-5,
      eps: 1e-3,
    });
  });
  it('groupNorm with mean 100 and std 0.1', async () => {
    await checkOp({
      inputs: [{ shape: [1, 4, 4, 8], data }],
      build: (_g, [x]) => G.groupNorm(x!, 2, undefined, undefined, 1e-6),
      ref: ([x]) => groupNorm(x!, 2, undefined, undefined, 1e-6),
      forwardTol: 5e-5,
      eps: 1e-3,
    });
  });
});

describe('norm build errors', () => {
  it('groupNorm with channels not divisible by groups', () => {
    const g = new G.Graph();
    expectBuildError(() => G.groupNorm(g.input('x', [1, 6, 2, 2]), 4), 'GroupNorm', '[1,6,2,2]', '4 groups');
    expectBuildError(() => G.groupNorm(g.input('y', [1, 6, 2, 2]), 0), 'GroupNorm', '[1,6,2,2]');
  });

  it('groupNorm with a wrong-size weight', () => {
    const g = new G.Graph();
    const x = g.input('x', [1, 4, 2, 2]);
    expectBuildError(() => G.groupNorm(x, 2, g.input('w', [3])), 'GroupNorm', '[3]', '4 channels');
  });

  it('softmax and logSoftmax with a bad axis', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    expectBuildError(() => G.softmax(x, 2), 'Softmax', '[2,3]', 'axis 2');
    expectBuildError(() => G.softmax(x, -3), 'Softmax', '[2,3]', 'axis -3');
    expectBuildError(() => G.logSoftmax(x, 5), 'LogSoftmax', '[2,3]', 'axis 5');
  });

  it('layerNorm with a weight that does not match the last axis', () => {
    const g = new G.Graph();
    expectBuildError(() => G.layerNorm(g.input('x', [2, 3]), g.input('w', [2])), 'LayerNorm', '[2]', '[2,3]');
  });

  it('float-only ops fed int64', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 4], 'int64');
    expectBuildError(() => G.softmax(x), 'Softmax', 'int64', '[2,4]');
    expectBuildError(() => G.logSoftmax(x), 'LogSoftmax', 'int64', '[2,4]');
    expectBuildError(() => G.layerNorm(x), 'LayerNorm', 'int64', '[2,4]');
    expectBuildError(() => G.groupNorm(x, 2), 'GroupNorm', 'int64', '[2,4]');
  });
});
