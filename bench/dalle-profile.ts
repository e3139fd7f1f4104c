// One minDALL-E decode step profiled by op type with ORT's profiler (bench/README.md, dalle):
//   npx tsx bench/dalle-profile.ts [--size=full|tiny] [--batch=1] [--threads=2] [--runs=4]
// Kernel milliseconds per op type (averaged over the runs after the first), beside the bytes of
// weights each op type reads, so the time beyond streaming the weights shows where it goes.
import { loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { minDalle13BConfig, tinyDalleConfig } from '../src/worker/dalle/config.js';
import {
  buildDecodeStep,
  cacheKeyName,
  cacheLength,
  cacheValueName,
  prepareDalleWeights,
} from '../src/worker/dalle/transformer.js';
import { Graph, type Tensor } from '../src/worker/graph/graph.js';
import { serialize } from '../src/worker/graph/serialize.js';
import { FastRandomWeights } from './dalle.js';
import { formatTable } from './lib.js';
import { profileKernels } from './ort-profile.js';

const opt = (args: readonly string[], name: string, dflt: string) =>
  args.find((x) => x.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;

async function main(args: readonly string[]): Promise<void> {
  const size = opt(args, 'size', 'full');
  const batch = Number(opt(args, 'batch', '1'));
  const threads = Number(opt(args, 'threads', '2'));
  const runs = Number(opt(args, 'runs', '4'));
  const c = size === 'full' ? minDalle13BConfig() : tinyDalleConfig(390, 389);
  const weights = prepareDalleWeights(c, new FastRandomWeights(c));
  const g = new Graph();
  const d = buildDecodeStep(g, c, weights, batch);
  const outputs: Record<string, Tensor> = { logits: d.logits };
  for (const [i, t] of d.presentKeys.entries()) outputs[`present_key.${i}`] = t;
  for (const [i, t] of d.presentValues.entries()) outputs[`present_value.${i}`] = t;
  const bytes = serialize(g, { outputs, name: 'mindalle_decode' }).bytes;
  const hd = c.embed_dim / c.n_heads;
  const s = cacheLength(c);
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, w] of weights)
    if (g.inputs.some((i) => i.name === name)) feeds[name] = new ort.Tensor(w.data, [...w.dims]);
  for (let l = 0; l < c.n_layers; l++) {
    feeds[cacheKeyName(l)] = new ort.Tensor(new Float32Array(batch * c.n_heads * hd * s), [
      batch,
      c.n_heads,
      hd,
      s,
    ]);
    feeds[cacheValueName(l)] = new ort.Tensor(new Float32Array(batch * c.n_heads * hd * s), [
      batch,
      c.n_heads,
      s,
      hd,
    ]);
  }
  feeds.token = new ort.Tensor(
    BigInt64Array.from({ length: batch }, (_, i) => BigInt(i)),
    [batch, 1],
  );
  feeds.position = new ort.Tensor(new BigInt64Array([BigInt(c.ctx_len_img >> 1)]), [1]);
  const load0 = loadavg()[0]!;
  const t0 = performance.now();
  const kernels = await profileKernels(bytes, feeds, {
    threads,
    dir: '/tmp/dalle-profile',
    tag: `decode_${size}_${batch}`,
    runs,
  });
  const wallMs = (performance.now() - t0) / runs;
  const byOp = new Map<string, { ms: number; nodes: number }>();
  for (const k of kernels) {
    const r = byOp.get(k.op) ?? { ms: 0, nodes: 0 };
    r.ms += k.ms;
    r.nodes++;
    byOp.set(k.op, r);
  }
  const total = kernels.reduce((a, k) => a + k.ms, 0);
  const rows = [...byOp]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([op, r]) => ({
      name: op,
      cells: { 'ms/step': r.ms, share: r.ms / total, kernels: r.nodes / Math.max(runs - 1, 1) },
    }));
  rows.push({
    name: 'all kernels',
    cells: { 'ms/step': total, share: 1, kernels: kernels.length / Math.max(runs - 1, 1) },
  });
  console.log(formatTable(rows));
  const top = [...kernels].sort((a, b) => b.ms - a.ms).slice(0, 12);
  for (const k of top) console.log(`${k.op.padEnd(20)} ${k.node.padEnd(50)} ${k.ms.toFixed(2)} ms`);
  console.log(
    `wall per run (incl. first) ${wallMs.toFixed(0)} ms; load ${load0.toFixed(2)} -> ${loadavg()[0]!.toFixed(2)}`,
  );
}

await main(process.argv.slice(2));
