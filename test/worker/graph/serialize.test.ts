// serialize(): the ONNX bytes load in ORT and compute the graph's values; outputs can be renamed,
// repeated, be inputs or constants; dead nodes, initializers and inputs are left out (checked by
// decoding the bytes with an independent protobuf schema); a model over 100 MB loads and runs.
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';
import { mulberry32, randomArray } from '../../helpers/random.js';

// Field numbers from onnx/onnx.proto, written here so the check does not trust serialize.ts.
const DecodeRoot = protobuf.parse(
  `syntax = "proto3"; package check;
  message Node { repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4; }
  message Tensor { repeated int64 dims = 1; int32 data_type = 2; string name = 8; bytes raw_data = 9; }
  message ValueInfo { string name = 1; }
  message Graph { repeated Node node = 1; repeated Tensor initializer = 5; repeated ValueInfo input = 11; repeated ValueInfo output = 12; }
  message OpsetId { string domain = 1; int64 version = 2; }
  message Model { int64 ir_version = 1; Graph graph = 7; repeated OpsetId opset_import = 8; }`,
  { keepCase: true },
).root;

interface Decoded {
  graph: {
    node?: { op_type: string; input?: string[]; output?: string[] }[];
    initializer?: { name: string; raw_data?: Uint8Array }[];
    input?: { name: string }[];
    output?: { name: string }[];
  };
}

function decode(bytes: Uint8Array): Decoded {
  const Model = DecodeRoot.lookupType('check.Model');
  return Model.toObject(Model.decode(bytes), { arrays: true }) as Decoded;
}

async function runModel(bytes: Uint8Array, feeds: Record<string, { data: Float32Array; dims: number[] }>) {
  const session = await ModelSession.create(bytes, { intraOpThreads: 1 });
  try {
    const out = await session.run(feeds);
    return {
      names: session.outputNames,
      values: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data, Number)])),
    };
  } finally {
    await session.release();
  }
}

const rand = mulberry32(5);
const X = randomArray(rand, 6);
const W = randomArray(rand, 12);
const B = randomArray(rand, 4);

/** softmax(x W + b) in float64 for x [2, 3], W [3, 4], b [4]. */
function refSoftmaxLinear(): number[] {
  const out: number[] = [];
  for (let i = 0; i < 2; i++) {
    const row = Array.from({ length: 4 }, (_, j) => {
      let s = B[j]!;
      for (let k = 0; k < 3; k++) s += X[i * 3 + k]! * W[k * 4 + j]!;
      return s;
    });
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((v) => v / z));
  }
  return out;
}

function closeTo(got: readonly number[], want: readonly number[], tol = 1e-6): void {
  expect(got.length).toBe(want.length);
  got.forEach((v, i) => {
    expect(Math.abs(v - want[i]!), `element ${i}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(want[i]!)));
  });
}

function smallGraph() {
  const g = new G.Graph();
  const x = g.input('x', [2, 3]);
  const w = g.constant(W, [3, 4], { name: 'w' });
  const b = g.constant(B, [4], { name: 'b' });
  const y = G.softmax(G.add(G.matmul(x, w), b), -1);
  return { g, x, w, b, y };
}

const feedX = { x: { data: X, dims: [2, 3] } };

describe('serialize', () => {
  it('writes bytes that ORT loads and that compute the graph values', async () => {
    const { g, y } = smallGraph();
    const model = G.serialize(g, { outputs: [y] });
    expect(model.inputNames).toEqual(['x']);
    expect(model.outputNames).toEqual([y.name]);
    const { values } = await runModel(model.bytes, feedX);
    closeTo(values[y.name]!, refSoftmaxLinear());
  });

  it('names outputs by the keys of a record', async () => {
    const { g, y } = smallGraph();
    const model = G.serialize(g, { outputs: { probs: y } });
    expect(model.outputNames).toEqual(['probs']);
    const { names, values } = await runModel(model.bytes, feedX);
    expect(names).toEqual(['probs']);
    closeTo(values.probs!, refSoftmaxLinear());
  });

  it('returns an input directly, under its own name or a new one', async () => {
    const { g, x, y } = smallGraph();
    const listed = G.serialize(g, { outputs: [x, y] });
    expect(listed.outputNames).toEqual(['x', y.name]);
    const a = await runModel(listed.bytes, feedX);
    closeTo(a.values.x!, Array.from(X), 0);
    const renamed = G.serialize(g, { outputs: { echo: x } });
    expect(renamed.inputNames).toEqual(['x']);
    const b = await runModel(renamed.bytes, feedX);
    expect(b.names).toEqual(['echo']);
    closeTo(b.values.echo!, Array.from(X), 0);
  });

  it('writes the same tensor twice under two names', async () => {
    const { g, y } = smallGraph();
    const rec = await runModel(G.serialize(g, { outputs: { first: y, second: y } }).bytes, feedX);
    expect(rec.names).toEqual(['first', 'second']);
    closeTo(rec.values.first!, refSoftmaxLinear());
    closeTo(rec.values.second!, refSoftmaxLinear());
    // Listed twice in an array, the second copy gets a fresh name.
    const model = G.serialize(g, { outputs: [y, y] });
    expect(new Set(model.outputNames).size).toBe(2);
    const arr = await runModel(model.bytes, feedX);
    for (const name of model.outputNames) closeTo(arr.values[name]!, refSoftmaxLinear());
  });

  it('writes a constant as an output', async () => {
    const { g, w, y } = smallGraph();
    const model = G.serialize(g, { outputs: { table: w, w, y } });
    const { names, values } = await runModel(model.bytes, feedX);
    expect(names).toEqual(['table', 'w', 'y']);
    closeTo(values.table!, Array.from(W), 0);
    closeTo(values.w!, Array.from(W), 0);
  });

  it('refuses an output name that another tensor already has', () => {
    const { g, y } = smallGraph();
    expect(() => G.serialize(g, { outputs: { x: y } })).toThrow(G.GraphError);
    expect(() => G.serialize(g, { outputs: { b: y } })).toThrow(/"b".*already the name of another tensor/);
    expect(() => G.serialize(g, { outputs: [] })).toThrow(G.GraphError);
    const other = new G.Graph().input('x', [1]);
    expect(() => G.serialize(g, { outputs: { o: other } })).toThrow(/another graph/);
  });

  it('drops nodes, initializers and inputs the outputs do not need', async () => {
    const { g, x, y } = smallGraph();
    const unused = g.input('unused', [5]);
    const deadW = g.constant(new Float32Array(3 * 1000).fill(0.5), [3, 1000], { name: 'dead_w' });
    const dead = G.tanh(G.matmul(G.exp(x), deadW));
    G.sigmoid(unused);
    const full = G.serialize(g, { outputs: { y, dead } });
    const model = G.serialize(g, { outputs: { y } });
    const d = decode(model.bytes);
    const ops = (d.graph.node ?? []).map((n) => n.op_type);
    expect(ops).not.toContain('Exp');
    expect(ops).not.toContain('Tanh');
    expect(ops).not.toContain('Sigmoid');
    expect(ops).toContain('Softmax');
    expect((d.graph.initializer ?? []).map((i) => i.name).sort()).toEqual(['b', 'w']);
    expect((d.graph.input ?? []).map((i) => i.name)).toEqual(['x']);
    expect((d.graph.output ?? []).map((o) => o.name)).toEqual(['y']);
    // The 12 kB dead weight is gone from the bytes, but present when `dead` is an output.
    expect(model.bytes.length).toBeLessThan(1000);
    expect(full.bytes.length).toBeGreaterThan(12_000);
    expect(decode(full.bytes).graph.initializer?.map((i) => i.name)).toContain('dead_w');
    const { values } = await runModel(model.bytes, feedX);
    closeTo(values.y!, refSoftmaxLinear());
  });

  it('builds, writes and runs a model with over 100 MB of float32 weights', async () => {
    const n = 4096;
    // Seeded small integers over 256: exact in float32, and not periodic, so sums do not cancel.
    const r = mulberry32(17);
    const w1 = new Float32Array(n * n);
    const w2 = new Float32Array(n * n);
    for (let i = 0; i < n * n; i++) {
      w1[i] = (Math.floor(r() * 13) - 6) / 256;
      w2[i] = (Math.floor(r() * 11) - 5) / 256;
    }
    const x = Float32Array.from({ length: n }, () => (Math.floor(r() * 7) - 3) / 8);
    const g = new G.Graph();
    const xin = g.input('x', [1, n]);
    const y = G.matmul(
      G.matmul(xin, g.constant(w1, [n, n], { name: 'w1' })),
      g.constant(w2, [n, n], { name: 'w2' }),
    );
    const model = G.serialize(g, { outputs: { y } });
    expect(model.bytes.length).toBeGreaterThan(2 * n * n * 4);
    const session = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await session.run({ x: { data: x, dims: [1, n] } });
    await session.release();
    const got = out.y!.data as Float32Array;
    expect(got.length).toBe(n);
    // h = x W1 in float64, then a few elements of y = h W2.
    const h = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const xi = x[i]!;
      if (xi === 0) continue;
      for (let k = 0; k < n; k++) h[k]! += xi * w1[i * n + k]!;
    }
    for (const j of [0, 1234, n - 1]) {
      let want = 0;
      let scale = 0;
      for (let k = 0; k < n; k++) {
        want += h[k]! * w2[k * n + j]!;
        scale += Math.abs(h[k]! * w2[k * n + j]!);
      }
      expect(Math.abs(got[j]! - want), `y[${j}] = ${got[j]} vs ${want}`).toBeLessThanOrEqual(1e-5 * scale);
      expect(scale).toBeGreaterThan(1);
    }
  });

  it('imports the opset of each extension domain that a kept node uses, and refuses unknown domains', () => {
    const Model = DecodeRoot.lookupType('check.Model');
    const opsets = (bytes: Uint8Array) =>
      (Model.toObject(Model.decode(bytes), { longs: Number, defaults: true }) as { opset_import: unknown[] })
        .opset_import;
    const g = new G.Graph();
    const x = g.input('x', [2]);
    const [q] = g.emit('QuickGelu', [x], {
      domain: 'com.microsoft',
      outputs: [{ shape: [2], dtype: 'float32' }],
    });
    const [odd] = g.emit('Thing', [x], {
      domain: 'org.example',
      outputs: [{ shape: [2], dtype: 'float32' }],
    });
    expect(opsets(G.serialize(g, { outputs: { y: G.exp(x) } }).bytes)).toEqual([{ domain: '', version: 18 }]);
    expect(opsets(G.serialize(g, { outputs: { q: q! } }).bytes)).toEqual([
      { domain: '', version: 18 },
      { domain: 'com.microsoft', version: 1 },
    ]);
    expect(() => G.serialize(g, { outputs: { odd: odd! } })).toThrow(
      /no opset version known for domain "org.example"/,
    );
  });
});
