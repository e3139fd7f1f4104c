// Generation-step benchmark on the CPU execution provider with full-size random weights (CLIP
// ViT-B/32 image tower + VQGAN f16_16384 decoder, drawn in memory as models/random.ts draws them):
// seconds per step at 128 and 256 px with 8 and 32 cutouts, the step's effective GFLOP/s against a
// GEMM timed in the same run, peak RSS, and the run time of each CPU preset estimated from these.
import { adamInit, adamStep } from '../src/worker/generate/adam.js';
import { makeCutouts } from '../src/worker/generate/cutouts.js';
import { randomLatent } from '../src/worker/generate/latent.js';
import { PRESETS, type Preset } from '../src/worker/generate/presets.js';
import { Rng } from '../src/worker/generate/rng.js';
import { type StepFeeds, StepSession, stepGraph } from '../src/worker/generate/step-graph.js';
import type { EmitOptions } from '../src/worker/graph/graph.js';
import { Graph, matmul, serialize, type Tensor } from '../src/worker/graph/index.js';
import {
  clipParameterShapes,
  clipVitB32Config,
  type ParameterShapes,
  vqganF16_16384Config,
  vqganParameterShapes,
} from '../src/worker/models/config.js';
import type { WeightSource } from '../src/worker/models/params.js';
import { drawTensor, type InitExtras, initExtras, initFor } from '../src/worker/models/random.js';
import { ModelSession, type SessionOptions } from '../src/worker/onnx/session.js';
import {
  type BenchModule,
  type BenchResult,
  gflops,
  measure,
  mulberry32,
  type Row,
  randn,
  type Timing,
} from './lib.js';

const DEFAULTS = { threads: 2, steps: 3, warmup: 1, configs: '128x8,128x32,256x8,256x32', gemmN: 2048 };

/** PyTorch eager forward+backward of the same full-size step on these 2 cores (issue 4; not re-measured here). */
const PYTORCH_SECONDS: Readonly<Record<string, number>> = { '128x8': 0.98, '256x8': 2.9, '256x32': 4.05 };

interface Options {
  threads: number;
  steps: number;
  warmup: number;
  configs: { size: number; cutouts: number }[];
  gemmN: number;
}

function parseArgs(args: readonly string[]): Options {
  const o = { ...DEFAULTS };
  for (const a of args) {
    const m = /^--(threads|steps|warmup|configs|gemm)=(.+)$/.exec(a);
    if (!m) continue;
    if (m[1] === 'configs') o.configs = m[2]!;
    else if (m[1] === 'gemm') o.gemmN = Number(m[2]);
    else o[m[1] as 'threads' | 'steps' | 'warmup'] = Number(m[2]);
  }
  const configs = o.configs.split(',').map((c) => {
    const [size, cutouts] = c.split('x').map(Number);
    if (!size || !cutouts) throw new Error(`--configs: "${c}" is not SIZExCUTOUTS`);
    return { size, cutouts };
  });
  return { threads: o.threads, steps: o.steps, warmup: o.warmup, configs, gemmN: o.gemmN };
}

/**
 * Full-size random weights, drawn per tensor on first use and kept; each get() hands out a copy,
 * because the graph builder caches derived constants (transposed and flipped weights) in WeakMaps
 * keyed by the array, and a long-lived array would keep every graph built from it alive.
 */
export class RandomWeights implements WeightSource {
  private readonly shapes: Map<string, readonly number[]>;
  private readonly cache = new Map<string, Float32Array>();
  private readonly extras: InitExtras;
  bytes = 0;

  constructor(
    private readonly model: 'clip' | 'vqgan',
    shapes: ParameterShapes,
    private readonly seed: number,
  ) {
    this.shapes = new Map(shapes);
    this.extras = initExtras(shapes);
  }

  get(name: string, expected?: readonly number[]): Float32Array {
    const hit = this.cache.get(name);
    if (hit) return hit.slice();
    const shape = this.shapes.get(name);
    if (!shape || (expected && expected.join(',') !== shape.join(','))) {
      throw new Error(`random ${this.model}: no tensor "${name}" of shape [${expected ?? ''}]`);
    }
    const data = drawTensor(this.seed, name, shape, initFor(name, shape, this.model, this.extras));
    this.cache.set(name, data);
    this.bytes += data.byteLength;
    return data.slice();
  }
}

/** Counts the multiply-adds of Conv, ConvTranspose and MatMul nodes as they are emitted (x2 = FLOPs). */
class CountingGraph extends Graph {
  flops = 0;

  override emit(opType: string, inputs: readonly (Tensor | undefined)[], options: EmitOptions): Tensor[] {
    const outs = super.emit(opType, inputs, options);
    const out = outs[0]?.shape ?? [];
    const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    if (opType === 'Conv') {
      const w = inputs[1]!.shape; // [Cout, Cin/g, kh, kw]
      this.flops += 2 * size(out) * size(w.slice(1));
    } else if (opType === 'ConvTranspose') {
      const x = inputs[0]!.shape; // [N, Cin, h, w]
      const w = inputs[1]!.shape; // [Cin, Cout/g, kh, kw]
      this.flops += 2 * size(x) * size(w.slice(1));
    } else if (opType === 'MatMul') {
      const a = inputs[0]!.shape;
      this.flops += 2 * size(out) * a[a.length - 1]!;
    }
    return outs;
  }
}

export interface Measured {
  readonly size: number;
  readonly cutouts: number;
  readonly gflop: number;
  readonly buildMs: number;
  readonly run: Timing;
  readonly prepMs: number;
  readonly rssAfterCreateMb: number;
  readonly peakRssMb: number;
}

const mb = (bytes: number) => bytes / 2 ** 20;
const peakRssMb = () => process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB

async function measureGemm(o: Options): Promise<{ timing: Timing; gflops: number }> {
  const n = o.gemmN;
  const g = new Graph();
  const y = matmul(g.input('a', [n, n]), g.input('b', [n, n]));
  const session = await ModelSession.create(serialize(g, { outputs: { y } }).bytes, {
    intraOpThreads: o.threads,
  });
  const rand = mulberry32(1);
  const feeds = {
    a: { data: randn(rand, n * n), dims: [n, n] },
    b: { data: randn(rand, n * n), dims: [n, n] },
  };
  const timing = await measure(() => session.run(feeds), { warmup: 2, reps: 7 });
  await session.release();
  return { timing, gflops: gflops(2 * n ** 3, timing.medianMs) };
}

/**
 * One step configuration: graph build, then warm-up and timed steps (feeds made before each run, not
 * beside it as the loop does). `session` adds to the step session's options (the worker's by default).
 */
export async function measureConfig(
  models: Parameters<typeof stepGraph>[0],
  size: number,
  cutouts: number,
  o: Pick<Options, 'threads' | 'steps' | 'warmup'> & { readonly session?: SessionOptions },
): Promise<Measured> {
  const t0 = performance.now();
  const built = stepGraph(models, { width: size, height: size, cutouts, prompts: 1 }, new CountingGraph());
  const gflop = (built.graph as CountingGraph).flops / 1e9;
  const session = await StepSession.fromGraph(built, { ...o.session, intraOpThreads: o.threads });
  const buildMs = performance.now() - t0;
  const rssAfterCreateMb = mb(process.memoryUsage().rss);
  try {
    const S = built.shapes.cutoutSize;
    const z = randomLatent(models.vqgan, size, size, 1).data;
    const adam = adamInit(z.length);
    const prompt = new Rng(2, 'prompt').fillNormal(new Float32Array(built.shapes.embedDim));
    const norm = Math.hypot(...prompt);
    const noise = new Float32Array(cutouts * 3 * S * S);
    let prepTotal = 0;
    let step = 0;
    // What the loop does per step besides the session: cutout matrices and noise from seeded streams.
    const feeds = (): StepFeeds => {
      const p0 = performance.now();
      const rng = new Rng(1, 'cutouts', step);
      const cut = makeCutouts(() => rng.next(), { count: cutouts, size: S, height: size, width: size });
      const nr = new Rng(1, 'noise', step);
      for (let k = 0; k < cutouts; k++) nr.fillNormal(noise, nr.next() * 0.1, k * 3 * S * S, 3 * S * S);
      prepTotal += performance.now() - p0;
      step++;
      return {
        z,
        rows: cut.rows,
        cols: cut.cols,
        noise,
        prompts: prompt.map((v) => v / norm),
        weights: Float32Array.from([1]),
      };
    };
    const run = await measure(
      async () => {
        const out = await session.run(feeds());
        adamStep(z, out.grad, adam);
      },
      { warmup: o.warmup, reps: o.steps },
    );
    return {
      size,
      cutouts,
      gflop,
      buildMs,
      run,
      prepMs: prepTotal / step,
      rssAfterCreateMb,
      peakRssMb: peakRssMb(),
    };
  } finally {
    await session.release();
  }
}

/** Seconds per step at (size, cutouts) from the measured grid: linear in cutouts, and in pixels between sizes. */
function stepModel(ms: readonly Measured[]): (size: number, cutouts: number) => number | undefined {
  const bySize = new Map<number, { a: number; b: number }>();
  for (const size of new Set(ms.map((m) => m.size))) {
    const pts = ms.filter((m) => m.size === size).sort((x, y) => x.cutouts - y.cutouts);
    const lo = pts[0];
    const hi = pts[pts.length - 1];
    if (!lo || !hi) continue;
    const b = hi.cutouts === lo.cutouts ? 0 : (hi.run.medianMs - lo.run.medianMs) / (hi.cutouts - lo.cutouts);
    bySize.set(size, { a: lo.run.medianMs - b * lo.cutouts, b });
  }
  const sizes = [...bySize.keys()].sort((a, b) => a - b);
  return (size, cutouts) => {
    const at = (s: number) => bySize.get(s)!.a + bySize.get(s)!.b * cutouts;
    if (bySize.has(size)) return at(size) / 1000;
    const lo = sizes.filter((s) => s < size).pop();
    const hi = sizes.find((s) => s > size);
    if (lo === undefined || hi === undefined) return undefined;
    const f = (size ** 2 - lo ** 2) / (hi ** 2 - lo ** 2);
    return (at(lo) + f * (at(hi) - at(lo))) / 1000;
  };
}

export const generateBench: BenchModule = {
  name: 'generate',
  description:
    'VQGAN+CLIP step, full-size random weights, ORT CPU: s/step, GFLOP/s vs GEMM, peak RSS, preset times',
  async run(args): Promise<BenchResult> {
    const o = parseArgs(args);
    const gemm = await measureGemm(o);
    const t0 = performance.now();
    const clip = {
      config: clipVitB32Config(),
      weights: new RandomWeights('clip', clipParameterShapes(clipVitB32Config()), 1),
    };
    const vqConfig = vqganF16_16384Config();
    const vqgan = {
      config: vqConfig,
      weights: new RandomWeights('vqgan', vqganParameterShapes(vqConfig), 2),
    };
    const models = { clip, vqgan };
    const measured: Measured[] = [];
    for (const c of o.configs) measured.push(await measureConfig(models, c.size, c.cutouts, o));
    const weightsMb = mb(clip.weights.bytes + vqgan.weights.bytes);
    const totalS = (performance.now() - t0) / 1000;

    const rows: Row[] = measured.map((m) => {
      const key = `${m.size}x${m.cutouts}`;
      const torch = PYTORCH_SECONDS[key];
      const s = m.run.medianMs / 1000;
      return {
        name: `${m.size}x${m.size}, ${m.cutouts} cutouts`,
        cells: {
          's/step': s,
          'min s': m.run.minMs / 1000,
          'prep ms': m.prepMs,
          GFLOP: m.gflop,
          'GFLOP/s': gflops(m.gflop * 1e9, m.run.medianMs),
          'vs GEMM': gflops(m.gflop * 1e9, m.run.medianMs) / gemm.gflops,
          'PyTorch s': torch ?? '',
          'vs PyTorch': torch ? s / torch : '',
          'build s': m.buildMs / 1000,
          'RSS MB': m.rssAfterCreateMb,
          'peak RSS MB': m.peakRssMb,
        },
      };
    });
    const model = stepModel(measured);
    const presetRows: Row[] = (Object.keys(PRESETS.cpu) as Preset[]).map((p) => {
      const ps = PRESETS.cpu[p];
      const perStep = model(ps.width, ps.cutouts);
      const build = measured.find((m) => m.size === ps.width)?.buildMs ?? measured[0]!.buildMs;
      return {
        name: `cpu ${p}`,
        cells: {
          steps: ps.steps,
          size: `${ps.width}x${ps.height}`,
          cutouts: ps.cutouts,
          's/step (est.)': perStep ?? 'n/a',
          // steps + the final evaluation, plus building the step graph once (cached after).
          'run s (est.)': perStep === undefined ? 'n/a' : (ps.steps + 1) * perStep + build / 1000,
        },
      };
    });
    const notes = [
      `CPU EP, intraOpNumThreads ${o.threads}; ${o.warmup} warm-up step(s), then ${o.steps} timed steps per configuration (median shown). One step = the ORT session (forward + d(loss)/dz) + cutout matrices and noise in JS (prep) + Adam.`,
      `GEMM ${o.gemmN}^3 in the same run: ${gemm.timing.medianMs.toFixed(0)} ms median = ${gemm.gflops.toFixed(0)} GFLOP/s; "vs GEMM" is the step's GFLOP/s over that (goal >= 0.6).`,
      'GFLOP counts the Conv, ConvTranspose and MatMul nodes of the whole graph (forward and backward), 2 FLOPs per multiply-add; norms, activations and softmax are not counted.',
      `PyTorch s: eager forward+backward of the same model on these 2 cores, from issue 4 (not measured in this run); goal: half of it. Random weights: ${weightsMb.toFixed(0)} MB of float32 held in JS.`,
      `Peak RSS is the process's high-water mark so far (goal <= 4 GiB); sessions are released after each configuration. Total ${totalS.toFixed(0)} s.`,
      'Preset estimates: per-step time linear in cutouts at each measured size, interpolated in pixel count between sizes; run = (steps + 1 final evaluation) x s/step + graph build.',
    ];
    return {
      tables: [
        { title: 'step time', rows },
        { title: 'CPU presets (estimated from the step times above)', rows: presetRows },
      ],
      notes,
      details: {
        options: o,
        gemm,
        weightsMb,
        configs: measured,
        presets: presetRows,
      },
    };
  },
};
