// End to end: a small network that strings together the ops the VQGAN decoder and CLIP use,
// built as one ONNX graph with its backward pass, run in ORT, and checked against the float64
// reference in test/helpers/ref-net.ts (forward values and finite-difference gradients).
import { beforeAll, describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { relError } from '../../helpers/op-check.js';
import { mulberry32, randn } from '../../helpers/random.js';
import { makeNetParams, NET, type NetParams, refNet } from '../../helpers/ref-net.js';

function buildNet(p: NetParams) {
  const { inC, h, w, ch, groups, outF, tokens, eps, quad } = NET;
  const g = new G.Graph();
  const c = (data: Float64Array, shape: number[], name: string) =>
    g.constant(Float32Array.from(data), shape, { name });
  const x = g.input('x', [1, inC, h, w]);
  const u = g.input('u', [ch]);

  const c1 = G.conv2d(x, c(p.conv1W, [ch, inC, 3, 3], 'conv1.w'), c(p.conv1B, [ch], 'conv1.b'), {
    pads: [1, 1, 1, 1],
  });
  const gn = G.groupNorm(c1, groups, c(p.gnW, [ch], 'gn.w'), c(p.gnB, [ch], 'gn.b'), eps);
  const act = G.mul(G.silu(gn), G.reshape(u, [1, ch, 1, 1])); // first use of u
  const c2 = G.conv2d(G.upsampleNearest2x(act), c(p.conv2W, [ch, ch, 3, 3], 'conv2.w'), undefined, {
    pads: [1, 1, 1, 1],
  });
  const t = G.transpose(G.reshape(c2, [1, ch, tokens]), [0, 2, 1]);
  const q = G.linear(t, c(p.wq, [ch, ch], 'q.w'), c(p.bq, [ch], 'q.b'));
  const k = G.linear(t, c(p.wk, [ch, ch], 'k.w'), c(p.bk, [ch], 'k.b'));
  const v = G.linear(t, c(p.wv, [ch, ch], 'v.w'), c(p.bv, [ch], 'v.b'));
  const scores = G.mul(G.matmul(q, G.transpose(k, [0, 2, 1])), 1 / Math.sqrt(ch));
  const attn = G.matmul(G.softmax(scores, -1), v);
  const o = G.linear(attn, c(p.wo, [ch, ch], 'o.w'), c(p.bo, [ch], 'o.b'));
  const res = G.add(G.add(t, o), u); // second use of u, broadcast over tokens
  const ln = G.layerNorm(res, c(p.lnW, [ch], 'ln.w'), c(p.lnB, [ch], 'ln.b'), eps);
  const y = G.matmul(ln, c(p.proj, [ch, outF], 'proj'));
  const r = c(p.r, [1, tokens, outF], 'r');
  const loss = G.reduceSum(G.add(G.mul(y, r), G.mul(G.mul(y, y), quad)));
  const [gx, gu] = G.grad(loss, [x, u]);
  return G.serialize(g, { outputs: { y, loss, gx: gx!, gu: gu! } });
}

describe('composite network (conv, GroupNorm, SiLU, upsample, attention, LayerNorm)', () => {
  const p = makeNetParams(7);
  const rand = mulberry32(11);
  const { inC, h, w, ch } = NET;
  const x = Float64Array.from(Float32Array.from({ length: inC * h * w }, () => randn(rand)));
  const u = Float64Array.from(Float32Array.from({ length: ch }, () => 1 + 0.3 * randn(rand)));
  const out: Record<string, { data: ArrayLike<number> }> = {};

  beforeAll(async () => {
    const model = buildNet(p);
    expect(model.inputNames).toEqual(['x', 'u']);
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const result = await session.run({
      x: { data: Float32Array.from(x), dims: [1, inC, h, w] },
      u: { data: Float32Array.from(u), dims: [ch] },
    });
    for (const [name, t] of Object.entries(result)) out[name] = { data: t.data as Float32Array };
    await session.release();
  });

  it('forward matches the float64 reference to 1e-5', () => {
    const ref = refNet(p, x, u);
    expect(out.y!.data.length).toBe(ref.y.length);
    expect(relError(out.y!.data, ref.y)).toBeLessThanOrEqual(1e-5);
    expect(relError([out.loss!.data[0]!], [ref.loss])).toBeLessThanOrEqual(1e-5);
    // Guard against a degenerate network (e.g. everything normalised to zero).
    expect(Math.max(...ref.y.map(Math.abs))).toBeGreaterThan(0.5);
  });

  // Central differences of the float64 reference; 1e-4 steps leave truncation error ~1e-8.
  const fd = (which: 'x' | 'u', j: number, eps = 1e-4) => {
    const plus = Float64Array.from(which === 'x' ? x : u);
    const minus = Float64Array.from(plus);
    plus[j]! += eps;
    minus[j]! -= eps;
    const f = (v: Float64Array) => (which === 'x' ? refNet(p, v, u) : refNet(p, x, v)).loss;
    return (f(plus) - f(minus)) / (2 * eps);
  };

  it('d loss / d x matches finite differences on 40 coordinates (<= 1e-3 relative)', () => {
    const n = x.length;
    const coords = Array.from({ length: 40 }, (_, k) => Math.floor((k * n) / 40) + (k % 3));
    const got = coords.map((j) => out.gx!.data[j]!);
    const want = coords.map((j) => fd('x', j));
    expect(out.gx!.data.length).toBe(n);
    expect(relError(got, want)).toBeLessThanOrEqual(1e-3);
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1e-2);
  });

  it('d loss / d u sums both uses of u (fan-out) and matches finite differences', () => {
    const want = Array.from({ length: ch }, (_, j) => fd('u', j));
    expect(relError(out.gu!.data, want)).toBeLessThanOrEqual(1e-3);
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(1e-2);
  });
});
