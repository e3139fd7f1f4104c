// ORT sessions for benchmarks that need ORT's own options (profiling), and the profiler's kernel
// times, shared by the graph and winograd modules. Run directly, it profiles one full-size VQGAN+CLIP
// step by op type, forward against backward (bench/README.md, "step profile"):
//   npx tsx bench/ort-profile.ts --size=256 --cutouts=8 [--threads=2] [--runs=3]
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { makeCutouts } from '../src/worker/generate/cutouts.js';
import { randomLatent } from '../src/worker/generate/latent.js';
import { Rng } from '../src/worker/generate/rng.js';
import { STEP_INPUTS, stepGraph, stepSessionMemory } from '../src/worker/generate/step-graph.js';
import { bytesPerElement, type EmitOptions, Graph, sizeOf, type Tensor } from '../src/worker/graph/graph.js';
import { serialize } from '../src/worker/graph/serialize.js';
import {
  clipParameterShapes,
  clipVitB32Config,
  vqganF16_16384Config,
  vqganParameterShapes,
} from '../src/worker/models/config.js';
import { RandomWeights } from './generate.js';
import { formatTable, type Row } from './lib.js';

/** CPU provider, `threads` intra-op threads, sequential, optimisation 'all'; profiling when given a prefix. */
export function cpuSessionOptions(
  threads: number,
  profilePrefix?: string,
  memoryArena = true,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    enableCpuMemArena: memoryArena,
    enableMemPattern: memoryArena,
    ...(profilePrefix !== undefined && { enableProfiling: true, profileFilePrefix: profilePrefix }),
  };
}

interface ProfileEvent {
  readonly cat: string;
  readonly name: string;
  readonly ts: number;
  readonly dur: number;
  readonly args?: { readonly op_name?: string };
}

/** One kernel's time in one run, averaged over the profiled runs. */
export interface KernelTime {
  readonly op: string;
  /** The node's name in the model. */
  readonly node: string;
  readonly ms: number;
}

/**
 * Runs the model `runs` times with ORT's profiler on (profile file `${dir}/${tag}_*.json`, replaced
 * each time) and returns each kernel's milliseconds per run, averaged over the runs after the first
 * (the first pays for allocations and weight prepacking).
 */
export async function profileKernels(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  options: { threads: number; dir: string; tag: string; runs: number; memoryArena?: boolean },
): Promise<KernelTime[]> {
  const { dir, tag } = options;
  mkdirSync(dir, { recursive: true });
  const ours = () => readdirSync(dir).filter((f) => f.startsWith(`${tag}_`) && f.endsWith('.json'));
  // Keep only this run's profile (ORT stamps each file name with the time).
  for (const f of ours()) rmSync(join(dir, f));
  const session = await ort.InferenceSession.create(
    bytes,
    cpuSessionOptions(options.threads, join(dir, tag), options.memoryArena ?? true),
  );
  for (let i = 0; i < options.runs; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();
  const file = ours().sort().pop();
  if (!file) return [];
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
  const starts = events
    .filter((e) => e.name === 'model_run')
    .map((e) => e.ts)
    .sort((a, b) => a - b);
  const after = starts[1] ?? 0;
  const counted = Math.max(starts.length - 1, 1);
  return events
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= after)
    .map((e) => ({
      op: e.args?.op_name ?? '?',
      node: e.name.replace(/_kernel_time$/, ''),
      ms: e.dur / 1000 / counted,
    }));
}

// ---- the step profile -------------------------------------------------------------------------

/**
 * A Graph that remembers each node's phase (nodes that grad() emits run inside withoutTape: the
 * backward pass; everything else is the forward) and each tensor's bytes.
 */
class PhaseGraph extends Graph {
  readonly phase = new Map<string, 'forward' | 'backward'>();
  readonly bytes = new Map<string, number>();
  private backwardDepth = 0;

  override emit(opType: string, inputs: readonly (Tensor | undefined)[], options: EmitOptions): Tensor[] {
    const out = super.emit(opType, inputs, options);
    this.phase.set(this.nodes[this.nodes.length - 1]!.name, this.backwardDepth > 0 ? 'backward' : 'forward');
    for (const t of out) this.bytes.set(t.name, sizeOf(t.shape) * bytesPerElement(t.dtype));
    return out;
  }

  override withoutTape<T>(fn: () => T): T {
    // autodiff is the only caller: VJPs and the Sum nodes of fan-in.
    this.backwardDepth++;
    try {
      return super.withoutTape(fn);
    } finally {
      this.backwardDepth--;
    }
  }
}

interface OpTypeRow {
  forwardMs: number;
  backwardMs: number;
  /** Kernels of nodes ORT made (layout reorders, fusions under new names). */
  ortMs: number;
  nodes: number;
  /** Bytes the nodes read and write by our graph's shapes (before ORT's fusions). */
  bytes: number;
}

const ELEMENTWISE = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Neg',
  'Sigmoid',
  'Where',
  'Sum',
  'Clip',
  'Sqrt',
  'Abs',
  'Sign',
  'Equal',
  'Greater',
  'Less',
  'BatchNormalization',
  'LayerNormalization',
  'Resize',
  'AveragePool',
  'Pad',
  'Concat',
  'Split',
  'Slice',
  'Transpose',
  'Expand',
  'ReduceSum',
  'ReduceMean',
  'Softmax',
  'Cast',
  'ConstantOfShape',
  'Erf',
  'Exp',
  'Pow',
]);

/** Profiles one full-size step (random weights) and prints kernel time per op type, forward vs backward. */
async function profileStep(args: readonly string[]): Promise<void> {
  const opt = (name: string, dflt: number) => {
    const a = args.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.split('=')[1]) : dflt;
  };
  const size = opt('size', 256);
  const cutouts = opt('cutouts', 8);
  const threads = opt('threads', 2);
  const runs = opt('runs', 3);
  const clipConfig = clipVitB32Config();
  const vqConfig = vqganF16_16384Config();
  const models = {
    clip: { config: clipConfig, weights: new RandomWeights('clip', clipParameterShapes(clipConfig), 1) },
    vqgan: { config: vqConfig, weights: new RandomWeights('vqgan', vqganParameterShapes(vqConfig), 2) },
  };
  const g = new PhaseGraph();
  const built = stepGraph(models, { width: size, height: size, cutouts, prompts: 1 }, g);
  const bytes = serialize(g, { outputs: built.outputs, name: 'vqgan_clip_step' }).bytes;
  const S = built.shapes.cutoutSize;
  const rng = new Rng(3, 'cutouts');
  const cut = makeCutouts(() => rng.next(), { count: cutouts, size: S, height: size, width: size });
  const prompt = new Rng(5, 'prompt').fillNormal(new Float32Array(built.shapes.embedDim), 1);
  const norm = Math.hypot(...prompt);
  const t = (data: Float32Array, dims: readonly number[]) => new ort.Tensor('float32', data, dims);
  const feeds = {
    [STEP_INPUTS.z]: t(randomLatent(models.vqgan, size, size, 1).data, built.shapes.latent),
    [STEP_INPUTS.rows]: t(cut.rows, [cutouts, S, size]),
    [STEP_INPUTS.cols]: t(cut.cols, [cutouts, S, size]),
    [STEP_INPUTS.noise]: t(new Rng(4, 'noise').fillNormal(new Float32Array(cutouts * 3 * S * S), 0.05), [
      cutouts,
      3,
      S,
      S,
    ]),
    [STEP_INPUTS.prompts]: t(
      prompt.map((v) => v / norm),
      [1, built.shapes.embedDim],
    ),
    [STEP_INPUTS.weights]: t(new Float32Array([1]), [1]),
  };
  const loadBefore = loadavg()[0]!;
  const t0 = performance.now();
  const kernels = await profileKernels(bytes, feeds, {
    threads,
    dir: join('bench', 'results', 'profiles'),
    tag: `step_${size}x${cutouts}`,
    runs,
    // As StepSession runs it: on the arena when the graph fits this machine's budget.
    memoryArena: stepSessionMemory(g.emittedBytes).memoryArena,
  });
  const wallS = (performance.now() - t0) / 1000;
  const loadAfter = loadavg()[0]!;

  // Our nodes by name: op type, phase, bytes in + out.
  const nodeInfo = new Map<string, { op: string; phase: 'forward' | 'backward'; bytes: number }>();
  const initBytes = new Map([...g.initializers.values()].map((i) => [i.name, i.data.byteLength]));
  const tensorBytes = (n: string) => g.bytes.get(n) ?? initBytes.get(n) ?? 0;
  for (const n of g.nodes) {
    const moved = [...n.inputs, ...n.outputs].reduce((acc, name) => acc + (name ? tensorBytes(name) : 0), 0);
    nodeInfo.set(n.name, { op: n.opType, phase: g.phase.get(n.name)!, bytes: moved });
  }
  const byOp = new Map<string, OpTypeRow>();
  const row = (op: string) => {
    let r = byOp.get(op);
    if (!r) {
      r = { forwardMs: 0, backwardMs: 0, ortMs: 0, nodes: 0, bytes: 0 };
      byOp.set(op, r);
    }
    return r;
  };
  // ORT renames the nodes it rewrites: "MatMul_5/MatMulAddFusion" (a fusion keeps ours as a prefix),
  // "Conv_6:0_nchwc" (the NCHWc transformer names a node after our node's output tensor).
  const producer = new Map<string, string>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n.name);
  // ORT drops serialize's renaming Identity and gives the producer the graph output's name.
  for (const [name, t] of Object.entries(built.outputs)) {
    const p = producer.get(t.name);
    if (p) producer.set(name, p);
  }
  const ours = (ortName: string) => {
    if (nodeInfo.has(ortName)) return ortName;
    const prefix = ortName.split('/')[0]!;
    if (nodeInfo.has(prefix)) return prefix;
    const m = /^(.*)_nchwc$/.exec(ortName);
    return m ? producer.get(m[1]!) : undefined;
  };
  const countedNodes = new Set<string>();
  const nchwc = { forward: 0, backward: 0 };
  const convs = { forward: 0, backward: 0 };
  for (const n of g.nodes) {
    if (n.opType === 'Conv' && g.phase.get(n.name)) convs[g.phase.get(n.name)!]++;
  }
  for (const k of kernels) {
    const node = ours(k.node);
    const info = node ? nodeInfo.get(node) : undefined;
    if (info && k.node.endsWith('_nchwc') && info.op === 'Conv' && !countedNodes.has(node!))
      nchwc[info.phase]++;
    const r = row(k.op);
    if (!info) r.ortMs += k.ms;
    else if (info.phase === 'backward') r.backwardMs += k.ms;
    else r.forwardMs += k.ms;
    if (info && node && !countedNodes.has(node)) {
      countedNodes.add(node);
      r.nodes++;
      r.bytes += info.bytes;
    }
  }
  const total = [...byOp.values()].reduce((a, r) => a + r.forwardMs + r.backwardMs + r.ortMs, 0);
  const rows: Row[] = [...byOp.entries()]
    .map(([op, r]) => ({ op, r, ms: r.forwardMs + r.backwardMs + r.ortMs }))
    .sort((a, b) => b.ms - a.ms)
    .map(({ op, r, ms }) => ({
      name: op,
      cells: {
        'fwd ms': r.forwardMs.toFixed(0),
        'bwd ms': r.backwardMs.toFixed(0),
        'ORT-made ms': r.ortMs.toFixed(0),
        share: `${((100 * ms) / total).toFixed(1)}%`,
        nodes: r.nodes,
        'MB moved': ELEMENTWISE.has(op) ? (r.bytes / 2 ** 20).toFixed(0) : '',
        'GB/s':
          ELEMENTWISE.has(op) && r.forwardMs + r.backwardMs > 0
            ? (r.bytes / 1e6 / (r.forwardMs + r.backwardMs)).toFixed(1)
            : '',
      },
    }));
  const fwd = [...byOp.values()].reduce((a, r) => a + r.forwardMs, 0);
  const bwd = [...byOp.values()].reduce((a, r) => a + r.backwardMs, 0);
  const ortMade = [...byOp.values()].reduce((a, r) => a + r.ortMs, 0);
  console.log(`step ${size}x${size}, ${cutouts} cutouts, ${threads} threads, ${runs} runs (first dropped)`);
  console.log(formatTable(rows));
  console.log(
    `kernels ${total.toFixed(0)} ms a step: forward ${fwd.toFixed(0)}, backward ${bwd.toFixed(0)}, ORT-made nodes ${ortMade.toFixed(0)}; ` +
      `wall ${wallS.toFixed(0)} s for the session and ${runs} runs; load average ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)}`,
  );
  console.log(
    `convs in ORT's NCHWc layout: forward ${nchwc.forward} of ${convs.forward}, backward ${nchwc.backward} of ${convs.backward}`,
  );
  const unmatched = [...new Set(kernels.filter((k) => !ours(k.node)).map((k) => k.op))];
  console.log(`op types of ORT-made nodes: ${unmatched.join(', ')}`);
  const out = join('bench', 'results', `step-profile-${size}x${cutouts}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ size, cutouts, threads, runs, loadBefore, loadAfter, totalMs: total, forwardMs: fwd, backwardMs: bwd, ortMadeMs: ortMade, byOp: Object.fromEntries(byOp), nchwc, convs }, null, 2)}\n`,
  );
  console.log(`wrote ${out}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await profileStep(process.argv.slice(2));
}
