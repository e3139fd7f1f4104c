// Softmax, LogSoftmax, LayerNorm and GroupNorm as composites: each runs ORT's fused kernel
// forward and has a hand-written VJP (fewer nodes and better numerics than differentiating
// the decomposed pieces).
import { fmtShape, type Graph, GraphError, sizeOf, type Tensor } from '../graph.js';
import { add, exp, mul, neg, sub, sumToShape } from './elementwise.js';
import { reduceMean, reduceSum } from './reduce.js';
import { reshape } from './shape.js';
import { normAxis } from './shape-utils.js';

function requireFloat(op: string, x: Tensor): void {
  if (x.dtype !== 'float32') {
    throw new GraphError(`${op}: "${x.name}" is ${x.dtype} ${fmtShape(x.shape)}; this op takes float32`);
  }
}

/** Softmax along any axis. */
export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('Softmax', x);
  const a = normAxis(`Softmax of ${fmtShape(x.shape)}`, axis, x.shape.length);
  const y: Tensor = x.graph.emit('Softmax', [x], {
    attrs: { axis: { type: 'int', value: a } },
    outputs: [{ shape: x.shape, dtype: 'float32' }],
    // dx = y * (gy - sum(gy * y))
    vjp: ([gy]) => [gy ? mul(y, sub(gy, reduceSum(mul(gy, y), [a], { keepdims: true }))) : undefined],
  })[0]!;
  return y;
}

/** LogSoftmax along any axis. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('LogSoftmax', x);
  const a = normAxis(`LogSoftmax of ${fmtShape(x.shape)}`, axis, x.shape.length);
  const y: Tensor = x.graph.emit('LogSoftmax', [x], {
    attrs: { axis: { type: 'int', value: a } },
    outputs: [{ shape: x.shape, dtype: 'float32' }],
    // dx = gy - softmax(x) * sum(gy)
    vjp: ([gy]) => [gy ? sub(gy, mul(exp(y), reduceSum(gy, [a], { keepdims: true }))) : undefined],
  })[0]!;
  return y;
}

/**
 * Given xhat = (x - mean) * rstd over `axes` of a tensor, maps d/dxhat to d/dx:
 * rstd * (g - mean(g) - xhat * mean(g * xhat)).
 */
function normalizeVjp(gxhat: Tensor, xhat: Tensor, rstd: Tensor, axes: readonly number[]): Tensor {
  const meanG = reduceMean(gxhat, axes, { keepdims: true });
  const meanGX = reduceMean(mul(gxhat, xhat), axes, { keepdims: true });
  return mul(sub(sub(gxhat, meanG), mul(xhat, meanGX)), rstd);
}

// Constant vectors shared per graph: a GroupNorm at decoder size needs an m-vector of ones
// (1 MiB at 128x256x256), and every copy would be another initializer in the model.
const filledCache = new WeakMap<Graph, Map<string, Tensor>>();
function filled(g: Graph, n: number, value: number, name: string): Tensor {
  let cache = filledCache.get(g);
  if (!cache) {
    cache = new Map();
    filledCache.set(g, cache);
  }
  const key = `${value}:${n}`;
  let t = cache.get(key);
  if (!t) {
    t = g.constant(new Float32Array(n).fill(value), [n], { name });
    cache.set(key, t);
  }
  return t;
}

const ones = (g: Graph, n: number): Tensor => filled(g, n, 1, 'ones');
const zeros = (g: Graph, n: number): Tensor => filled(g, n, 0, 'zeros');

// var + epsilon must be exactly 1 in float32 so the normalisation is the identity. epsilon is
// not 0 because cuDNN raises smaller values to 1e-5 (which would scale the output).
const BN_EPSILON = 1e-5;
const BN_VAR = Math.fround(1 - Math.fround(BN_EPSILON));

/**
 * x * scale[c] + bias[c] along axis 1 of [N, C, ...] in one pass: BatchNormalization with zero
 * mean and unit variance (a Mul and an Add would each read and write the whole tensor). Only
 * for composite internals and VJPs: it carries no gradient of its own.
 */
function channelAffine(x: Tensor, scale: Tensor, bias: Tensor): Tensor {
  const g = x.graph;
  const c = x.shape[1]!;
  return g.emit('BatchNormalization', [x, scale, bias, zeros(g, c), filled(g, c, BN_VAR, 'bn_var')], {
    attrs: { epsilon: { type: 'float', value: BN_EPSILON } },
    outputs: [{ shape: x.shape, dtype: 'float32' }],
  })[0]!;
}

/**
 * LayerNorm over the last axis (as torch.nn.LayerNorm(d)) with optional affine weight and bias
 * of shape [d]. Forward is one ORT LayerNormalization with the affine as its own scale and bias
 * inputs: a separate Mul and Add would each make another pass over the activation (ORT does not
 * fold them in). The VJP needs the normalised input, so it recomputes it with a second,
 * affine-free LayerNormalization: one fused pass, emitted only when a gradient is asked for.
 */
export function layerNorm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  requireFloat('LayerNorm', x);
  const d = x.shape[x.shape.length - 1];
  if (d === undefined) throw new GraphError('LayerNorm: input must have rank >= 1');
  for (const [what, t] of [
    ['weight', weight],
    ['bias', bias],
  ] as const) {
    if (t && (t.shape.length !== 1 || t.shape[0] !== d)) {
      throw new GraphError(
        `LayerNorm: ${what} ${fmtShape(t.shape)} does not match last axis of ${fmtShape(x.shape)}`,
      );
    }
  }
  const g = x.graph;
  const rank = x.shape.length;
  const statShape = [...x.shape.slice(0, -1), 1];
  const attrs = { axis: { type: 'int', value: -1 }, epsilon: { type: 'float', value: eps } } as const;
  // The forward declares only the normalised output: nothing reads its statistics, so ORT need
  // not write them.
  const normalized = (scale: Tensor, shift: Tensor | undefined, stats: boolean) =>
    g.emit('LayerNormalization', [x, scale, ...(shift ? [shift] : [])], {
      attrs,
      outputs: [
        { shape: x.shape, dtype: 'float32' },
        ...(stats
          ? [
              { shape: statShape, dtype: 'float32' as const },
              { shape: statShape, dtype: 'float32' as const },
            ]
          : []),
      ],
      noTape: true,
    });
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  const [y] = g.composite(
    'LayerNorm',
    inputs,
    () => [normalized(weight ?? ones(g, d), bias, false)[0]!],
    ([gy], needs) => {
      if (!gy) return [];
      const [xhat, , rstd] = normalized(ones(g, d), undefined, true) as [Tensor, Tensor, Tensor];
      const lead = Array.from({ length: rank - 1 }, (_, i) => i);
      const grads: (Tensor | undefined)[] = [];
      grads.push(needs[0] ? normalizeVjp(weight ? mul(gy, weight) : gy, xhat, rstd, [rank - 1]) : undefined);
      if (weight) grads.push(needs[1] ? reduceSum(mul(gy, xhat), lead) : undefined);
      if (bias) grads.push(needs[weight ? 2 : 1] ? reduceSum(gy, lead) : undefined);
      return grads;
    },
  );
  return y!;
}

/**
 * GroupNorm of NCHW (or N, C, ...) input with `groups` groups and per-channel affine weight and
 * bias, as torch.nn.GroupNorm. Forward reshapes to [N, G, rest] and uses LayerNormalization
 * over the last axis (a fused kernel that also yields the inverse std for the VJP); the
 * per-channel affine is one BatchNormalization pass.
 */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  requireFloat('GroupNorm', x);
  if (x.shape.length < 2)
    throw new GraphError(`GroupNorm: input must be [N, C, ...], got ${fmtShape(x.shape)}`);
  const [n, c] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new GraphError(
      `GroupNorm: ${c} channels do not split into ${groups} groups (input ${fmtShape(x.shape)})`,
    );
  }
  for (const [what, t] of [
    ['weight', weight],
    ['bias', bias],
  ] as const) {
    if (t && (t.shape.length !== 1 || t.shape[0] !== c)) {
      throw new GraphError(`GroupNorm: ${what} ${fmtShape(t.shape)} does not match ${c} channels`);
    }
  }
  const g = x.graph;
  const cg = c / groups;
  const spatial = sizeOf(x.shape.slice(2));
  const m = cg * spatial;
  let xhat3!: Tensor;
  let xhat!: Tensor;
  let rstd!: Tensor;
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  // At decoder sizes these elementwise passes are memory-bound and cost as much as a conv's
  // worth of time, so the forward and the VJP are written to touch the activation few times.
  const [y] = g.composite(
    'GroupNorm',
    inputs,
    () => {
      const x3 = reshape(x, [n, groups, m]);
      // LayerNormalization's bias is optional (zero): leaving it out saves reading an m-vector.
      const out = g.emit('LayerNormalization', [x3, ones(g, m)], {
        attrs: { axis: { type: 'int', value: -1 }, epsilon: { type: 'float', value: eps } },
        outputs: [
          { shape: [n, groups, m], dtype: 'float32' },
          { shape: [n, groups, 1], dtype: 'float32' },
          { shape: [n, groups, 1], dtype: 'float32' },
        ],
      });
      xhat3 = out[0]!;
      rstd = out[2]!;
      xhat = reshape(xhat3, x.shape);
      return [weight || bias ? channelAffine(xhat, weight ?? ones(g, c), bias ?? zeros(g, c)) : xhat];
    },
    ([gy], needs) => {
      if (!gy) return [];
      const spatialAxes = x.shape.map((_, i) => i).filter((i) => i !== 1);
      const grads: (Tensor | undefined)[] = [];
      if (needs[0]) {
        // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gy * weight, means per group.
        // rstd is constant per group, so with gs = gy * (weight * rstd) (one pass):
        // dx = gs - mean(gs) - xhat * mean(gs * xhat), a per-group affine of xhat plus gs.
        const rstd4 = reshape(rstd, [n, groups, 1, 1]);
        const scale = weight ? mul(reshape(weight, [1, groups, cg, 1]), rstd4) : rstd4;
        // Groups become BatchNormalization's channels: [1, n * groups, m].
        const rows = [1, n * groups, m];
        const gs = reshape(mul(reshape(gy, [n, groups, cg, spatial]), scale), rows);
        const xh = reshape(xhat3, rows);
        const perRow = (t: Tensor) => reshape(neg(reduceMean(t, [2])), [n * groups]);
        const dx = add(gs, channelAffine(xh, perRow(mul(gs, xh)), perRow(gs)));
        grads.push(reshape(dx, x.shape));
      } else grads.push(undefined);
      if (weight) grads.push(needs[1] ? reduceSum(mul(gy, xhat), spatialAxes) : undefined);
      if (bias) grads.push(needs[weight ? 2 : 1] ? sumToShape(reduceSum(gy, spatialAxes), [c]) : undefined);
      return grads;
    },
  );
  return y!;
}
