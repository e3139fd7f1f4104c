// Data-movement ops (reshape, transpose, concat, split, slice, gather, expand, pad): forward
// through ORT against float64 references and VJPs against finite differences, plus the
// build-time errors that name the op and the shapes involved.
import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { type Nd, nd, transposeNd } from '../../helpers/nd.js';
import { checkOp, relError } from '../../helpers/op-check.js';
import { mulberry32, randn } from '../../helpers/random.js';
import {
  concatRef,
  expandRef,
  gatherRef,
  padRef,
  pythonSliceIndices,
  reshapeRef,
  sliceRef,
  splitRef,
} from '../../helpers/ref-conv.js';

const i64 = (values: readonly number[]) => BigInt64Array.from(values, (v) => BigInt(v));

describe('reshape, unsqueeze, squeeze', () => {
  const cases: [string, number[], number[], number[]][] = [
    ['-1 inferred last', [2, 3, 4], [6, -1], [6, 4]],
    ['-1 inferred first', [2, 3, 4], [-1, 2, 3], [4, 2, 3]],
    ['flatten with -1', [2, 3, 4], [-1], [24]],
    ['split an axis', [2, 6], [2, 2, 3], [2, 2, 3]],
  ];
  for (const [name, from, to, expected] of cases) {
    it(`reshape ${name}`, async () => {
      await checkOp({
        inputs: [{ shape: from }],
        build: (_g, [x]) => G.reshape(x!, to),
        ref: ([x]) => reshapeRef(x!, expected),
      });
    });
  }

  it('unsqueeze in the middle and at -1', async () => {
    await checkOp({
      inputs: [{ shape: [2, 3] }],
      build: (_g, [x]) => G.unsqueeze(G.unsqueeze(x!, 1), -1),
      ref: ([x]) => reshapeRef(x!, [2, 1, 3, 1]),
    });
  });

  it('squeeze a middle axis (negative axis too)', async () => {
    await checkOp({
      inputs: [{ shape: [2, 1, 3, 1] }],
      build: (_g, [x]) => G.squeeze(G.squeeze(x!, 1), -1),
      ref: ([x]) => reshapeRef(x!, [2, 3]),
    });
  });

  it('a 0 in the target shape means an empty axis, not "copy the input dimension"', async () => {
    const g = new G.Graph();
    const x = g.input('x', [3, 2]);
    const empty = G.slice(x, { starts: [0], ends: [0], axes: [1] });
    expect(empty.shape).toEqual([3, 0]);
    const r = G.reshape(G.reshape(empty, [0, 5]), [3, 0]);
    const y = G.concat([r, x], 1);
    const model = G.serialize(g, { outputs: { y } });
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await session.run({ x: { data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [3, 2] } });
    await session.release();
    expect(out.y!.dims).toEqual([3, 2]);
    expect(Array.from(out.y!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('squeeze refuses an axis that is not 1', () => {
    const g = new G.Graph();
    expect(() => G.squeeze(g.input('x', [2, 3]), 1)).toThrow('Squeeze: axis 1 of [2,3] is not 1');
  });
});

describe('transpose', () => {
  const cases: [number[], number[]][] = [
    [
      [3, 4],
      [1, 0],
    ],
    [
      [2, 3, 4],
      [2, 0, 1],
    ],
    [
      [2, 3, 4],
      [1, 2, 0],
    ],
    [
      [1, 2, 3, 4],
      [0, 2, 3, 1],
    ],
    [
      [2, 3, 2, 2],
      [3, 1, 0, 2],
    ],
  ];
  for (const [shape, perm] of cases) {
    it(`${JSON.stringify(shape)} perm ${JSON.stringify(perm)}`, async () => {
      await checkOp({
        inputs: [{ shape }],
        build: (_g, [x]) => G.transpose(x!, perm),
        ref: ([x]) => transposeNd(x!, perm),
      });
    });
  }
});

describe('concat', () => {
  it('two inputs on a middle axis', async () => {
    await checkOp({
      inputs: [{ shape: [2, 3, 4] }, { shape: [2, 2, 4] }],
      build: (_g, xs) => G.concat(xs, 1),
      ref: (xs) => concatRef(xs, 1),
    });
  });

  it('three inputs on a middle axis (negative axis)', async () => {
    await checkOp({
      inputs: [{ shape: [2, 1, 3] }, { shape: [2, 3, 3] }, { shape: [2, 2, 3] }],
      build: (_g, xs) => G.concat(xs, -2),
      ref: (xs) => concatRef(xs, 1),
    });
  });

  it('gradient to only some inputs (one not differentiated, one constant)', async () => {
    const r = await checkOp({
      inputs: [
        { shape: [2, 2, 3] },
        { shape: [2, 1, 3], grad: false },
        { shape: [2, 3, 3], kind: 'constant' },
      ],
      build: (_g, xs) => G.concat(xs, 1),
      ref: (xs) => concatRef(xs, 1),
    });
    expect(r.gradErrors).toHaveLength(1);
  });

  it('gradient only to the last input', async () => {
    await checkOp({
      inputs: [{ shape: [3, 2], kind: 'constant' }, { shape: [3, 2], grad: false }, { shape: [3, 4] }],
      build: (_g, xs) => G.concat(xs, 1),
      ref: (xs) => concatRef(xs, 1),
    });
  });

  it('the same tensor twice: both contributions add up', async () => {
    await checkOp({
      inputs: [{ shape: [2, 3] }],
      build: (_g, [x]) => G.concat([x!, x!], 0),
      ref: ([x]) => concatRef([x!, x!], 0),
    });
  });
});

describe('split', () => {
  it('uneven sizes on a middle axis, every output used', async () => {
    await checkOp({
      inputs: [{ shape: [2, 6, 3] }],
      // Reordering the parts makes a wrong split visible in values, not only shapes.
      build: (_g, [x]) => {
        const [a, b, c] = G.split(x!, [1, 3, 2], 1);
        return G.concat([c!, a!, b!], 1);
      },
      ref: ([x]) => {
        const [a, b, c] = splitRef(x!, [1, 3, 2], 1);
        return concatRef([c!, a!, b!], 1);
      },
    });
  });

  it('only the middle output used: the others get zero gradient', async () => {
    await checkOp({
      inputs: [{ shape: [2, 6, 3] }],
      build: (_g, [x]) => G.split(x!, [1, 3, 2], 1)[1]!,
      ref: ([x]) => splitRef(x!, [1, 3, 2], 1)[1]!,
    });
  });

  it('first and last used, middle not', async () => {
    await checkOp({
      inputs: [{ shape: [4, 5] }],
      build: (_g, [x]) => {
        const [a, , c] = G.split(x!, [2, 1, 2], -1);
        return G.mul(a!, c!);
      },
      ref: ([x]) => {
        const [a, , c] = splitRef(x!, [2, 1, 2], 1);
        return nd(
          a!.data.map((v, i) => v * c!.data[i]!),
          a!.shape,
        );
      },
    });
  });

  it('zero gradient lands exactly where the unused parts were', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 4]);
    const [, b] = G.split(x, [1, 3], 1);
    const [gx] = G.grad(G.reduceSum(G.mul(b!, 2)), [x]);
    const model = G.serialize(g, { outputs: { gx: gx! } });
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await session.run({ x: { data: new Float32Array(8), dims: [2, 4] } });
    await session.release();
    expect(Array.from(out.gx!.data as Float32Array)).toEqual([0, 2, 2, 2, 0, 2, 2, 2]);
  });

  it('writes no zeros into the model for the unused parts (run-time zeros instead)', async () => {
    // [1, 64, 64] parts: a zero initializer for any of them would be 16 KiB.
    for (const used of [[1], [0, 2], [2]]) {
      const g = new G.Graph();
      const x = g.input('x', [3, 64, 64]);
      const parts = G.split(x, [1, 1, 1], 0);
      const loss = G.reduceSum(
        G.mul(
          G.concat(
            used.map((i) => parts[i]!),
            0,
          ),
          3,
        ),
      );
      const [gx] = G.grad(loss, [x]);
      const model = G.serialize(g, { outputs: { gx: gx! } });
      expect(largeZeroInitializers(g), `parts ${used} used`).toEqual([]);
      const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
      const out = (await session.run({ x: { data: new Float32Array(3 * 4096), dims: [3, 64, 64] } })).gx!
        .data as Float32Array;
      await session.release();
      for (let p = 0; p < 3; p++) {
        expect(new Set(out.subarray(p * 4096, (p + 1) * 4096)), `part ${p}`).toEqual(
          new Set([used.includes(p) ? 3 : 0]),
        );
      }
    }
  });
});

/** Names of float initializers of more than 16 values that are all zero. */
function largeZeroInitializers(g: G.Graph): string[] {
  return [...g.initializers.values()]
    .filter((i) => i.data instanceof Float32Array && i.data.length > 16 && i.data.every((v) => v === 0))
    .map((i) => `${i.name} [${i.dims}]`);
}

describe('slice', () => {
  const cases: [string, number[], Parameters<typeof G.slice>[1]][] = [
    ['positive starts and ends on two axes', [4, 6], { starts: [1, 2], ends: [3, 5] }],
    ['negative starts and ends', [3, 7], { starts: [-5], ends: [-1], axes: [1] }],
    ['step 2', [3, 7], { starts: [0], ends: [7], axes: [1], steps: [2] }],
    ['step 2 from an odd start', [3, 8], { starts: [1], ends: [-1], axes: [-1], steps: [2] }],
    ['flip (step -1, whole axis)', [3, 5], { starts: [-1], ends: [-100], axes: [1], steps: [-1] }],
    ['partial flip', [3, 6], { starts: [4], ends: [1], axes: [1], steps: [-1] }],
    ['step -2', [2, 7], { starts: [6], ends: [-8], axes: [1], steps: [-2] }],
    [
      'several axes with mixed steps',
      [3, 4, 5],
      { starts: [0, -1, 1], ends: [3, -10, 100], axes: [0, 2, 1], steps: [2, -1, 2] },
    ],
    [
      'infinite bounds mean "to the end"',
      [3, 4],
      {
        starts: [Number.POSITIVE_INFINITY, 1],
        ends: [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY],
        steps: [-1, 1],
      },
    ],
    ['out-of-range ends clamped', [3, 5], { starts: [-100, 2], ends: [100, 1000], axes: [0, 1] }],
    [
      'start past the end with step -1 is clamped to the last index',
      [2, 4],
      { starts: [10], ends: [0], axes: [1], steps: [-1] },
    ],
  ];
  for (const [name, shape, spec] of cases) {
    it(name, async () => {
      await checkOp({
        inputs: [{ shape }],
        build: (_g, [x]) => G.slice(x!, spec),
        ref: ([x]) => sliceRef(x!, spec),
      });
    });
  }

  it('numpy semantics for a start before the beginning with a negative step (empty)', async () => {
    // Python: list(range(4))[-10:0:-1] == [] and [-10::-1] == []. ONNX instead clamps such a start to 0,
    // so the builder must not hand these values to ORT verbatim.
    expect(pythonSliceIndices(4, -10, -100, -1)).toEqual([]);
    const g = new G.Graph();
    const x = g.input('x', [2, 4]);
    const empty = G.slice(x, { starts: [-10], ends: [-100], axes: [1], steps: [-1] });
    expect(empty.shape).toEqual([2, 0]);
    // Mixed with a real slice on the other axis, then concatenated to a non-empty tensor so ORT
    // has to agree with the declared shapes to produce the right output.
    const y = G.concat([empty, G.slice(x, { starts: [3], ends: [0], axes: [1], steps: [-1] })], 1);
    const model = G.serialize(g, { outputs: { y } });
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await session.run({ x: { data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), dims: [2, 4] } });
    await session.release();
    expect(out.y!.dims).toEqual([2, 3]);
    expect(Array.from(out.y!.data as Float32Array)).toEqual([3, 2, 1, 7, 6, 5]);
  });

  it('gradient through an empty slice next to a flipped one', async () => {
    const empty = { starts: [-10], ends: [-100], axes: [1], steps: [-1] };
    const flip = { starts: [3], ends: [0], axes: [1], steps: [-1] };
    await checkOp({
      inputs: [{ shape: [2, 4] }],
      build: (_g, [x]) => G.concat([G.slice(x!, empty), G.slice(x!, flip)], 1),
      ref: ([x]) => concatRef([sliceRef(x!, empty), sliceRef(x!, flip)], 1),
    });
  });

  it('a full slice with positive steps is the tensor itself', () => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    expect(G.slice(x, { starts: [0, -100], ends: [100, 3] })).toBe(x);
  });
});

describe('gather with constant indices', () => {
  it('axis 0 with repeated indices (gradients accumulate)', async () => {
    const idx = [0, 2, 4, 2, 2, 0];
    await checkOp({
      inputs: [{ shape: [5, 3] }],
      build: (g, [x]) => G.gather(x!, g.constant(i64(idx), [2, 3]), 0),
      ref: ([x]) => gatherRef(x!, idx, [2, 3], 0),
    });
  });

  it('a middle axis with repeated and negative indices', async () => {
    const idx = [3, 0, 3, -1, 1];
    await checkOp({
      inputs: [{ shape: [2, 4, 3] }],
      build: (g, [x]) => G.gather(x!, g.constant(i64(idx), [5]), 1),
      ref: ([x]) => gatherRef(x!, idx, [5], 1),
    });
  });

  it('a middle axis with 2-D indices', async () => {
    const idx = [1, 1, 0, 2];
    await checkOp({
      inputs: [{ shape: [2, 3, 2, 2] }],
      build: (g, [x]) => G.gather(x!, g.constant(i64(idx), [2, 2]), -3),
      ref: ([x]) => gatherRef(x!, idx, [2, 2], 1),
    });
  });

  it('a scalar index drops the axis', async () => {
    await checkOp({
      inputs: [{ shape: [3, 4] }],
      build: (g, [x]) => G.gather(x!, g.constant(i64([2]), []), 1),
      ref: ([x]) => gatherRef(x!, [2], [], 1),
    });
  });

  it('the last axis', async () => {
    const idx = [2, 2, 0];
    await checkOp({
      inputs: [{ shape: [2, 2, 3] }],
      build: (g, [x]) => G.gather(x!, g.constant(i64(idx), [3]), 2),
      ref: ([x]) => gatherRef(x!, idx, [3], 2),
    });
  });
});

describe('gather with int32 indices', () => {
  it('forward and accumulated gradient (the VJP casts the indices to int64)', async () => {
    const idx = [1, -1, 1];
    await checkOp({
      inputs: [{ shape: [2, 3, 2] }],
      build: (g, [x]) => G.gather(x!, g.constant(Int32Array.from(idx), [3]), 1),
      ref: ([x]) => gatherRef(x!, idx, [3], 1),
    });
  });
});

describe('gather with indices fed at run time', () => {
  // checkOp feeds only float inputs, so this builds and runs the graph itself.
  const dataShape = [2, 5, 3];
  const idxShape = [2, 2];
  const rand = mulberry32(7);
  const xData = Float64Array.from(Float32Array.from({ length: 30 }, () => randn(rand)));
  const rData = Float64Array.from(Float32Array.from({ length: 2 * 4 * 3 }, () => randn(rand)));

  const objective = (x: Nd, idx: readonly number[]) => {
    const y = gatherRef(x, idx, idxShape, 1);
    return y.data.reduce((s, v, i) => s + v * rData[i]!, 0);
  };

  it('forward and gradient for several index sets from one model', async () => {
    const g = new G.Graph();
    const x = g.input('x', dataShape);
    const indices = g.input('idx', idxShape, 'int64');
    const y = G.gather(x, indices, 1);
    expect(y.shape).toEqual([2, 2, 2, 3]);
    const loss = G.reduceSum(G.mul(y, g.constant(Float32Array.from(rData), y.shape, { name: 'r' })));
    const [gx] = G.grad(loss, [x]);
    const model = G.serialize(g, { outputs: { y, gx: gx! } });
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    try {
      for (const idx of [
        [0, 4, 2, 1],
        [3, 3, 3, -2],
        [4, 0, 0, 4],
      ]) {
        const out = await session.run({
          x: { data: Float32Array.from(xData), dims: dataShape },
          idx: { data: i64(idx), dims: idxShape },
        });
        const xs = nd(xData, dataShape);
        const ref = gatherRef(xs, idx, idxShape, 1);
        expect(out.y!.dims).toEqual([2, 2, 2, 3]);
        expect(relError(out.y!.data as Float32Array, ref.data)).toBeLessThanOrEqual(1e-6);
        const eps = 1e-3;
        const fd = Array.from(xData, (_, j) => {
          const plus = Float64Array.from(xData);
          const minus = Float64Array.from(xData);
          plus[j]! += eps;
          minus[j]! -= eps;
          return (objective(nd(plus, dataShape), idx) - objective(nd(minus, dataShape), idx)) / (2 * eps);
        });
        expect(relError(out.gx!.data as Float32Array, fd)).toBeLessThanOrEqual(1e-3);
        // Repeated indices must accumulate: the gradient is not just a copy of one contribution.
        if (idx[0] === 3) expect(Math.abs((out.gx!.data as Float32Array)[3 * 3]!)).toBeGreaterThan(0);
      }
    } finally {
      await session.release();
    }
  });

  it('refuses float indices and a gradient w.r.t. the indices', () => {
    const g = new G.Graph();
    const x = g.input('x', [3, 2]);
    expect(() => G.gather(x, g.input('f', [2]), 0)).toThrow('Gather: indices "f" are float32, not int64');
    const idx = g.input('i', [2], 'int64');
    const y = G.gather(x, idx, 0);
    expect(() => G.grad(G.reduceSum(y), [idx])).toThrow(/cannot differentiate w\.r\.t\. "i".*int64/);
  });
});

describe('expand', () => {
  const cases: [string, number[], number[]][] = [
    ['leading axes and a size-1 axis', [3, 1], [2, 3, 4]],
    ['size-1 axis only', [1, 4], [3, 4]],
    ['middle size-1 axis', [2, 1, 3], [2, 5, 3]],
    ['scalar to a matrix', [], [2, 3]],
  ];
  for (const [name, from, to] of cases) {
    it(name, async () => {
      await checkOp({
        inputs: [{ shape: from }],
        build: (_g, [x]) => G.expand(x!, to),
        ref: ([x]) => expandRef(x!, to),
      });
    });
  }
});

describe('pad', () => {
  const cases: [string, number[], number[]][] = [
    ['positive pads', [2, 3], [1, 2, 1, 2]],
    ['asymmetric pads on H and W of NCHW', [1, 2, 3, 3], [0, 0, 1, 0, 0, 0, 0, 2]],
    ['negative pads crop', [4, 5], [-1, 0, -2, -1]],
    ['mixed pad and crop', [1, 2, 4, 4], [0, 0, -1, 2, 0, 0, 1, -2]],
  ];
  for (const [name, shape, pads] of cases) {
    it(name, async () => {
      await checkOp({
        inputs: [{ shape }],
        build: (_g, [x]) => G.pad(x!, pads),
        ref: ([x]) => padRef(x!, pads),
      });
    });
  }

  it('int64 tensors pad with an int64 value', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2], 'int64');
    const y = G.pad(x, [1, 2], 7);
    const model = G.serialize(g, { outputs: { y } });
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await session.run({ x: { data: i64([3, 4]), dims: [2] } });
    await session.release();
    expect(Array.from(out.y!.data as BigInt64Array, Number)).toEqual([7, 3, 4, 7, 7]);
  });

  it('a non-zero pad value', async () => {
    await checkOp({
      inputs: [{ shape: [2, 2] }],
      build: (_g, [x]) => G.pad(x!, [1, 0, 0, 1], 0.5),
      ref: ([x]) => padRef(x!, [1, 0, 0, 1], 0.5),
    });
  });
});

describe('build-time errors name the op and the shapes', () => {
  const g = new G.Graph();
  const x = g.input('x', [2, 3, 4]);

  it('reshape to a wrong size', () => {
    expect(() => G.reshape(x, [5, 5])).toThrow('Reshape: cannot reshape [2,3,4] (24 values) to [5,5]');
    expect(() => G.reshape(x, [5, -1])).toThrow('Reshape: cannot reshape [2,3,4] (24 values) to [5,-1]');
    expect(() => G.reshape(x, [-1, -1])).toThrow('Reshape: bad target shape [-1,-1]');
  });

  it('concat mismatch outside the axis', () => {
    expect(() => G.concat([x, g.input('y', [2, 4, 4])], 2)).toThrow(
      'Concat: shapes [2,3,4], [2,4,4] do not match outside axis 2',
    );
    expect(() => G.concat([x, g.input('z', [2, 3])], 0)).toThrow(
      'Concat: shapes [2,3,4], [2,3] do not match',
    );
  });

  it('gather index out of range', () => {
    expect(() => G.gather(x, g.constant(i64([0, 3]), [2]), 1)).toThrow(
      'Gather: index 3 is out of range for axis 1 of [2,3,4]',
    );
    expect(() => G.gather(x, g.constant(i64([-5]), [1]), -1)).toThrow(
      'Gather: index -5 is out of range for axis -1 of [2,3,4]',
    );
  });

  it('transpose bad perm', () => {
    expect(() => G.transpose(x, [0, 0, 1])).toThrow('Transpose: perm [0,0,1] is not a permutation of 3 axes');
    expect(() => G.transpose(x, [1, 0])).toThrow('Transpose: perm [1,0] is not a permutation of 3 axes');
  });

  it('pad wrong length', () => {
    expect(() => G.pad(x, [1, 1])).toThrow('Pad: needs 6 integer pads for [2,3,4], got [1,1]');
    expect(() => G.pad(x, [0, 0, -2, 0, 0, -3])).toThrow('Pad: pads [0,0,-2,0,0,-3] crop [2,3,4] below zero');
  });

  it('split sizes, slice lengths, expand shapes and axes', () => {
    expect(() => G.split(x, [1, 1], 1)).toThrow('Split: sizes [1,1] do not add up to axis 1 of [2,3,4]');
    expect(() => G.slice(x, { starts: [0], ends: [1, 2] })).toThrow(
      'Slice: starts, ends, axes and steps must have the same length',
    );
    expect(() => G.slice(x, { starts: [0], ends: [1], steps: [0] })).toThrow('Slice: steps must be non-zero');
    expect(() => G.slice(x, { starts: [0.5], ends: [2] })).toThrow(
      'Slice: starts and ends must be integers, got 0.5:2 on axis 0',
    );
    expect(() => G.slice(x, { starts: [0, 1], ends: [1, 2], axes: [1, -2] })).toThrow(
      'Slice: axes [1,-2] name axis 1 twice',
    );
    expect(() => G.expand(x, [2, 5, 4])).toThrow('Expand: cannot expand [2,3,4] to [2,5,4]');
    expect(() => G.unsqueeze(x, 4)).toThrow('Unsqueeze: axis 4 is out of range for rank 4');
    expect(() => G.concat([x, x], 3)).toThrow('Concat: axis 3 is out of range for rank 3');
  });
});
