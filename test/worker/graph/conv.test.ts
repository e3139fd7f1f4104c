// conv2d, upsampleNearest2x and upsampleConv3x3: forward through ORT against float64 loops, input
// (and bias) gradients against finite differences for every VJP path (flipped-weight Conv for
// constant stride-1 weights, ConvTranspose otherwise, the stride-2 Conv of the fused upsampling
// conv), and the build-time errors that name the shapes.
import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import type { Nd } from '../../helpers/nd.js';
import { checkOp, type OpInput } from '../../helpers/op-check.js';
import { conv2dRef, type RefConvOptions, upsampleNearest2xRef } from '../../helpers/ref-conv.js';

/** Op types the backward pass emitted: nodes added by grad() after the forward graph was built. */
function backwardOps(build: (g: G.Graph) => { loss: G.Tensor; wrt: G.Tensor[] }): string[] {
  const g = new G.Graph();
  const { loss, wrt } = build(g);
  const before = g.nodes.length;
  G.grad(loss, wrt);
  return g.nodes.slice(before).map((n) => n.opType);
}

interface ConvCase {
  readonly name: string;
  readonly x: readonly number[];
  readonly w: readonly number[];
  readonly bias?: boolean;
  readonly options: RefConvOptions;
  /** How the weights enter the graph. */
  readonly weights: 'constant' | 'input';
}

const cases: ConvCase[] = [
  {
    name: '3x3 stride 1 pad 1',
    x: [1, 2, 5, 5],
    w: [3, 2, 3, 3],
    bias: true,
    options: { pads: [1, 1, 1, 1] },
    weights: 'constant',
  },
  { name: '1x1', x: [1, 2, 4, 5], w: [3, 2, 1, 1], bias: true, options: {}, weights: 'constant' },
  { name: '3x3 without padding', x: [1, 2, 5, 5], w: [3, 2, 3, 3], options: {}, weights: 'constant' },
  {
    name: 'rectangular 2x3 kernel, batch 2',
    x: [2, 2, 4, 5],
    w: [3, 2, 2, 3],
    options: { pads: [1, 0, 0, 2] },
    weights: 'constant',
  },
  {
    name: "asymmetric pads (0,1,0,1) stride 2 (VQGAN's downsampling)",
    x: [1, 2, 6, 6],
    w: [3, 2, 3, 3],
    bias: true,
    options: { strides: [2, 2], pads: [0, 0, 1, 1] },
    weights: 'constant',
  },
  {
    // H: (6 - 3) % 2 = 1 leaves a row the conv never reads, so ConvTranspose needs output_padding.
    name: 'asymmetric pads [t=0,l=1,b=0,r=1] stride 2, odd width',
    x: [1, 2, 6, 7],
    w: [3, 2, 3, 3],
    options: { strides: [2, 2], pads: [0, 1, 0, 1] },
    weights: 'constant',
  },
  {
    name: 'stride 2 pad 1',
    x: [1, 2, 5, 5],
    w: [3, 2, 3, 3],
    bias: true,
    options: { strides: [2, 2], pads: [1, 1, 1, 1] },
    weights: 'constant',
  },
  {
    name: 'stride 3, (H + pads - k) not divisible by the stride',
    x: [1, 2, 5, 8],
    w: [3, 2, 3, 3],
    options: { strides: [3, 3], pads: [1, 0, 1, 0] },
    weights: 'constant',
  },
  {
    name: 'strides [2,3]',
    x: [1, 2, 6, 7],
    w: [3, 2, 3, 2],
    options: { strides: [2, 3], pads: [1, 1, 0, 0] },
    weights: 'constant',
  },
  {
    name: 'dilation 2',
    x: [1, 2, 7, 7],
    w: [3, 2, 3, 3],
    bias: true,
    options: { dilations: [2, 2], pads: [2, 2, 2, 2] },
    weights: 'constant',
  },
  {
    name: 'dilation 2 with stride 2, no padding',
    x: [1, 2, 8, 7],
    w: [3, 2, 3, 3],
    options: { dilations: [2, 2], strides: [2, 2] },
    weights: 'constant',
  },
  {
    name: 'stride 1 with pads wider than the kernel',
    x: [1, 2, 4, 4],
    w: [3, 2, 3, 3],
    options: { pads: [3, 0, 1, 3] },
    weights: 'constant',
  },
  {
    name: 'weights as a graph input, 3x3 pad 1',
    x: [1, 2, 5, 5],
    w: [3, 2, 3, 3],
    bias: true,
    options: { pads: [1, 1, 1, 1] },
    weights: 'input',
  },
  {
    name: 'weights as a graph input, stride 2',
    x: [1, 2, 5, 5],
    w: [3, 2, 3, 3],
    options: { strides: [2, 2], pads: [0, 1, 0, 1] },
    weights: 'input',
  },
];

describe('conv2d forward and input gradient', () => {
  for (const c of cases) {
    it(`${c.name} (${c.weights} weights${c.bias ? ', bias' : ''})`, async () => {
      const o = c.w[0]!;
      const inputs: OpInput[] = [
        { shape: c.x },
        // Weights fed at run time still get no gradient: only activations are differentiated.
        c.weights === 'constant' ? { shape: c.w, kind: 'constant' } : { shape: c.w, grad: false },
        ...(c.bias ? [{ shape: [o], kind: 'constant' } as const] : []),
      ];
      await checkOp({
        inputs,
        build: (_g, [x, w, b]) => G.conv2d(x!, w!, b, c.options),
        ref: ([x, w, b]) => conv2dRef(x!, w!, b, c.options),
        maxCoords: 64,
      });
    });
  }
});

describe('conv2d bias', () => {
  it('gradient w.r.t. the bias and the input, both graph inputs', async () => {
    const r = await checkOp({
      inputs: [{ shape: [1, 2, 5, 5] }, { shape: [3, 2, 3, 3], kind: 'constant' }, { shape: [3] }],
      build: (_g, [x, w, b]) => G.conv2d(x!, w!, b!, { pads: [1, 1, 1, 1] }),
      ref: ([x, w, b]) => conv2dRef(x!, w!, b!, { pads: [1, 1, 1, 1] }),
      maxCoords: 64,
    });
    expect(r.gradErrors).toHaveLength(2);
  });

  it('gradient w.r.t. the bias alone, strided, weights fed at run time', async () => {
    await checkOp({
      inputs: [{ shape: [2, 2, 5, 5], grad: false }, { shape: [3, 2, 3, 3], grad: false }, { shape: [3] }],
      build: (_g, [x, w, b]) => G.conv2d(x!, w!, b!, { strides: [2, 2], pads: [1, 1, 1, 1] }),
      ref: ([x, w, b]) => conv2dRef(x!, w!, b!, { strides: [2, 2], pads: [1, 1, 1, 1] }),
    });
  });

  it('two stacked convs with SiLU between (the decoder pattern)', async () => {
    const silu = (v: number) => v / (1 + Math.exp(-v));
    await checkOp({
      inputs: [
        { shape: [1, 2, 4, 4] },
        { shape: [3, 2, 3, 3], kind: 'constant' },
        { shape: [2, 3, 3, 3], kind: 'constant' },
        { shape: [2], kind: 'constant' },
      ],
      build: (_g, [x, w1, w2, b2]) =>
        G.conv2d(G.silu(G.conv2d(x!, w1!, undefined, { pads: [1, 1, 1, 1] })), w2!, b2!, {
          pads: [1, 1, 1, 1],
        }),
      ref: ([x, w1, w2, b2]) => {
        const h = conv2dRef(x!, w1!, undefined, { pads: [1, 1, 1, 1] });
        const a: Nd = { data: h.data.map(silu), shape: h.shape };
        return conv2dRef(a, w2!, b2!, { pads: [1, 1, 1, 1] });
      },
    });
  });
});

describe('conv2d VJP paths', () => {
  const pad1 = { pads: [1, 1, 1, 1] as const };
  it('constant stride-1 weights: dx is a Conv with flipped weights, no ConvTranspose', () => {
    const ops = backwardOps((g) => {
      const x = g.input('x', [1, 2, 5, 5]);
      const w = g.constant(new Float32Array(54).fill(0.1), [3, 2, 3, 3]);
      return { loss: G.reduceSum(G.conv2d(x, w, undefined, pad1)), wrt: [x] };
    });
    expect(ops).toContain('Conv');
    expect(ops).not.toContain('ConvTranspose');
  });

  it('weights fed as a graph input: dx is a ConvTranspose', () => {
    const ops = backwardOps((g) => {
      const x = g.input('x', [1, 2, 5, 5]);
      const w = g.input('w', [3, 2, 3, 3]);
      return { loss: G.reduceSum(G.conv2d(x, w, undefined, pad1)), wrt: [x] };
    });
    expect(ops).toContain('ConvTranspose');
    expect(ops).not.toContain('Conv');
  });

  it('strided constant weights: dx is a ConvTranspose', () => {
    const ops = backwardOps((g) => {
      const x = g.input('x', [1, 2, 5, 5]);
      const w = g.constant(new Float32Array(54).fill(0.1), [3, 2, 3, 3]);
      return { loss: G.reduceSum(G.conv2d(x, w, undefined, { strides: [2, 2] })), wrt: [x] };
    });
    expect(ops).toContain('ConvTranspose');
  });
});

describe('conv2d weights sharing one Float32Array', () => {
  it('two convs whose weights reuse the same data with different shapes', async () => {
    // [3,2,3,3] and [2,3,3,3] both hold 54 values; the flipped-weight cache must not mix them up.
    const shared = Float32Array.from({ length: 54 }, (_, i) => Math.sin(i));
    await checkOp({
      inputs: [{ shape: [1, 2, 4, 4] }],
      build: (g, [x]) => {
        const w1 = g.constant(shared, [3, 2, 3, 3], { name: 'w1' });
        const w2 = g.constant(shared, [2, 3, 3, 3], { name: 'w2' });
        return G.conv2d(G.conv2d(x!, w1, undefined, { pads: [1, 1, 1, 1] }), w2, undefined, {
          pads: [1, 1, 1, 1],
        });
      },
      ref: ([x]) => {
        const w = Float64Array.from(shared);
        const h = conv2dRef(x!, { data: w, shape: [3, 2, 3, 3] }, undefined, { pads: [1, 1, 1, 1] });
        return conv2dRef(h, { data: w, shape: [2, 3, 3, 3] }, undefined, { pads: [1, 1, 1, 1] });
      },
    });
  });
});

describe('upsampleNearest2x', () => {
  it('forward and VJP (sum over 2x2 blocks)', async () => {
    await checkOp({
      inputs: [{ shape: [1, 2, 3, 4] }],
      build: (_g, [x]) => G.upsampleNearest2x(x!),
      ref: ([x]) => upsampleNearest2xRef(x!),
    });
  });

  it('batch 2, then a 3x3 conv (the decoder up block)', async () => {
    await checkOp({
      inputs: [{ shape: [2, 2, 2, 3] }, { shape: [3, 2, 3, 3], kind: 'constant' }],
      build: (_g, [x, w]) => G.conv2d(G.upsampleNearest2x(x!), w!, undefined, { pads: [1, 1, 1, 1] }),
      ref: ([x, w]) => conv2dRef(upsampleNearest2xRef(x!), w!, undefined, { pads: [1, 1, 1, 1] }),
    });
  });

  it('refuses a non-NCHW input', () => {
    const g = new G.Graph();
    expect(() => G.upsampleNearest2x(g.input('x', [2, 3, 4]))).toThrow(
      'Upsample: input must be NCHW, got [2,3,4]',
    );
  });
});

describe('upsampleConv3x3 (nearest x2, then a 3x3 conv with pads 1, as one op)', () => {
  const ref = ([x, w, b]: Nd[]) => conv2dRef(upsampleNearest2xRef(x!), w!, b, { pads: [1, 1, 1, 1] });
  const cases: { name: string; x: number[]; w: number[]; bias: boolean }[] = [
    { name: 'with bias', x: [1, 2, 3, 4], w: [3, 2, 3, 3], bias: true },
    { name: 'batch 2, wide, fewer outputs than inputs', x: [2, 3, 2, 5], w: [2, 3, 3, 3], bias: false },
    { name: 'a 1x1 input (every tap reaches the padding)', x: [1, 2, 1, 1], w: [2, 2, 3, 3], bias: true },
  ];
  for (const c of cases) {
    it(`equals the two ops, forward and input gradient: ${c.name}`, async () => {
      await checkOp({
        inputs: [
          { shape: c.x },
          { shape: c.w, kind: 'constant' },
          ...(c.bias ? [{ shape: [c.w[0]!], kind: 'constant' } as const] : []),
        ],
        build: (_g, [x, w, b]) => G.upsampleConv3x3(x!, w!, b),
        ref,
        maxCoords: 64,
      });
    });
  }

  it('never makes the upsampled input: 2x2 phase convs forward, one stride-2 4x4 Conv backward', () => {
    const g = new G.Graph();
    const x = g.input('x', [1, 2, 4, 4]);
    const w = g.constant(new Float32Array(36).fill(0.1), [2, 2, 3, 3]);
    const y = G.upsampleConv3x3(x, w, g.constant(new Float32Array(2), [2]));
    const forward = g.nodes.map((n) => n.opType);
    expect(forward).not.toContain('Resize');
    expect(forward.filter((op) => op === 'Conv')).toHaveLength(4);
    const before = g.nodes.length;
    G.grad(G.reduceSum(y), [x]);
    const backward = g.nodes.slice(before);
    const convs = backward.filter((n) => n.opType === 'Conv');
    expect(convs).toHaveLength(1);
    expect(convs[0]!.attrs?.strides).toEqual({ type: 'ints', value: [2, 2] });
    expect(backward.map((n) => n.opType)).not.toContain('AveragePool');
    expect(backward.map((n) => n.opType)).not.toContain('ConvTranspose');
  });

  for (const fed of ['weights', 'bias'] as const) {
    it(`${fed} fed at run time: the two ops, bias gradient included`, async () => {
      const r = await checkOp({
        inputs: [
          { shape: [1, 2, 2, 3] },
          fed === 'weights'
            ? { shape: [3, 2, 3, 3], grad: false }
            : { shape: [3, 2, 3, 3], kind: 'constant' },
          { shape: [3] },
        ],
        build: (g, [x, w, b]) => {
          const y = G.upsampleConv3x3(x!, w!, b!);
          expect(g.nodes.map((n) => n.opType)).toContain('Resize');
          return y;
        },
        ref,
      });
      expect(r.gradErrors).toHaveLength(2);
    });
  }

  it('refuses a kernel that is not 3x3 and a bias of the wrong size', () => {
    const g = new G.Graph();
    const x = g.input('x', [1, 2, 4, 4]);
    expect(() => G.upsampleConv3x3(x, g.constant(new Float32Array(8), [2, 2, 1, 2]))).toThrow(
      'upsampleConv3x3: input [1,2,4,4], weight [2,2,1,2]: weight must be [out, 2, 3, 3]',
    );
    const w = g.constant(new Float32Array(36), [2, 2, 3, 3]);
    expect(() => G.upsampleConv3x3(x, w, g.constant(new Float32Array(3), [3]))).toThrow(
      'bias [3] does not match 2 output channels',
    );
  });
});

describe('conv2d build-time errors name the op and the shapes', () => {
  const g = new G.Graph();
  const x = g.input('x', [1, 2, 5, 5]);

  it('channel mismatch', () => {
    expect(() => G.conv2d(x, g.input('w3', [3, 3, 3, 3]))).toThrow(
      'Conv: input [1,2,5,5], weight [3,3,3,3]: weight expects 3 input channels, input has 2',
    );
  });

  it('kernel larger than the input', () => {
    expect(() => G.conv2d(x, g.input('w6', [3, 2, 6, 6]))).toThrow(
      'Conv: input [1,2,5,5], weight [3,2,6,6]: kernel larger than the padded input',
    );
    // Dilation makes a 3x3 kernel span 7 pixels.
    expect(() => G.conv2d(x, g.input('wd', [3, 2, 3, 3]), undefined, { dilations: [3, 3] })).toThrow(
      'Conv: input [1,2,5,5], weight [3,2,3,3]: kernel larger than the padded input',
    );
  });

  it('bias of the wrong size, non-4-D tensors, bad strides', () => {
    const w = g.input('w', [3, 2, 3, 3]);
    expect(() => G.conv2d(x, w, g.input('b', [2]))).toThrow(
      'Conv: input [1,2,5,5], weight [3,2,3,3]: bias [2] does not match 3 output channels',
    );
    expect(() => G.conv2d(g.input('x3', [2, 5, 5]), w)).toThrow(
      'Conv: input [2,5,5], weight [3,2,3,3]: both must be 4-D (NCHW, OIHW)',
    );
    expect(() => G.conv2d(x, w, undefined, { strides: [0, 1] })).toThrow(
      'Conv: input [1,2,5,5], weight [3,2,3,3]: bad strides [0,1]',
    );
  });

  it('a gradient w.r.t. a weight input is refused when grad() is built', () => {
    const h = new G.Graph();
    const xi = h.input('x', [1, 2, 5, 5]);
    const w = h.input('w', [3, 2, 3, 3]);
    const loss = G.reduceSum(G.conv2d(xi, w, undefined, { pads: [1, 1, 1, 1] }));
    const msg = 'Conv: input [1,2,5,5], weight [3,2,3,3]: gradients w.r.t. the weights are not supported';
    expect(() => G.grad(loss, [w])).toThrow(msg);
    expect(() => G.grad(loss, [xi, w])).toThrow(msg);
    // The activation gradient alone still builds.
    expect(G.grad(loss, [xi])[0]!.shape).toEqual([1, 2, 5, 5]);
  });
});
