// Semantics of grad() beyond single ops: fan-out, repeated operands, zeros for unrelated inputs,
// pruning of unrelated branches, intermediate tensors, seeds, clear errors, non-differentiable
// values on the way to the loss, and several grad() calls on one graph. Values come from ORT.
import { describe, expect, it } from 'vitest';
import { stepGraph } from '../../../src/worker/generate/step-graph.js';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { mulberry32, randomArray } from '../../helpers/random.js';
import { tinyModels } from '../generate/tiny-models.js';

type Feeds = Record<string, Float32Array | BigInt64Array>;

/** Serializes `outputs`, runs them once in ORT, returns plain arrays by output name. */
async function runGraph(
  g: G.Graph,
  outputs: Record<string, G.Tensor>,
  feeds: Feeds,
): Promise<Record<string, number[]>> {
  const model = G.serialize(g, { outputs });
  const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
  const inputs = Object.fromEntries(
    model.inputNames.map((name) => {
      const t = g.inputs.find((i) => i.name === name)!;
      return [name, { data: feeds[name]!, dims: t.shape }];
    }),
  );
  const out = await session.run(inputs);
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data, Number)]));
}

function expectClose(got: readonly number[], want: readonly number[], tol = 1e-5): void {
  expect(got.length).toBe(want.length);
  got.forEach((v, i) => {
    expect(Math.abs(v - want[i]!), `element ${i}: ${v} vs ${want[i]}`).toBeLessThanOrEqual(
      tol * Math.max(1, Math.abs(want[i]!)),
    );
  });
}

const rand = mulberry32(3);
const X = randomArray(rand, 6);
const xs = Array.from(X);

describe('grad: how gradients combine', () => {
  it('sums the gradients of a tensor used by two ops (fan-out)', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const loss = G.add(G.reduceSum(G.mul(x, 3)), G.reduceSum(G.exp(x)));
    const before = g.nodes.length;
    const [gx] = G.grad(loss, [x]);
    // The two contributions meet in one Sum node.
    expect(g.nodes.slice(before).filter((n) => n.opType === 'Sum')).toHaveLength(1);
    const out = await runGraph(g, { gx: gx! }, { x: X });
    expectClose(
      out.gx!,
      xs.map((v) => 3 + Math.exp(v)),
    );
  });

  it('differentiates both operands of mul(x, x)', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const [gx] = G.grad(G.reduceSum(G.mul(x, x)), [x]);
    const out = await runGraph(g, { gx: gx! }, { x: X });
    expectClose(
      out.gx!,
      xs.map((v) => 2 * v),
    );
  });

  it('gives zeros for inputs the loss does not depend on', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const z = g.input('z', [3, 2]);
    const unused = g.input('unused', [4]);
    const side = G.exp(z); // z feeds another output, not the loss
    const loss = G.reduceSum(G.mul(x, x));
    const [gx, gz, gu] = G.grad(loss, [x, z, unused]);
    expect(gz!.shape).toEqual([3, 2]);
    expect(gu!.shape).toEqual([4]);
    const out = await runGraph(
      g,
      { side, gx: gx!, gz: gz!, gu: gu! },
      { x: X, z: X, unused: new Float32Array(4).fill(1) },
    );
    expect(out.gz).toEqual([0, 0, 0, 0, 0, 0]);
    expect(out.gu).toEqual([0, 0, 0, 0]);
    // The zeros are made at run time, not stored in the model.
    const zeroInits = [...g.initializers.values()].filter(
      (i) => i.data instanceof Float32Array && i.data.length > 1 && i.data.every((v) => v === 0),
    );
    expect(zeroInits.map((i) => i.name)).toEqual([]);
    expectClose(
      out.gx!,
      xs.map((v) => 2 * v),
    );
  });

  it('emits nothing for branches that do not reach the loss or do not depend on the inputs', () => {
    const build = (withBranches: boolean) => {
      const g = new G.Graph();
      const x = g.input('x', [2, 3]);
      const c = g.input('c', [2, 3]);
      let loss = G.reduceSum(G.mul(G.tanh(x), 2));
      const start = g.nodes.length;
      if (withBranches) {
        // Depends on x but does not reach the loss (and has an op without a VJP).
        G.reduceMax(G.exp(G.mul(x, c)));
        // Reaches the loss but does not depend on x.
        const other = G.reduceSum(G.sigmoid(c));
        loss = G.add(loss, other);
      }
      const branchTensors = new Set(
        g.nodes
          .slice(start)
          .filter((n) => n.opType !== 'Add')
          .flatMap((n) => n.outputs),
      );
      const before = g.nodes.length;
      G.grad(loss, [x]);
      return { emitted: g.nodes.slice(before), branchTensors };
    };
    const plain = build(false);
    const branched = build(true);
    expect(plain.emitted.length).toBeGreaterThan(0);
    expect(branched.branchTensors.size).toBe(5);
    expect(branched.emitted.map((n) => n.opType)).toEqual(plain.emitted.map((n) => n.opType));
    const reads = branched.emitted.flatMap((n) => n.inputs).filter((i) => branched.branchTensors.has(i));
    expect(reads).toEqual([]);
  });

  it('differentiates w.r.t. an intermediate tensor as well as the input it came from', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const h = G.exp(x);
    const c = g.constant(Float32Array.from([1, -2, 0.5, 3, -1, 2]), [2, 3], { name: 'c' });
    const loss = G.reduceSum(G.mul(G.mul(h, h), c));
    const [gh, gx] = G.grad(loss, [h, x]);
    const out = await runGraph(g, { gh: gh!, gx: gx! }, { x: X });
    const cs = [1, -2, 0.5, 3, -1, 2];
    expectClose(
      out.gh!,
      xs.map((v, i) => 2 * Math.exp(v) * cs[i]!),
    );
    expectClose(
      out.gx!,
      xs.map((v, i) => 2 * Math.exp(2 * v) * cs[i]!),
    );
  });

  it('takes a seed gradient for a non-scalar output', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const seed = g.input('seed', [2, 3]);
    const y = G.mul(x, x);
    const [gx] = G.grad(y, [x], { seed });
    const S = randomArray(rand, 6);
    const out = await runGraph(g, { gx: gx! }, { x: X, seed: S });
    expectClose(
      out.gx!,
      xs.map((v, i) => 2 * v * S[i]!),
    );
  });
});

describe('grad: errors', () => {
  it('refuses a non-scalar loss without a seed, and a seed of the wrong shape', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const y = G.exp(x);
    expect(() => G.grad(y, [x])).toThrow(G.GraphError);
    expect(() => G.grad(y, [x])).toThrow(/shape \[2,3\].*scalar or pass a seed/);
    const bad = g.input('bad_seed', [3, 2]);
    expect(() => G.grad(y, [x], { seed: bad })).toThrow(/seed shape \[3,2\] differs from loss shape \[2,3\]/);
  });

  it('refuses an int64 input, naming it', () => {
    const g = new G.Graph();
    const x = g.input('x', [3]);
    const idx = g.input('token_ids', [3], 'int64');
    const loss = G.reduceSum(G.mul(x, G.cast(idx, 'float32')));
    expect(() => G.grad(loss, [x, idx])).toThrow(G.GraphError);
    expect(() => G.grad(loss, [x, idx])).toThrow(/"token_ids".*int64/);
  });

  it('refuses an op without a VJP between the input and the loss, naming the op', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const loss = G.reduceSum(G.sub(x, G.reduceMax(x, [1], { keepdims: true })));
    expect(() => G.grad(loss, [x])).toThrow(G.GraphError);
    expect(() => G.grad(loss, [x])).toThrow(/ReduceMax/);
  });

  it('accepts the same op where no gradient has to pass through it', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const c = g.input('c', [2, 3]);
    const side = G.reduceMax(x); // depends on x, not on the way to the loss
    const loss = G.reduceSum(G.mul(x, G.reduceMax(c))); // on the way, but independent of x
    const [gx] = G.grad(loss, [x]);
    const C = Float32Array.from([0.5, -1, 2.5, 0, 1, -3]);
    const out = await runGraph(g, { side, gx: gx! }, { x: X, c: C });
    expectClose(out.gx!, new Array(6).fill(2.5));
    expectClose(out.side!, [Math.max(...X)]);
  });
});

describe('grad: non-differentiable values on the way', () => {
  it('passes argmin indices, comparison masks and shapes without breaking', async () => {
    const g = new G.Graph();
    const z = g.input('z', [1, 2, 2, 2]);
    const cb = Float32Array.from([1, 0, 0, 1, -1, -1]); // three 2-D codes
    const codebook = g.constant(cb, [3, 2], { name: 'codebook' });
    const { quantized, indices } = G.vectorQuantize(z, codebook);
    const R = randomArray(rand, 8);
    const r = g.constant(R, [1, 2, 2, 2], { name: 'r' });
    const mask = G.greater(z, g.scalar(0));
    const shape = g.emit('Shape', [z], { outputs: [{ shape: [4], dtype: 'int64' }] })[0]!;
    const loss = G.add(
      G.add(G.reduceSum(G.mul(quantized, r)), G.reduceSum(G.mul(G.cast(indices, 'float32'), 0.5))),
      G.add(
        G.reduceSum(G.mul(G.where(mask, z, 0), 2)),
        // sum(z) * (1 + 2 + 2 + 2): a factor computed from the shape
        G.mul(G.reduceSum(z), G.reduceSum(G.cast(shape, 'float32'))),
      ),
    );
    const [gz] = G.grad(loss, [z]);
    const Z = Float32Array.from([0.9, -0.2, 0.1, -1.3, 0.3, 1.2, -0.4, -0.8]);
    const out = await runGraph(g, { indices, loss, gz: gz! }, { z: Z });
    // Nearest codes per position (z is [1, D=2, 2, 2], so position p has (Z[p], Z[4 + p])).
    expect(out.indices).toEqual([0, 1, 0, 2]);
    // Straight-through r, plus the mask of where(z > 0), plus 7 from the shape term.
    expectClose(
      out.gz!,
      Array.from(Z, (v, i) => R[i]! + (v > 0 ? 2 : 0) + 7),
    );
  });
});

describe('grad: several calls on one graph', () => {
  it('builds independent backward passes for two losses', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const c = g.constant(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3], { name: 'c' });
    const [g1] = G.grad(G.reduceSum(G.mul(x, x)), [x]);
    const [g2] = G.grad(G.reduceSum(G.mul(G.exp(x), c)), [x]);
    // A gradient used as a constant (stop-gradient) in a third loss.
    const g1c = g.withoutTape(() => G.mul(g1!, 1));
    const [g3] = G.grad(G.reduceSum(G.mul(x, g1c)), [x]);
    const out = await runGraph(g, { g1: g1!, g2: g2!, g3: g3! }, { x: X });
    expectClose(
      out.g1!,
      xs.map((v) => 2 * v),
    );
    expectClose(
      out.g2!,
      xs.map((v, i) => Math.exp(v) * (i + 1)),
    );
    expectClose(
      out.g3!,
      xs.map((v) => 2 * v),
    );
  });

  it('refuses a loss built from an earlier gradient (second order) instead of dropping terms', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const [g1] = G.grad(G.reduceSum(G.mul(G.exp(x), x)), [x]);
    expect(() => G.grad(G.reduceSum(G.mul(g1!, g1!)), [x])).toThrow(/second-order/);
    expect(() => G.grad(G.reduceSum(G.mul(g1!, x)), [x])).toThrow(G.GraphError);
    // An earlier gradient that does not depend on the new input is a constant for it.
    const w = g.input('w', [2, 3]);
    expect(() => G.grad(G.reduceSum(G.mul(g1!, w)), [w])).not.toThrow();
  });
});

describe('the step graph', () => {
  it('holds no all-zero initializer above 4 KiB (zeros are made at run time)', () => {
    // Every symbolic zero of the backward pass: the quantiser, the clamp, the init-image term.
    const built = stepGraph(tinyModels(), {
      width: 64,
      height: 64,
      cutouts: 3,
      prompts: 2,
      quantize: true,
      initImage: true,
    });
    const big = [...built.graph.initializers.values()].filter(
      (i) => i.data.byteLength > 4096 && (i.data as Float32Array).every((v) => v === 0),
    );
    expect(big.map((i) => `${i.name} [${i.dims}]`)).toEqual([]);
  });
});
