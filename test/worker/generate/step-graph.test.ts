import { totalmem } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCutouts } from '../../../src/worker/generate/cutouts.js';
import { randomLatent } from '../../../src/worker/generate/latent.js';
import { Rng } from '../../../src/worker/generate/rng.js';
import {
  defaultStepMemoryBudget,
  STEP_ARENA_MEMORY_FRACTION,
  type StepFeeds,
  StepGraphCache,
  StepSession,
  stepGraph,
  stepSessionMemory,
  stepShapes,
} from '../../../src/worker/generate/step-graph.js';
import { Graph } from '../../../src/worker/graph/index.js';
import { tinyModels, tinyVqgan } from './tiny-models.js';

// 64x64 is a 4x4 latent (the tiny VQGAN downsamples by 16, as f16): the smallest job size, and large
// enough that every GroupNorm sees more than one value per group.
const W = 64;
const H = 64;
const K = 3;
const S = 32;

const sessions: StepSession[] = [];
afterAll(async () => {
  for (const s of sessions) await s.release();
});

async function session(
  models: ReturnType<typeof tinyModels>,
  spec: Parameters<typeof StepSession.create>[1],
) {
  const s = await StepSession.create(models, spec, { intraOpThreads: 1 });
  sessions.push(s);
  return s;
}

/** Fixed feeds: seeded crops with flips, seeded noise, two prompts (one negative), an init image. */
async function feedsFor(models: ReturnType<typeof tinyModels>): Promise<Omit<StepFeeds, 'z'>> {
  const rng = new Rng(3, 'cutouts');
  const cut = makeCutouts(() => rng.next(), { count: K, size: S, height: H, width: W });
  const [a, b] = await models.embedTexts(['a red cat', 'a blurry photo']);
  return {
    rows: cut.rows,
    cols: cut.cols,
    noise: new Rng(4, 'noise').fillNormal(new Float32Array(K * 3 * S * S), 0.05),
    prompts: Float32Array.from([...a!, ...b!]),
    weights: Float32Array.from([1, -0.5]),
    initImage: Float32Array.from({ length: 3 * H * W }, (_, i) => ((i * 37) % 101) / 101),
    initWeight: 0.5,
  };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

describe('step graph gradient', () => {
  it('without quantisation, d(loss)/dz matches central finite differences (<= 1e-3 relative)', async () => {
    // conv_out scaled down so no pixel reaches the [0, 1] clamp: the loss is then smooth in z and
    // finite differences measure the same derivative the graph computes.
    const models = tinyModels(1, { 'decoder.conv_out.weight': 0.3, 'decoder.conv_out.bias': 0.3 });
    const s = await session(models, {
      width: W,
      height: H,
      cutouts: K,
      prompts: 2,
      quantize: false,
      clampGradient: 'exact',
      initImage: true,
    });
    const base = await feedsFor(models);
    const z = randomLatent(models.vqgan, W, H, 5).data;
    const out = await s.run({ ...base, z });
    const lo = Math.min(...out.image);
    const hi = Math.max(...out.image);
    expect(lo, 'no pixel clamped at 0').toBeGreaterThan(0.02);
    expect(hi, 'no pixel clamped at 1').toBeLessThan(0.98);
    expect(out.losses[0]).toBeGreaterThan(0);
    expect(out.loss).toBeCloseTo(
      out.losses[0]! - 0.5 * out.losses[1]! + 0.5 * mse(out.image, base.initImage!),
      5,
    );

    const g = out.grad;
    const loss = async (zz: Float32Array) => (await s.run({ ...base, z: zz })).loss;
    // Float32 forward passes bound how small a step can be; h = 0.015 balances that against curvature
    // (errors 4.4e-4 and 2.7e-4 below; 0.03, right for the two-level tiny VQGAN, gives 1.1e-3 here).
    const h = 0.015;
    const fdAlong = async (dir: (i: number) => number) => {
      const plus = z.map((v, i) => v + h * dir(i));
      const minus = z.map((v, i) => v - h * dir(i));
      return ((await loss(plus)) - (await loss(minus))) / (2 * h);
    };
    // The 4 coordinates with the largest gradient and 4 spread over the latent.
    const largest = [...g.keys()].sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!)).slice(0, 4);
    const spread = [0, 1, 2, 3].map((k) => Math.floor(((k + 0.5) * g.length) / 4));
    const coords = [...largest, ...spread];
    const fd: number[] = [];
    for (const c of coords) fd.push(await fdAlong((i) => (i === c ? 1 : 0)));
    const got = coords.map((c) => g[c]!);
    const err = maxAbs(got.map((v, i) => v - fd[i]!)) / maxAbs(fd);
    expect(err, `coordinates ${coords}: graph ${got} vs fd ${fd}`).toBeLessThanOrEqual(1e-3);

    // The directional derivative along the gradient is its norm.
    const norm = Math.hypot(...g);
    const along = await fdAlong((i) => g[i]! / norm);
    expect(Math.abs(along - norm) / norm).toBeLessThanOrEqual(1e-3);
  });

  it('the straight-through quantiser passes the gradient of the quantised latent unchanged', async () => {
    const models = tinyModels(2);
    const spec = { width: W, height: H, cutouts: K, prompts: 2, initImage: true } as const;
    const withQ = await session(models, { ...spec, quantize: true });
    const withoutQ = await session(models, { ...spec, quantize: false });
    const base = await feedsFor(models);
    // A latent off the codebook, and its nearest codebook rows computed here.
    const [, d, h, w] = stepShapes(models, spec).latent;
    const z = new Rng(9, 'z').fillNormal(new Float32Array(d * h * w), 0.7);
    const codebook = models.vqgan.weights.get('quantize.embedding.weight');
    const zq = nearestCodebook(z, codebook, d, tinyVqgan.n_embed);
    expect(maxAbs(z.map((v, i) => v - zq[i]!)), 'z is off the codebook').toBeGreaterThan(0.1);
    const a = await withQ.run({ ...base, z });
    const b = await withoutQ.run({ ...base, z: zq });
    expect(a.loss).toBeCloseTo(b.loss, 6);
    expect(maxAbs(b.grad)).toBeGreaterThan(1e-4);
    expect(maxAbs(a.grad.map((v, i) => v - b.grad[i]!)) / maxAbs(b.grad)).toBeLessThan(1e-5);
    expect(maxAbs(a.image.map((v, i) => v - b.image[i]!))).toBeLessThan(1e-6);
  });

  it('through-clamp lets saturated pixels get gradient that exact clamping blocks', async () => {
    // Unscaled random decoder: many pixels are clamped.
    const models = tinyModels(1);
    const spec = { width: W, height: H, cutouts: K, prompts: 2 } as const;
    const through = await session(models, { ...spec, clampGradient: 'through' });
    const exact = await session(models, { ...spec, clampGradient: 'exact' });
    const base = await feedsFor(models);
    const z = randomLatent(models.vqgan, W, H, 5).data;
    const a = await through.run({ ...base, z });
    const b = await exact.run({ ...base, z });
    const clamped = a.image.filter((v) => v === 0 || v === 1).length;
    expect(clamped).toBeGreaterThan(0);
    expect(a.loss).toBe(b.loss);
    expect(maxAbs(a.grad.map((v, i) => v - b.grad[i]!))).toBeGreaterThan(1e-6);
  });

  it('checks sizes against the VQGAN factor', () => {
    const models = tinyModels(1);
    expect(stepShapes(models, { width: 128, height: 64, cutouts: 2, prompts: 1 }).latent).toEqual([
      1,
      tinyVqgan.embed_dim,
      4,
      8,
    ]);
    expect(() => stepShapes(models, { width: 72, height: 64, cutouts: 2, prompts: 1 })).toThrow(/multiple/);
    expect(() => stepShapes(models, { width: 16, height: 16, cutouts: 0, prompts: 1 })).toThrow(/cutouts/);
  });
});

describe('step session memory', () => {
  it('counts the bytes of every node output a graph emits', () => {
    const g = new Graph();
    expect(g.emittedBytes).toBe(0);
    g.emit('Identity', [g.input('x', [2, 3])], { outputs: [{ shape: [2, 3], dtype: 'float32' }] });
    g.emit('Shape', [g.input('y', [5])], { outputs: [{ shape: [1], dtype: 'int64' }] });
    expect(g.emittedBytes).toBe(2 * 3 * 4 + 8);
  });

  it('runs step graphs on the memory arena when their outputs fit the budget, and without otherwise', async () => {
    expect(stepSessionMemory(1000, 1000)).toEqual({ memoryArena: true });
    expect(stepSessionMemory(1001, 1000)).toEqual({ memoryArena: false });
    // The default budget is a fraction of this machine's memory.
    expect(defaultStepMemoryBudget()).toBe(Math.floor(totalmem() * STEP_ARENA_MEMORY_FRACTION));
    // A larger image adds activations in proportion (the decoder's top levels): 64 px has a quarter
    // of the pixels of 128 px.
    const models = tinyModels(1);
    const bytes = (side: number) =>
      stepGraph(models, { width: side, height: side, cutouts: 2, prompts: 1 }).graph.emittedBytes;
    const [small, large] = [bytes(32), bytes(64)];
    expect(large).toBeGreaterThan(2 * small);
    // StepSession.create follows the rule; an explicit memoryArena option wins over it.
    const spec = { width: 32, height: 32, cutouts: 2, prompts: 1 };
    const on = await StepSession.create(models, spec, { intraOpThreads: 1 });
    const off = await StepSession.create(models, spec, { intraOpThreads: 1 }, small - 1);
    const forced = await StepSession.create(models, spec, { intraOpThreads: 1, memoryArena: true }, 0);
    expect([on.activationBytes, on.memoryArena, off.memoryArena, forced.memoryArena]).toEqual([
      small,
      true,
      false,
      true,
    ]);
    await Promise.all([on.release(), off.release(), forced.release()]);
  });
});

describe('StepGraphCache', () => {
  it('reuses a session per spec, builds another for another spec, and releases idle ones beyond its size', async () => {
    const models = tinyModels(1);
    const cache = new StepGraphCache({ maxEntries: 1, session: { intraOpThreads: 1 } });
    const spec = { width: W, height: H, cutouts: 2, prompts: 1 };
    const a = await cache.acquire(models, spec);
    const b = await cache.acquire(models, spec);
    expect(b.session).toBe(a.session);
    const c = await cache.acquire(models, { ...spec, cutouts: 3 });
    expect(c.session).not.toBe(a.session);
    expect(cache.size).toBe(2); // both in use: nothing is evicted
    await a.release();
    await b.release();
    expect(cache.size).toBe(1); // the idle one went
    await c.release();
    expect(cache.size).toBe(1);
    const d = await cache.acquire(models, { ...spec, cutouts: 3 });
    expect(d.session).toBe(c.session);
    await d.release();
    await cache.clear();
    expect(cache.size).toBe(0);
  });

  it("releases idle arena sessions when a new one's arena would go over the memory budget", async () => {
    const models = tinyModels(1);
    const spec = { width: W, height: H, cutouts: 2, prompts: 1 };
    const one = stepGraph(models, spec).graph.emittedBytes;
    const two = stepGraph(models, { ...spec, cutouts: 3 }).graph.emittedBytes;
    // Room for either arena, not both; maxEntries alone would keep both.
    const cache = new StepGraphCache({
      maxEntries: 3,
      session: { intraOpThreads: 1 },
      memoryBudgetBytes: one + two - 1,
    });
    const a = await cache.acquire(models, spec);
    expect(a.session.memoryArena).toBe(true);
    await a.release();
    expect(cache.size).toBe(1);
    const b = await cache.acquire(models, { ...spec, cutouts: 3 });
    expect(b.session.memoryArena).toBe(true);
    expect(cache.size).toBe(1); // the idle arena session went
    // An arena session in use stays: the next one is built beside it.
    const c = await cache.acquire(models, spec);
    expect(cache.size).toBe(2);
    await Promise.all([b.release(), c.release()]);
    expect(cache.size).toBe(1);
    await cache.clear();
    // Sessions off the arena (over the budget on their own) hold nothing to release for it.
    const small = new StepGraphCache({ maxEntries: 3, session: { intraOpThreads: 1 }, memoryBudgetBytes: 1 });
    const d = await small.acquire(models, spec);
    await d.release();
    const e = await small.acquire(models, { ...spec, cutouts: 3 });
    await e.release();
    expect([d.session.memoryArena, e.session.memoryArena, small.size]).toEqual([false, false, 2]);
    await small.clear();
  });
});

function mse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s / a.length;
}

/** Nearest codebook row per position of a [1, d, h, w] latent. */
function nearestCodebook(z: Float32Array, codebook: Float32Array, d: number, k: number): Float32Array {
  const n = z.length / d;
  const out = new Float32Array(z.length);
  for (let p = 0; p < n; p++) {
    let best = 0;
    let bestDist = Number.POSITIVE_INFINITY;
    for (let r = 0; r < k; r++) {
      let dist = 0;
      for (let c = 0; c < d; c++) dist += (z[c * n + p]! - codebook[r * d + c]!) ** 2;
      if (dist < bestDist) {
        bestDist = dist;
        best = r;
      }
    }
    for (let c = 0; c < d; c++) out[c * n + p] = codebook[best * d + c]!;
  }
  return out;
}
