// Our ORT graphs side by side with PyTorch eager on the same machine, in the same run: the CLIP
// ViT-B/32 image tower (batch 1 latency, batch 16 throughput) and the VQGAN+CLIP generation step.
// PyTorch runs in tools/pytorch_bench.py --serve (a child process) when .venv/bin/python has torch.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createInterface, type Interface } from 'node:readline';
import { adamInit, adamStep } from '../src/worker/generate/adam.js';
import { makeCutouts } from '../src/worker/generate/cutouts.js';
import { randomLatent } from '../src/worker/generate/latent.js';
import { Rng } from '../src/worker/generate/rng.js';
import { type StepFeeds, StepSession, stepGraph } from '../src/worker/generate/step-graph.js';
import type { EmitOptions, Tensor } from '../src/worker/graph/graph.js';
import { Graph, matmul, serialize } from '../src/worker/graph/index.js';
import { clipVision } from '../src/worker/models/clip.js';
import {
  clipParameterShapes,
  clipVitB32Config,
  vqganF16_16384Config,
  vqganParameterShapes,
} from '../src/worker/models/config.js';
import { ModelSession } from '../src/worker/onnx/session.js';
import { RandomWeights } from './generate.js';
import {
  type BenchModule,
  type BenchResult,
  gflops,
  mulberry32,
  percentile,
  type Row,
  randn,
  summarize,
  type Timing,
} from './lib.js';

const DEFAULTS = {
  threads: 2,
  /** Rounds: each round times ours, then PyTorch, so both see the same load. */
  rounds: 5,
  /** Runs per round and side for the image tower (batch 16: a third of it, at least 1). */
  clipRuns: 3,
  clipBatches: '1,16',
  steps: '128x8,256x8,256x32',
  python: '.venv/bin/python',
  torch: true,
};

interface Options {
  threads: number;
  rounds: number;
  clipRuns: number;
  clipBatches: number[];
  steps: { size: number; cutouts: number }[];
  python: string;
  torch: boolean;
}

function parseArgs(args: readonly string[]): Options {
  const o = { ...DEFAULTS };
  for (const a of args) {
    const m = /^--(threads|rounds|clip-runs|clip|steps|python)=(.*)$/.exec(a);
    if (m) {
      const v = m[2]!;
      if (m[1] === 'threads') o.threads = Number(v);
      else if (m[1] === 'rounds') o.rounds = Number(v);
      else if (m[1] === 'clip-runs') o.clipRuns = Number(v);
      else if (m[1] === 'clip') o.clipBatches = v;
      else if (m[1] === 'steps') o.steps = v;
      else o.python = v;
    }
    if (a === '--no-torch') o.torch = false;
  }
  const list = (s: string) => s.split(',').filter((x) => x.length > 0);
  return {
    threads: o.threads,
    rounds: o.rounds,
    clipRuns: o.clipRuns,
    clipBatches: list(o.clipBatches).map(Number),
    steps: list(o.steps).map((c) => {
      const [size, cutouts] = c.split('x').map(Number);
      if (!size || !cutouts) throw new Error(`--steps: "${c}" is not SIZExCUTOUTS`);
      return { size, cutouts };
    }),
    python: o.python,
    torch: o.torch,
  };
}

/**
 * Records the multiply-adds of each MatMul/Conv node (x2 = FLOPs), so that only the nodes that
 * reach the fetched outputs count (serialisation drops the rest, e.g. the full last CLIP layer
 * when only the pooled embedding is fetched).
 */
class FlopGraph extends Graph {
  private readonly byOutput = new Map<string, number>();

  override emit(opType: string, inputs: readonly (Tensor | undefined)[], options: EmitOptions): Tensor[] {
    const outs = super.emit(opType, inputs, options);
    const out = outs[0]?.shape ?? [];
    const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
    let f = 0;
    if (opType === 'Conv') f = 2 * size(out) * size(inputs[1]!.shape.slice(1));
    else if (opType === 'ConvTranspose') f = 2 * size(inputs[0]!.shape) * size(inputs[1]!.shape.slice(1));
    else if (opType === 'MatMul') f = 2 * size(out) * inputs[0]!.shape[inputs[0]!.shape.length - 1]!;
    if (f > 0) this.byOutput.set(outs[0]!.name, f);
    return outs;
  }

  /** FLOPs of the nodes that the given outputs depend on. */
  liveFlops(outputs: readonly Tensor[]): number {
    const producer = new Map<string, (typeof this.nodes)[number]>();
    for (const n of this.nodes) for (const o of n.outputs) producer.set(o, n);
    const seen = new Set<string>();
    const stack = outputs.map((t) => t.name);
    let total = 0;
    while (stack.length > 0) {
      const name = stack.pop()!;
      const node = producer.get(name);
      if (!node || seen.has(node.name)) continue;
      seen.add(node.name);
      total += this.byOutput.get(node.outputs[0]!) ?? 0;
      for (const i of node.inputs) if (i) stack.push(i);
    }
    return total;
  }
}

/** tools/pytorch_bench.py --serve: one JSON command per line in, one JSON reply per line out. */
class TorchServer {
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    rl: Interface,
    readonly info: Record<string, unknown>,
  ) {
    this.lines = rl[Symbol.asyncIterator]();
    child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-2000);
    });
  }

  static async start(python: string, threads: number): Promise<TorchServer> {
    const child = spawn(python, ['tools/pytorch_bench.py', '--serve', `--threads=${threads}`], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // One OpenMP team of `threads`, as torch.set_num_threads would give; no MKL/OMP oversubscription.
      env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
    });
    const rl = createInterface({ input: child.stdout });
    const first = await rl[Symbol.asyncIterator]().next();
    if (first.done) throw new Error('tools/pytorch_bench.py exited before it was ready');
    const hello = JSON.parse(first.value) as Record<string, unknown>;
    return new TorchServer(child, rl, hello);
  }

  async ask(cmd: Record<string, unknown>): Promise<number[]> {
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error(`tools/pytorch_bench.py exited: ${this.stderr}`);
    const reply = JSON.parse(next.value) as { samples_ms?: number[]; error?: string };
    if (reply.error || !reply.samples_ms) throw new Error(`PyTorch: ${reply.error ?? next.value}`);
    return reply.samples_ms;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  async close(): Promise<void> {
    this.child.stdin.end(`${JSON.stringify({ op: 'quit' })}\n`);
    await new Promise<void>((resolve) => {
      if (this.child.exitCode !== null) resolve();
      else this.child.once('exit', () => resolve());
    });
  }
}

/** CPU seconds all cores spent busy since boot (user, nice, sys, irq). */
function busyCpuSeconds(): number {
  return cpus().reduce((a, c) => a + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0) / 1000;
}

/** CPU seconds used by a child process so far (Linux /proc; 0 where unreadable). */
function childCpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

/**
 * Measures how busy other processes keep the machine: all cores' busy time minus this process's
 * and the PyTorch child's, per second of wall time (0 = idle machine, 1 = one core taken).
 */
class OtherLoad {
  private readonly t0 = performance.now();
  private readonly busy0 = busyCpuSeconds();
  private readonly self0 = process.cpuUsage();

  cores(childPid: number | undefined): number {
    const wall = (performance.now() - this.t0) / 1000;
    const self = process.cpuUsage(this.self0);
    const ours = (self.user + self.system) / 1e6 + childCpuSeconds(childPid);
    return Math.max(0, (busyCpuSeconds() - this.busy0 - ours) / wall);
  }
}

/** Whether `python` can import torch and transformers (a one-off check, ~2 s). */
async function torchAvailable(python: string): Promise<string | undefined> {
  if (!existsSync(python)) return `${python} not found`;
  return new Promise((resolve) => {
    const child = spawn(python, ['-c', 'import torch, transformers'], { stdio: 'ignore' });
    child.on('error', (err) => resolve(err.message));
    child.on('exit', (code) =>
      resolve(code === 0 ? undefined : `${python} cannot import torch/transformers`),
    );
  });
}

async function timeRuns(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

interface Pair {
  readonly ours: Timing;
  readonly torch: Timing | undefined;
  /** Median over rounds of (our round median / PyTorch's round median). */
  readonly ratio: number | undefined;
}

/** Runs `rounds` rounds of `ours` then `torch` (when given), `runs` samples each per round. */
async function interleave(
  rounds: number,
  runs: number,
  ours: () => Promise<unknown>,
  torch: ((runs: number) => Promise<number[]>) | undefined,
): Promise<Pair> {
  const a: number[] = [];
  const b: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const ra = await timeRuns(ours, runs);
    a.push(...ra);
    if (torch) {
      const rb = await torch(runs);
      b.push(...rb);
      ratios.push(summarize(ra).medianMs / summarize(rb).medianMs);
    }
  }
  ratios.sort((x, y) => x - y);
  return {
    ours: summarize(a),
    torch: torch ? summarize(b) : undefined,
    ratio: torch ? percentile(ratios, 50) : undefined,
  };
}

const spreadPct = (t: Timing) => `${t.minMs.toFixed(0)}-${t.maxMs.toFixed(0)}`;

async function gemmRate(threads: number): Promise<number> {
  // A CLIP MLP-shaped GEMM with a constant (prepacked) weight: the rate our linear layers can reach.
  const [m, k, n] = [800, 768, 3072];
  const rand = mulberry32(7);
  const g = new Graph();
  const y = matmul(g.input('a', [m, k]), g.constant(randn(rand, k * n, 0.03), [k, n], { name: 'w' }));
  const s = await ModelSession.create(serialize(g, { outputs: { y } }).bytes, { intraOpThreads: threads });
  const feeds = { a: { data: randn(rand, m * k), dims: [m, k] } };
  // Warm for a second first: the first ~10 runs after two warm-ups ran at 100-110 GFLOP/s
  // against 150-180 after (7 Dec 2026), which made "vs GEMM" read 1.65 for a step.
  const warm = performance.now();
  while (performance.now() - warm < 1000) await s.run(feeds);
  const t = summarize(await timeRuns(() => s.run(feeds), 25));
  await s.release();
  return gflops(2 * m * k * n, t.medianMs);
}

async function run(args: readonly string[]): Promise<BenchResult> {
  const o = parseArgs(args);
  const notes: string[] = [];
  const load = new OtherLoad();
  let torch: TorchServer | undefined;
  if (o.torch) {
    const missing = await torchAvailable(o.python);
    if (missing) notes.push(`PyTorch side skipped: ${missing}`);
    else torch = await TorchServer.start(o.python, o.threads);
  }
  const clipConfig = clipVitB32Config();
  const clipWeights = new RandomWeights('clip', clipParameterShapes(clipConfig), 1);
  const vqConfig = vqganF16_16384Config();
  const models = {
    clip: { config: clipConfig, weights: clipWeights },
    vqgan: { config: vqConfig, weights: new RandomWeights('vqgan', vqganParameterShapes(vqConfig), 2) },
  };
  const session = { intraOpThreads: o.threads };
  const clipRows: Row[] = [];
  const stepRows: Row[] = [];
  const details: Record<string, unknown> = { options: o, torch: torch?.info };
  try {
    const gemm = await gemmRate(o.threads);
    details.gemmGflops = gemm;

    // --- CLIP image tower
    for (const batch of o.clipBatches) {
      const g = new FlopGraph();
      const pixels = g.input('pixels', [batch, 3, 224, 224]);
      const { embeds } = clipVision(g, pixels, clipConfig, clipWeights);
      const { bytes } = serialize(g, { outputs: { embeds } });
      const s = await ModelSession.create(bytes, session);
      const feeds = {
        pixels: { data: randn(mulberry32(batch), batch * 3 * 224 * 224), dims: [batch, 3, 224, 224] },
      };
      const ours = () => s.run(feeds);
      const runs = batch === 1 ? o.clipRuns : Math.max(1, Math.ceil(o.clipRuns / 3));
      await timeRuns(ours, 2);
      if (torch) await torch.ask({ op: 'clip', batch, reps: 0, warmup: 2 });
      const pair = await interleave(
        o.rounds,
        runs,
        ours,
        torch && ((reps) => torch!.ask({ op: 'clip', batch, reps })),
      );
      await s.release();
      const gflop = g.liveFlops([embeds]) / 1e9;
      details[`clip_b${batch}`] = { ...pair, gflop };
      clipRows.push({
        name: `image encode, batch ${batch}`,
        cells: {
          'ours ms': pair.ours.medianMs,
          'ours min-max': spreadPct(pair.ours),
          'ours img/s': (1000 * batch) / pair.ours.medianMs,
          'GFLOP/s': gflops(gflop * 1e9, pair.ours.medianMs),
          'vs GEMM': gflops(gflop * 1e9, pair.ours.medianMs) / gemm,
          'PyTorch ms': pair.torch?.medianMs ?? '',
          'PyTorch min-max': pair.torch ? spreadPct(pair.torch) : '',
          'PyTorch img/s': pair.torch ? (1000 * batch) / pair.torch.medianMs : '',
          'ours/PyTorch': pair.ratio ?? '',
        },
      });
    }

    // --- Generation step
    for (const { size, cutouts } of o.steps) {
      const built = stepGraph(models, { width: size, height: size, cutouts, prompts: 1 }, new FlopGraph());
      const gflop = (built.graph as FlopGraph).liveFlops(Object.values(built.outputs)) / 1e9;
      const step = await StepSession.fromGraph(built, session);
      const S = built.shapes.cutoutSize;
      const z = randomLatent(models.vqgan, size, size, 1).data;
      const adam = adamInit(z.length);
      const prompt = new Rng(2, 'prompt').fillNormal(new Float32Array(built.shapes.embedDim));
      const norm = Math.hypot(...prompt);
      const noises = [new Float32Array(cutouts * 3 * S * S), new Float32Array(cutouts * 3 * S * S)];
      const feedsFor = (n: number): StepFeeds => {
        const rng = new Rng(1, 'cutouts', n);
        const cut = makeCutouts(() => rng.next(), { count: cutouts, size: S, height: size, width: size });
        const noise = noises[n % 2]!;
        const nr = new Rng(1, 'noise', n);
        for (let k = 0; k < cutouts; k++) nr.fillNormal(noise, nr.next() * 0.1, k * 3 * S * S, 3 * S * S);
        return {
          z,
          rows: cut.rows,
          cols: cut.cols,
          noise,
          prompts: prompt.map((v) => v / norm),
          weights: Float32Array.from([1]),
        };
      };
      let n = 0;
      let next = feedsFor(n);
      // As the loop does per step (src/worker/generate/loop.ts): the session runs this step while the
      // next step's cutout matrices and noise are made, then Adam on z.
      const ours = async () => {
        const running = step.run(next);
        next = feedsFor(++n);
        adamStep(z, (await running).grad, adam);
      };
      // Two warm-up steps: ORT's memory-pattern planner records the first run's allocations and the
      // second still grows the arena; with one, the first timed step ran 1.3-1.5x the rest (7 Dec
      // 2026: 2317 against 1749 ms at 128 px, 6037 against 3949 at 256 px). The workers' steady
      // state is what a job of hundreds of steps sees. PyTorch gets the same two.
      await ours();
      await ours();
      if (torch) await torch.ask({ op: 'step', size, cutouts, reps: 0, warmup: 2 });
      const pair = await interleave(
        o.rounds,
        1,
        ours,
        torch && ((reps) => torch!.ask({ op: 'step', size, cutouts, reps })),
      );
      await step.release();
      if (torch) await torch.ask({ op: 'drop', size, cutouts });
      details[`step_${size}x${cutouts}`] = { ...pair, gflop };
      stepRows.push({
        name: `${size}x${size}, ${cutouts} cutouts`,
        cells: {
          'ours s': pair.ours.medianMs / 1000,
          'ours min-max ms': spreadPct(pair.ours),
          'GFLOP/s': gflops(gflop * 1e9, pair.ours.medianMs),
          'vs GEMM': gflops(gflop * 1e9, pair.ours.medianMs) / gemm,
          'PyTorch s': pair.torch ? pair.torch.medianMs / 1000 : '',
          'PyTorch min-max ms': pair.torch ? spreadPct(pair.torch) : '',
          'ours/PyTorch': pair.ratio ?? '',
          'goal (<= 0.5)': pair.ratio === undefined ? '' : pair.ratio <= 0.5 ? 'met' : 'not met',
        },
      });
    }
    const others = load.cores(torch?.pid);
    details.otherProcessCores = others;
    notes.push(
      `intra-op threads ${o.threads} for both (PyTorch: torch.set_num_threads, OMP_NUM_THREADS); ${o.rounds} rounds, ` +
        'each times ours then PyTorch back to back; medians over all samples, "ours/PyTorch" is the median of the ' +
        'per-round ratios (robust to load that changes between rounds).',
      `constant-weight GEMM 800x768x3072 in this run: ${gemm.toFixed(0)} GFLOP/s ("vs GEMM" = GFLOP/s over it); ` +
        'GFLOP counts MatMul/Conv nodes only, forward and backward.',
      'PyTorch: Hugging Face CLIPVisionModelWithProjection (ViT-B/32 shapes, random weights, inference_mode) and ' +
        'the same step structure (tools/pytorch_bench.py: taming f16_16384 decoder, straight-through quantiser, ' +
        'matrix cutouts, HF CLIP tower, spherical loss, backward to z, Adam); its cutout matrices are fixed, ours are ' +
        'made per step in JS while the session runs the step before, as the loop does (what is not hidden counts in our time).',
      `other processes kept ${others.toFixed(2)} cores busy on average during the run: ` +
        'above ~0.2 the 2-thread timings of both sides suffer (a thread that waits for a descheduled peer at every ' +
        'op barrier), far more than 1-thread ones; compare the ratios, or rerun on an idle machine.',
    );
  } finally {
    await torch?.close();
  }
  return {
    tables: [
      { title: `CLIP ViT-B/32 image tower, random weights, CPU, ${o.threads} threads`, rows: clipRows },
      { title: 'VQGAN+CLIP step (forward + d/dz + Adam), full-size random weights', rows: stepRows },
    ],
    notes,
    details,
  };
}

export const comparePytorchBench: BenchModule = {
  name: 'compare-pytorch',
  description:
    'ORT graphs vs PyTorch eager on this machine, interleaved: CLIP image tower and the generation step',
  run,
};
