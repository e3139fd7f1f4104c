import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { attr } from '../src/worker/graph/graph.js';
import {
  add,
  conv2d,
  Graph,
  GraphError,
  grad,
  matmul,
  mul,
  reduceSum,
  reshape,
  serialize,
  type Tensor,
} from '../src/worker/graph/index.js';
import {
  type BenchModule,
  type BenchResult,
  measureInterleaved,
  mulberry32,
  pairedMedian,
  type Row,
  randn,
} from './lib.js';
import { cpuSessionOptions, profileKernels } from './ort-profile.js';

/** Lavin & Gray's matrices: output tile m x m from an a x a input tile (a = m + 2). */
interface WinogradMatrices {
  readonly m: number;
  readonly a: number;
  readonly BT: readonly (readonly number[])[];
  readonly G: readonly (readonly number[])[];
  readonly AT: readonly (readonly number[])[];
}

const F2: WinogradMatrices = {
  m: 2,
  a: 4,
  BT: [
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
  ],
  G: [
    [1, 0, 0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0, 0, 1],
  ],
  AT: [
    [1, 1, 1, 0],
    [0, 1, -1, -1],
  ],
};

const F4: WinogradMatrices = {
  m: 4,
  a: 6,
  BT: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  G: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
};

/** U[xi, k, c] = (G g[k,c] G^T)[xi], in float64 then rounded once. */
function transformWeights(w: Float32Array, k: number, c: number, f: WinogradMatrices): Float32Array {
  const { a, G } = f;
  const u = new Float32Array(a * a * k * c);
  for (let ko = 0; ko < k; ko++)
    for (let ci = 0; ci < c; ci++) {
      const base = (ko * c + ci) * 9;
      for (let p = 0; p < a; p++)
        for (let q = 0; q < a; q++) {
          let s = 0;
          for (let i = 0; i < 3; i++)
            for (let j = 0; j < 3; j++) s += G[p]![i]! * w[base + i * 3 + j]! * G[q]![j]!;
          u[((p * a + q) * k + ko) * c + ci] = s;
        }
    }
  return u;
}

/** The a*a input-transform filters B^T[p] (x) B^T[q] as Conv weights [a*a, 1, 1, a, a]. */
function inputFilters({ a, BT }: WinogradMatrices): Float32Array {
  const out = new Float32Array(a ** 4);
  for (let p = 0; p < a; p++)
    for (let q = 0; q < a; q++)
      for (let i = 0; i < a; i++)
        for (let j = 0; j < a; j++) out[((p * a + q) * a + i) * a + j] = BT[p]![i]! * BT[q]![j]!;
  return out;
}

/** A^T (x) A^T as one [m*m, a*a] matrix: output pixel (i, j) of a tile from its a*a products. */
function outputMatrix({ m, a, AT }: WinogradMatrices): Float32Array {
  const out = new Float32Array(m * m * a * a);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < m; j++)
      for (let p = 0; p < a; p++)
        for (let q = 0; q < a; q++) out[(i * m + j) * a * a + p * a + q] = AT[i]![p]! * AT[j]![q]!;
  return out;
}

/** w[o, c, i, j] -> w'[c, o, 2-i, 2-j]: the weights of the stride-1 conv that computes dx. */
function flipTranspose(w: Float32Array, o: number, c: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let oi = 0; oi < o; oi++)
    for (let ci = 0; ci < c; ci++)
      for (let t = 0; t < 9; t++) out[(ci * o + oi) * 9 + (8 - t)] = w[(oi * c + ci) * 9 + t]!;
  return out;
}

/** Forward only (untaped inside the composite): y = conv3x3(x, w, pad 1) (+ bias). */
function winogradForward(
  x: Tensor,
  w: Float32Array,
  k: number,
  bias: Float32Array | undefined,
  f: WinogradMatrices,
): Tensor {
  const g = x.graph;
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const { m, a } = f;
  if (h % m !== 0 || wd % m !== 0)
    throw new GraphError(`Winograd F(${m}x${m},3x3): ${h}x${wd} is not a multiple of ${m}`);
  const a2 = a * a;
  const th = h / m;
  const tw = wd / m;
  const v = g.emit('Conv', [reshape(x, [n, 1, c, h, wd]), g.constant(inputFilters(f), [a2, 1, 1, a, a])], {
    attrs: {
      kernel_shape: attr.ints([1, a, a]),
      strides: attr.ints([1, m, m]),
      pads: attr.ints([0, 1, 1, 0, 1, 1]),
    },
    outputs: [{ shape: [n, a2, c, th, tw], dtype: 'float32' }],
  })[0]!;
  const u = g.constant(transformWeights(w, k, c, f), [a2, k, c], { name: 'winograd_u' });
  const prod = matmul(u, reshape(v, [n, a2, c, th * tw])); // [n, a2, k, T]
  const tiles = matmul(g.constant(outputMatrix(f), [m * m, a2]), reshape(prod, [n, a2, k * th * tw]));
  let y = g.emit('DepthToSpace', [reshape(tiles, [n, m * m * k, th, tw])], {
    attrs: { blocksize: attr.int(m), mode: attr.string('DCR') },
    outputs: [{ shape: [n, k, h, wd], dtype: 'float32' }],
  })[0]!;
  if (bias) y = add(y, g.constant(bias, [k, 1, 1], { name: 'winograd_b' }));
  return y;
}

/** A composite whose VJP w.r.t. x is the same Winograd conv on the flipped, transposed weights. */
function winogradConv(
  x: Tensor,
  w: Float32Array,
  k: number,
  bias: Float32Array | undefined,
  f: WinogradMatrices,
): Tensor {
  const c = x.shape[1]!;
  return x.graph.composite(
    `Conv3x3WinogradF${f.m}`,
    [x],
    () => [winogradForward(x, w, k, bias, f)],
    ([gy]) => [gy ? winogradConv(gy, flipTranspose(w, k, c), c, undefined, f) : undefined],
  )[0]!;
}

type Variant = 'conv' | 'F2' | 'F4';
const VARIANTS: readonly Variant[] = ['conv', 'F2', 'F4'];

interface Shape {
  readonly c: number;
  readonly s: number;
}

/** The layers the issue names: 128->128 at 256^2 and 128^2, 256 at 64^2, 512 at 16^2. */
const DEFAULT_SHAPES: readonly Shape[] = [
  { c: 128, s: 256 },
  { c: 128, s: 128 },
  { c: 256, s: 64 },
  { c: 512, s: 16 },
];

interface Options {
  shapes: Shape[];
  threads: number;
  reps: number;
  warmup: number;
  profile: boolean;
  ignored: string[];
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = {
    shapes: [...DEFAULT_SHAPES],
    threads: 2,
    reps: 5,
    warmup: 1,
    profile: false,
    ignored: [],
  };
  for (const arg of args) {
    if (arg === '--profile') {
      o.profile = true;
      continue;
    }
    const shapes = /^--shapes=([\dx,]+)$/.exec(arg);
    if (shapes) {
      o.shapes = shapes[1]!.split(',').map((s) => {
        const [c, size] = s.split('x').map(Number);
        if (!c || !size) throw new Error(`--shapes: expected CxS[,CxS...], got ${arg}`);
        return { c, s: size };
      });
      continue;
    }
    const m = /^--(threads|reps|warmup)=(\d+)$/.exec(arg);
    if (m) o[m[1] as 'threads' | 'reps' | 'warmup'] = Number(m[2]);
    else o.ignored.push(arg);
  }
  return o;
}

interface Built {
  readonly fwd: Uint8Array;
  /** dx of sum(conv(x) * r) with r fed: only the backward conv (and a Mul) runs. */
  readonly dx: Uint8Array;
  /**
   * The same two computations ending in a ReduceSum, for timing: inside the step graph these are
   * intermediates, and copying a 32 MB output into JavaScript would add the same time to both sides.
   */
  readonly fwdTimed: Uint8Array;
  readonly dxTimed: Uint8Array;
}

function buildModels(variant: Variant, { c, s }: Shape, w: Float32Array, b: Float32Array): Built {
  const g = new Graph();
  const x = g.input('x', [1, c, s, s]);
  const y =
    variant === 'conv'
      ? conv2d(x, g.constant(w, [c, c, 3, 3]), g.constant(b, [c]), { pads: [1, 1, 1, 1] })
      : winogradConv(x, w, c, b, variant === 'F2' ? F2 : F4);
  const r = g.input('r', [1, c, s, s]);
  const [gx] = grad(reduceSum(mul(y, r)), [x]);
  return {
    fwd: serialize(g, { outputs: { y } }).bytes,
    dx: serialize(g, { outputs: { gx: gx! } }).bytes,
    fwdTimed: serialize(g, { outputs: { s: reduceSum(y) } }).bytes,
    dxTimed: serialize(g, { outputs: { s: reduceSum(gx!) } }).bytes,
  };
}

/** ||a - ref|| / ||ref|| and max |a - ref| / max |ref|. */
function relErrors(a: Float32Array, ref: Float32Array): { l2: number; max: number } {
  let num = 0;
  let den = 0;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = a[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  return { l2: Math.sqrt(num / den), max: maxDiff / maxRef };
}

/** Kernel ms per node (ORT profiler, runs after the first), largest first. */
async function profileByNode(bytes: Uint8Array, feeds: Record<string, ort.Tensor>, o: Options, tag: string) {
  const dir = join('bench', 'results', 'profiles');
  const byNode = new Map<string, number>();
  for (const k of await profileKernels(bytes, feeds, { threads: o.threads, dir, tag, runs: 3 })) {
    const key = `${k.op}(${k.node})`;
    byNode.set(key, (byNode.get(key) ?? 0) + k.ms);
  }
  return [...byNode]
    .sort((x, y) => y[1] - x[1])
    .filter(([, ms]) => ms >= 0.5)
    .map(([k, ms]) => `${k} ${ms.toFixed(1)}`)
    .join(', ');
}

export const winogradBench: BenchModule = {
  name: 'winograd',
  description: 'Winograd F(2x2,3x3) / F(4x4,3x3) from ONNX ops vs ORT Conv: forward and dx of 3x3 convs',
  async run(args): Promise<BenchResult> {
    const o = parseArgs(args);
    const rows: Row[] = [];
    const notes: string[] = [];
    const details: Record<string, unknown>[] = [];
    for (const shape of o.shapes) {
      const { c, s } = shape;
      const rand = mulberry32(c * 1000 + s);
      // taming's conv init scale: activations and gradients stay O(1).
      const w = randn(rand, c * c * 9, 1 / Math.sqrt(c * 9));
      const b = randn(rand, c, 0.1);
      const feeds = {
        x: new ort.Tensor('float32', randn(rand, c * s * s), [1, c, s, s]),
        r: new ort.Tensor('float32', randn(rand, c * s * s), [1, c, s, s]),
      };
      const models = VARIANTS.map((v) => buildModels(v, shape, w, b));
      const fwdFeeds = { x: feeds.x };
      const dxFeeds = { r: feeds.r };
      // Full outputs once (errors), then the ReduceSum models timed; one model alive at a time
      // for the check keeps the 256^2 shapes' memory down.
      const outputs: Float32Array[] = [];
      for (const m of models) {
        for (const [bytes, f] of [
          [m.fwd, fwdFeeds],
          [m.dx, dxFeeds],
        ] as const) {
          const sess = await ort.InferenceSession.create(bytes, cpuSessionOptions(o.threads));
          outputs.push(Object.values(await sess.run(f))[0]!.data as Float32Array);
          await sess.release();
        }
      }
      const sessions: ort.InferenceSession[] = [];
      try {
        for (const m of models) {
          sessions.push(await ort.InferenceSession.create(m.fwdTimed, cpuSessionOptions(o.threads)));
          sessions.push(await ort.InferenceSession.create(m.dxTimed, cpuSessionOptions(o.threads)));
        }
        const runs = sessions.map((sess, i) => () => sess.run(i % 2 === 0 ? fwdFeeds : dxFeeds));
        const timings = await measureInterleaved(runs, { warmup: o.warmup, reps: o.reps });
        for (const [vi, variant] of VARIANTS.entries()) {
          const fwd = timings[2 * vi]!;
          const dx = timings[2 * vi + 1]!;
          const errF = relErrors(outputs[2 * vi]!, outputs[0]!);
          const errD = relErrors(outputs[2 * vi + 1]!, outputs[1]!);
          const speedF = pairedMedian(timings[0]!, fwd, (ref, t) => ref / t);
          const speedD = pairedMedian(timings[1]!, dx, (ref, t) => ref / t);
          rows.push({
            name: `${c}->${c} @ ${s}x${s} ${variant}`,
            cells: {
              'fwd ms': fwd.medianMs,
              'dx ms': dx.medianMs,
              'fwd speedup': speedF,
              'dx speedup': speedD,
              'fwd rel err': variant === 'conv' ? '-' : errF.l2.toExponential(1),
              'dx rel err': variant === 'conv' ? '-' : errD.l2.toExponential(1),
              'max err': variant === 'conv' ? '-' : Math.max(errF.max, errD.max).toExponential(1),
            },
          });
          details.push({ shape, variant, fwd, dx, errF, errD, speedF, speedD });
        }
      } finally {
        for (const sess of sessions) await sess.release();
      }
      if (o.profile) {
        for (const [vi, variant] of VARIANTS.entries()) {
          const tag = `winograd_${c}x${s}_${variant}`;
          notes.push(
            `profile ${c}@${s} ${variant} fwd (kernel ms): ${await profileByNode(models[vi]!.fwd, { x: feeds.x }, o, tag)}`,
          );
        }
      }
    }
    notes.unshift(
      `CPU EP, intraOpNumThreads ${o.threads}, optimisation 'all'; per shape ${o.warmup} warm-up round(s) then ${o.reps} rounds, the six models (conv / F2 / F4, fwd and dx) back to back in each round.`,
      'speedup = median over rounds of (ORT Conv time / this time) in the same round; errors relative to ORT Conv (L2 over the tensor; max = max |diff| / max |ref|).',
      'dx models: d(sum(conv(x) * r))/dx with r fed, so only the backward conv (flipped, transposed weights) and a Mul run.',
      'timed models end in a ReduceSum (same on every side) instead of returning the full tensor to JavaScript.',
    );
    if (o.ignored.length > 0) notes.push(`flags this module ignored: ${o.ignored.join(' ')}`);
    return {
      tables: [{ title: 'winograd vs Conv', rows }],
      notes,
      details: { options: o, results: details },
    };
  },
};
