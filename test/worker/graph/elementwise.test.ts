import { describe, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { map, zip } from '../../helpers/nd.js';
import { checkOp } from '../../helpers/op-check.js';

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
