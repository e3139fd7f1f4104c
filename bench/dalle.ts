// minDALL-E stage-2 benchmark on random weights (drawn in memory, no files): prefill time, decode-step
// time at batch 1 and 8, the seconds a 256-token image with 8 candidates costs (prefill + 255 steps,
// from the measured step), and, in the same run, the time to stream every weight once from memory
// through ORT (a ReduceSum over each weight input): decode at batch 1 reads all weights per token,
// so that time is its physical floor. Goal of issue 13: a batch-1 step <= 1.3x the streaming time.
// Float32 and int8 weights (prepareDalleWeights' 'int8') in the same run, each against streaming its
// own weights, and the int8 logits against float32's on a mid-size random model (--accuracy).
//   npm run bench -- dalle [-- --size=full|tiny --threads=2 --steps=5 --precision=both|fp32|int8
//                              --accuracy=mid|tiny|none]
import { loadavg } from 'node:os';
import {
  type DalleConfig,
  dalleParameterShapes,
  minDalle13BConfig,
  tinyDalleConfig,
} from '../src/worker/dalle/config.js';
import { compareLogits } from '../src/worker/dalle/logit-agreement.js';
import { DalleRunner } from '../src/worker/dalle/runner.js';
import {
  type BuildOptions,
  type DalleWeights,
  prepareDalleWeights,
  type WeightArray,
} from '../src/worker/dalle/transformer.js';
import { Graph, type Tensor } from '../src/worker/graph/graph.js';
import { reduceMax, reduceSum } from '../src/worker/graph/ops/reduce.js';
import { serialize } from '../src/worker/graph/serialize.js';
import type { WeightSource } from '../src/worker/models/params.js';
import { type HostTensor, ModelSession, type SessionOptions } from '../src/worker/onnx/session.js';
import {
  type BenchModule,
  type BenchResult,
  measureInterleaved,
  pairedMedian,
  type Row,
  summarize,
  type Timing,
} from './lib.js';

type Precision = 'fp32' | 'int8';

interface Options {
  size: 'full' | 'tiny';
  threads: number;
  steps: number;
  precisions: Precision[];
  accuracy: 'mid' | 'tiny' | 'none';
}

function parseArgs(args: readonly string[]): Options {
  const o: Options = { size: 'full', threads: 2, steps: 5, precisions: ['fp32', 'int8'], accuracy: 'mid' };
  const oneOf = <T extends string>(flag: string, v: string, allowed: readonly T[]): T => {
    if (!(allowed as readonly string[]).includes(v))
      throw new Error(`--${flag}: "${v}" (${allowed.join(', ')})`);
    return v as T;
  };
  for (const a of args) {
    const m = /^--(size|threads|steps|precision|accuracy)=(.*)$/.exec(a);
    if (!m) continue;
    const v = m[2]!;
    if (m[1] === 'size') o.size = oneOf('size', v, ['full', 'tiny'] as const);
    else if (m[1] === 'precision') {
      const p = oneOf('precision', v, ['both', 'fp32', 'int8'] as const);
      o.precisions = p === 'both' ? ['fp32', 'int8'] : [p];
    } else if (m[1] === 'accuracy') o.accuracy = oneOf('accuracy', v, ['mid', 'tiny', 'none'] as const);
    else o[m[1] as 'threads' | 'steps'] = Number(v);
  }
  return o;
}

/** A model between tiny and full: 8 layers of 512, the full vocabularies and contexts. */
function midDalleConfig(): DalleConfig {
  return { ...minDalle13BConfig(), embed_dim: 512, n_layers: 8, n_heads: 8 };
}

/** Weights a decode step reads whole (not the embeddings, of which it gathers one row each). */
function streamedWeights(weights: DalleWeights): [string, WeightArray][] {
  return [...weights].filter(([name]) => !/_emb_/.test(name));
}

/**
 * A session that reads every weight a decode step reads once (ReduceSum; ReduceMax for int8, which
 * has no ReduceSum kernel), one scalar output per weight, and its feeds.
 */
async function streamingSession(
  weights: DalleWeights,
  session: SessionOptions,
): Promise<{ s: ModelSession; feeds: Record<string, HostTensor>; bytes: number }> {
  const g = new Graph();
  const outputs: Record<string, Tensor> = {};
  const feeds: Record<string, HostTensor> = {};
  let bytes = 0;
  for (const [name, w] of streamedWeights(weights)) {
    const x = g.input(name, w.dims, w.data instanceof Int8Array ? 'int8' : 'float32');
    feeds[name] = w;
    bytes += w.data.byteLength;
    outputs[`r${Object.keys(outputs).length}`] = w.data instanceof Int8Array ? reduceMax(x) : reduceSum(x);
  }
  const s = await ModelSession.create(serialize(g, { outputs, name: 'stream' }).bytes, session);
  return { s, feeds, bytes };
}

/**
 * Weights of the right shapes filled from a cheap generator (their values do not change the time;
 * the project's seeded normals would take a minute to draw 1.3B of). Small values keep the
 * activations finite.
 */
export class FastRandomWeights implements WeightSource {
  private readonly shapes: Map<string, readonly number[]>;
  constructor(config: DalleConfig) {
    this.shapes = new Map(dalleParameterShapes(config));
  }
  get(name: string): Float32Array {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`no tensor ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    let s = 0x9e3779b9 ^ name.length;
    const scale = 2 / Math.sqrt(shape[1] ?? 1) / 4294967296;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      out[i] = (s - 2147483648) * scale;
    }
    if (/\.(ln1|ln2)\.weight$|^ln_f\.weight$/.test(name)) out.fill(1);
    return out;
  }
}

/** int8 against float32 logits after a prefill and `steps` decode steps for 2 candidates (greedy). */
async function int8Agreement(config: DalleConfig, session: SessionOptions, steps: number) {
  const source = new FastRandomWeights(config);
  const [a, b] = await Promise.all([
    DalleRunner.create(config, prepareDalleWeights(config, source), { candidates: 2, session }),
    DalleRunner.create(config, prepareDalleWeights(config, source, { precision: 'int8' }), {
      candidates: 2,
      session,
    }),
  ]);
  const V = config.vocab_size_img;
  try {
    const text = Array.from({ length: config.ctx_len_txt }, (_, i) => (i * 31) % config.vocab_size_txt);
    const pairs = [{ ref: await a.prefill(text), got: await b.prefill(text) }];
    for (let j = 0; j < steps; j++) {
      const prev = pairs[pairs.length - 1]!.ref;
      const tokens = [0, 1].map((n) => {
        const row = prev.length === V ? prev : prev.subarray(n * V, (n + 1) * V);
        return (row.indexOf(Math.max(...row)) + n * 17) % V;
      });
      pairs.push({ ref: await a.step(tokens), got: await b.step(tokens) });
    }
    return compareLogits(pairs, V, 5);
  } finally {
    await Promise.all([a.release(), b.release()]);
  }
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** One decode configuration timed in the interleaved rounds. */
interface Variant {
  readonly name: string;
  readonly precision: Precision;
  readonly batch: number;
  readonly build: BuildOptions;
}

export const dalleBench: BenchModule = {
  name: 'dalle',
  description:
    'minDALL-E stage 2: prefill, decode steps at batch 1 and 8, weight-streaming floor, fp32 and int8',
  async run(args): Promise<BenchResult> {
    const o = parseArgs(args);
    const config = o.size === 'full' ? minDalle13BConfig() : tinyDalleConfig(390, 389);
    const session = { intraOpThreads: o.threads, interOpThreads: 1 };
    const source = new FastRandomWeights(config);
    const text = Array.from({ length: config.ctx_len_txt }, (_, i) => (i * 31) % config.vocab_size_txt);
    const weights = new Map<Precision, DalleWeights>();
    const prepareMs: Record<string, number> = {};
    for (const p of o.precisions) {
      const t0 = performance.now();
      weights.set(p, prepareDalleWeights(config, source, { precision: p }));
      prepareMs[p] = performance.now() - t0;
    }
    const bytesOf = (p: Precision) =>
      streamedWeights(weights.get(p)!).reduce((a, [, w]) => a + w.data.byteLength, 0);
    // The floor: one pass over every float32 weight the decode step reads (ORT's ReduceMax over int8
    // runs at a fraction of the memory bandwidth, so int8's floor is its bytes at this rate).
    const stream = await streamingSession(weights.get('fp32') ?? weights.get('int8')!, session);
    // Groups timed one after another, each interleaved with the streaming pass and released before
    // the next (int8 sessions hold their packed weights: all at once would not fit in 24 GB).
    const groups: Variant[][] = [];
    if (o.precisions.includes('fp32')) {
      groups.push([
        { name: 'fp32 batch 1', precision: 'fp32', batch: 1, build: {} },
        { name: 'fp32 batch 1, (W x^T)^T (before)', precision: 'fp32', batch: 1, build: { matVec: false } },
      ]);
      groups.push([{ name: 'fp32 batch 8', precision: 'fp32', batch: 8, build: {} }]);
    }
    if (o.precisions.includes('int8')) {
      groups.push([
        { name: 'int8 batch 1', precision: 'int8', batch: 1, build: {} },
        {
          name: 'int8 batch 1, weights as inputs',
          precision: 'int8',
          batch: 1,
          build: { int8Constants: false },
        },
      ]);
      groups.push([{ name: 'int8 batch 8', precision: 'int8', batch: 8, build: {} }]);
    }
    const rows: Row[] = [];
    const notes: string[] = [];
    const prefillMs: Record<string, number> = {};
    const step: Record<string, number> = {};
    const streams: Timing[] = [];
    const loadBefore = load();
    try {
      for (const group of groups) {
        const runners: DalleRunner[] = [];
        try {
          for (const v of group) {
            runners.push(
              await DalleRunner.create(config, weights.get(v.precision)!, {
                candidates: v.batch,
                session,
                build: v.build,
              }),
            );
          }
          const pre = await measureInterleaved(
            runners.map((r) => () => r.prefill(text)),
            { warmup: 1, reps: 3 },
          );
          for (const r of runners) await r.prefill(text);
          // Steps move the position on: at most ctx_len_img - 1 of them per prefill.
          const reps = Math.min(o.steps, config.ctx_len_img - 4);
          const timings = await measureInterleaved(
            [
              () => stream.s.run(stream.feeds),
              ...runners.map((r, k) => () => r.step(Array.from({ length: group[k]!.batch }, (_, i) => i))),
            ],
            { warmup: 2, reps, maxReps: reps },
          );
          const streamT = timings[0]!;
          streams.push(streamT);
          for (const [k, v] of group.entries()) {
            const t = timings[k + 1]!;
            step[v.name] = t.medianMs;
            prefillMs[v.name] = pre[k]!.medianMs;
            const floorRatio = bytesOf(v.precision) / stream.bytes;
            rows.push({
              name: v.name,
              cells: {
                'prefill ms': pre[k]!.medianMs,
                'step ms': t.medianMs,
                'step min ms': t.minMs,
                'tokens/s': (v.batch * 1000) / t.medianMs,
                'stream ms': streamT.medianMs,
                // Per round, against the streaming pass timed just before it.
                'x own floor': pairedMedian(t, streamT, (a, b) => a / (b * floorRatio)),
                'x fp32 floor': pairedMedian(t, streamT, (a, b) => a / b),
              },
            });
          }
        } finally {
          for (const r of runners) await r.release();
        }
      }
      const all = streams.flatMap((t) => t.samplesMs);
      const gbps = stream.bytes / 1e6 / summarize(all).medianMs;
      for (const p of o.precisions) {
        rows.push({
          name: `${p} floor: ${(bytesOf(p) / 1e9).toFixed(2)} GB at ${gbps.toFixed(1)} GB/s`,
          cells: { 'step ms': bytesOf(p) / 1e6 / gbps },
        });
        const image = (prefillMs[`${p} batch 1`]! + (config.ctx_len_img - 1) * step[`${p} batch 8`]!) / 1000;
        notes.push(
          `${p}: a ${config.ctx_len_img}-token image with 8 candidates ~${image.toFixed(1)} s (prefill + ${config.ctx_len_img - 1} steps at the measured batch-8 step); weights prepared in ${(prepareMs[p]! / 1000).toFixed(1)} s`,
        );
      }
      rows.push({
        name: 'fp32 weights once (ReduceSum, all rounds)',
        cells: { 'step ms': summarize(all).medianMs, 'GB/s': gbps },
      });
    } finally {
      await stream.s.release();
    }
    notes.push(
      `x own floor: step / (its weights' bytes at the streaming rate), median over rounds, each round's step against that round's streaming pass (goal <= 1.3 at batch 1)`,
      `load average (1, 5, 15 min) ${loadBefore} before the rounds, ${load()} after`,
    );
    const tables = [
      { title: `minDALL-E ${o.size}, ${o.threads} threads, ${o.steps} interleaved rounds`, rows },
    ];
    const details: Record<string, unknown> = { config, rows };
    if (o.accuracy !== 'none') {
      const ac = o.accuracy === 'mid' ? midDalleConfig() : tinyDalleConfig(390, 389);
      const r = await int8Agreement(ac, session, 12);
      tables.push({
        title: `int8 vs fp32 next-token logits, ${o.accuracy} random model (${ac.n_layers} x ${ac.embed_dim}, vocab ${ac.vocab_size_img}), prefill + 12 steps, 2 candidates`,
        rows: [
          {
            name: 'int8',
            cells: {
              'max |dlogit| / max |logit| %': 100 * r.maxRelError,
              'top-1 agree': r.top1,
              'top-5 overlap': r.topkOverlap,
              rows: r.rows,
            },
          },
        ],
      });
      details.int8Agreement = r;
    }
    return { tables, notes, details };
  },
};
