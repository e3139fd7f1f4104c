// Ready for CUDA: every op (domain, opset, input and output types) that the step, CLIP, VQGAN and
// minDALL-E graphs hand to onnxruntime has a kernel in the CUDA execution provider's published kernel table
// (test/fixtures/ort-cuda-kernels.md, the rows we use, with its source named in its header). An op
// without one would make ORT place that node on the CPU and copy its tensors across every step.
// No GPU is needed: the graphs are built and serialised here, and only the table is consulted.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { loadDalleConfig } from '../../../src/worker/dalle/config.js';
import { buildDecodeStep, buildPrefill, prepareDalleWeights } from '../../../src/worker/dalle/transformer.js';
import { stepGraph } from '../../../src/worker/generate/step-graph.js';
import { grad } from '../../../src/worker/graph/autodiff.js';
import {
  type DType,
  type EmitOptions,
  Graph,
  ONNX_DTYPE,
  type Tensor,
} from '../../../src/worker/graph/graph.js';
import { mul } from '../../../src/worker/graph/ops/elementwise.js';
import { reduceSum } from '../../../src/worker/graph/ops/reduce.js';
import { concat, split } from '../../../src/worker/graph/ops/shape.js';
import { asin } from '../../../src/worker/graph/ops/trig.js';
import { DOMAIN_OPSETS, serialize } from '../../../src/worker/graph/serialize.js';
import { clipText, clipVision } from '../../../src/worker/models/clip.js';
import { vqganDecode, vqganEncode, vqganQuantize } from '../../../src/worker/models/vqgan.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { tinyModels } from '../generate/tiny-models.js';

// ---- the kernel table -------------------------------------------------------------------------

/** One row of the table: a registered kernel for an op over an opset range. */
interface KernelRow {
  readonly domain: string;
  readonly op: string;
  readonly from: number;
  readonly to: number;
  /** Constraint name -> the ONNX types it admits, e.g. T -> ['tensor(float)', ...]. */
  readonly types: ReadonlyMap<string, readonly string[]>;
  /** Per signature variant ("or" in the table): the inputs' and outputs' constraint names or literal types. */
  readonly signatures: readonly { readonly inputs: readonly string[]; readonly outputs: readonly string[] }[];
}

/**
 * Parses the rows of OperatorKernels.md's format (gen_opkernel_doc.py): `|Op|params|range|types|`,
 * continuation rows `|||range|types|` for older opsets of the same op, domain rows
 * `|**Operator Domain:** *ai.onnx*||||`. Parameters look like `*in* X:**T**<br> *out* Y:**T**`, with
 * variants joined by `<br><br>or<br><br>`; a range is `13+`, `[7, 12]` or `12`.
 */
function parseKernelTable(markdown: string): KernelRow[] {
  const rows: KernelRow[] = [];
  let domain = '';
  let op = '';
  let signatures: KernelRow['signatures'] = [];
  let provider = '';
  for (const line of markdown.split('\n')) {
    const section = /^## Operators implemented by (\w+)/.exec(line);
    if (section) {
      provider = section[1]!;
      continue;
    }
    if (provider !== 'CUDAExecutionProvider') continue;
    const domainMatch = /^\|\*\*Operator Domain:\*\* \*([^*]+)\*\|/.exec(line);
    if (domainMatch) {
      domain = domainMatch[1] === 'ai.onnx' ? '' : domainMatch[1]!;
      continue;
    }
    if (!line.startsWith('|') || /^\|\s*Op Name|^\|-/.test(line)) continue;
    const cells = line.split('|').slice(1, -1);
    if (cells.length !== 4) continue;
    const [name, params, range, types] = cells as [string, string, string, string];
    if (name !== '') {
      op = name;
      signatures = params.split('<br><br>or<br><br>').map((variant) => {
        const inputs: string[] = [];
        const outputs: string[] = [];
        for (const m of variant.matchAll(/\*(in|out)\* [^:]+:\*\*([^*]+)\*\*/g)) {
          (m[1] === 'in' ? inputs : outputs).push(m[2]!);
        }
        return { inputs, outputs };
      });
    }
    if (op === '' || range.trim() === '') continue;
    const r = range.trim();
    let from: number;
    let to: number;
    if (r.endsWith('+')) [from, to] = [Number(r.slice(0, -1)), Number.POSITIVE_INFINITY];
    else if (r.startsWith('[')) [from, to] = r.slice(1, -1).split(',').map(Number) as [number, number];
    else from = to = Number(r);
    if (!Number.isFinite(from) || Number.isNaN(to))
      throw new Error(`kernel table: bad opset range "${r}" of ${op}`);
    const typeMap = new Map<string, string[]>();
    for (const part of types.split('<br/>')) {
      const m = /\*\*([^*]+)\*\* = (.*)$/.exec(part.trim());
      if (m)
        typeMap.set(
          m[1]!,
          m[2]!.split(', ').map((s) => s.trim()),
        );
    }
    rows.push({ domain, op, from, to, types: typeMap, signatures });
  }
  return rows;
}

// ---- the graphs -------------------------------------------------------------------------------

/** A Graph that remembers the dtype of every node output (ONNX models carry none for them). */
class TypedGraph extends Graph {
  readonly dtypes = new Map<string, DType>();
  override emit(opType: string, inputs: readonly (Tensor | undefined)[], options: EmitOptions): Tensor[] {
    const out = super.emit(opType, inputs, options);
    for (const t of out) this.dtypes.set(t.name, t.dtype);
    return out;
  }
}

const ONNX_TYPE_NAME = new Map(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));
const TABLE_TYPE: Record<DType, string> = {
  float32: 'tensor(float)',
  int64: 'tensor(int64)',
  int32: 'tensor(int32)',
  bool: 'tensor(bool)',
  float16: 'tensor(float16)',
  uint8: 'tensor(uint8)',
  int8: 'tensor(int8)',
};

/** One node as ORT sees it. */
interface NodeUse {
  readonly graph: string;
  readonly domain: string;
  readonly op: string;
  readonly opset: number;
  /** '' for an absent optional input. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

const root = protobuf.parse(
  `syntax = "proto3"; package onnx;
   message NodeProto { repeated string input = 1; repeated string output = 2; string op_type = 4; string domain = 7; }
   message TensorProto { int32 data_type = 2; string name = 8; }
   message TypeProto { message Tensor { int32 elem_type = 1; } Tensor tensor_type = 1; }
   message ValueInfoProto { string name = 1; TypeProto type = 2; }
   message GraphProto { repeated NodeProto node = 1; repeated TensorProto initializer = 5; repeated ValueInfoProto input = 11; }
   message OperatorSetIdProto { string domain = 1; int64 version = 2; }
   message ModelProto { GraphProto graph = 7; repeated OperatorSetIdProto opset_import = 8; }`,
  { keepCase: true },
).root;
const ModelProto = root.lookupType('onnx.ModelProto');

interface DecodedModel {
  graph: {
    node: { input?: string[]; output?: string[]; op_type: string; domain?: string }[];
    initializer?: { data_type: number; name: string }[];
    input?: { name: string; type: { tensor_type: { elem_type: number } } }[];
  };
  opset_import: { domain?: string; version: number | { toNumber(): number } }[];
}

/** The nodes of the serialised model (what ORT loads, dead code dropped), with their tensors' types. */
function nodeUses(name: string, g: TypedGraph, outputs: Record<string, Tensor>): NodeUse[] {
  const bytes = serialize(g, { outputs, name }).bytes;
  const model = ModelProto.toObject(ModelProto.decode(bytes), { defaults: true }) as unknown as DecodedModel;
  const types = new Map<string, string>();
  for (const init of model.graph.initializer ?? []) {
    types.set(init.name, TABLE_TYPE[ONNX_TYPE_NAME.get(init.data_type)!]);
  }
  for (const inp of model.graph.input ?? []) {
    types.set(inp.name, TABLE_TYPE[ONNX_TYPE_NAME.get(inp.type.tensor_type.elem_type)!]);
  }
  for (const [n, d] of g.dtypes) types.set(n, TABLE_TYPE[d]);
  const opsets = new Map(
    model.opset_import.map((o) => [
      o.domain ?? '',
      typeof o.version === 'number' ? o.version : o.version.toNumber(),
    ]),
  );
  const typeOf = (t: string) => {
    if (t === '') return '';
    const ty = types.get(t);
    if (!ty) throw new Error(`${name}: no type known for tensor "${t}"`);
    return ty;
  };
  return model.graph.node.map((n) => {
    const inputs = (n.input ?? []).map(typeOf);
    // Serialize's output-renaming Identity nodes have their input's type.
    for (const o of n.output ?? []) if (!types.has(o)) types.set(o, inputs[0]!);
    return {
      graph: name,
      domain: n.domain ?? '',
      op: n.op_type,
      opset: opsets.get(n.domain ?? '')!,
      inputs,
      outputs: (n.output ?? []).map(typeOf),
    };
  });
}

/** Does `row` admit these input and output types (in one of its signature variants)? */
function admits(row: KernelRow, use: NodeUse): boolean {
  const fits = (declared: readonly string[], actual: readonly string[]) =>
    actual.every((ty, i) => {
      if (ty === '') return true; // an optional input left out
      // A variadic last parameter (Concat's inputs, Sum's data_0) stands for the rest.
      const c = declared[Math.min(i, declared.length - 1)];
      if (c === undefined) return false;
      if (c.startsWith('tensor(')) return c === ty;
      return row.types.get(c)?.includes(ty) ?? false;
    });
  return row.signatures.some((s) => fits(s.inputs, use.inputs) && fits(s.outputs, use.outputs));
}

/**
 * The rows that cover a node: its domain and op, an opset range holding the model's opset for that
 * domain, and its types. ORT picks a kernel by the op's since-version at that opset; the table's
 * ranges for an op are contiguous from its first registration on, so the range holding the opset
 * is the one holding the since-version too.
 */
function kernelFor(table: readonly KernelRow[], use: NodeUse): KernelRow | undefined {
  return table.find(
    (r) =>
      r.domain === use.domain &&
      r.op === use.op &&
      r.from <= use.opset &&
      use.opset <= r.to &&
      admits(r, use),
  );
}

const describeUse = (u: NodeUse) =>
  `${u.domain || 'ai.onnx'}:${u.op}-${u.opset}(${u.inputs.map((t) => t || '-').join(', ')}) -> (${u.outputs.join(', ')})`;

const tableText = readFileSync(join(import.meta.dirname, '../../fixtures/ort-cuda-kernels.md'), 'utf8');
const table = parseKernelTable(tableText);

/** Every graph the worker builds for a generation or for /whatis, on the tiny models. */
function allGraphs(): NodeUse[] {
  const models = tinyModels();
  const uses: NodeUse[] = [];
  for (const spec of [
    { quantize: true, initImage: true, clampGradient: 'through' as const },
    { quantize: false, initImage: false, clampGradient: 'exact' as const },
  ]) {
    const g = new TypedGraph();
    const step = stepGraph(models, { width: 64, height: 64, cutouts: 3, prompts: 2, ...spec }, g);
    uses.push(...nodeUses(`step ${JSON.stringify(spec)}`, g, step.outputs));
  }
  const clip = models.clip;
  const S = clip.config.vision_config.image_size;
  {
    const g = new TypedGraph();
    const out = clipVision(g, g.input('pixels', [2, 3, S, S]), clip.config, clip.weights);
    uses.push(...nodeUses('clip vision', g, { embeds: out.embeds }));
  }
  {
    const g = new TypedGraph();
    const out = clipText(g, g.input('ids', [2, 77], 'int64'), clip.config, clip.weights);
    uses.push(...nodeUses('clip text', g, { embeds: out.embeds }));
  }
  const vq = models.vqgan;
  {
    const g = new TypedGraph();
    const x = g.input('pixels', [1, 3, 64, 64]);
    const z = vqganEncode(g, x, vq.config, vq.weights);
    const q = vqganQuantize(g, z, vq.config, vq.weights);
    const image = vqganDecode(g, q.quantized, vq.config, vq.weights);
    uses.push(...nodeUses('vqgan encode+quantize+decode', g, { z, indices: q.indices, decoded: image }));
  }
  return uses;
}

describe('CUDA kernels for our graphs (onnxruntime kernel table)', () => {
  it('parses the fixture: both domains, ranges and type constraints', () => {
    const conv = table.filter((r) => r.op === 'Conv' && r.domain === '');
    expect(conv.length).toBeGreaterThan(0);
    expect(conv.some((r) => r.from <= 18 && 18 <= r.to && r.types.get('T')?.includes('tensor(float)'))).toBe(
      true,
    );
    expect(table.some((r) => r.domain === 'com.microsoft')).toBe(true);
    // Rows of every op are in the CUDA section only: the CPU provider's Asin must not leak in.
    expect(table.some((r) => r.op === 'Asin')).toBe(false);
    expect(tableText).toMatch(/CUDAExecutionProvider/);
  });

  it('every op of the step, CLIP and VQGAN graphs has a CUDA kernel for its opset and types', () => {
    const uses = allGraphs();
    const seen = new Map<string, NodeUse>();
    for (const u of uses) seen.set(describeUse(u), u);
    const missing = [...seen.entries()].filter(([, u]) => !kernelFor(table, u)).map(([k]) => k);
    expect(missing).toEqual([]);
    // The step graph holds the generator's whole forward and backward: it must have been looked at.
    const ops = new Set(uses.map((u) => u.op));
    for (const op of [
      'Conv',
      'LayerNormalization',
      'BatchNormalization',
      'MatMul',
      // The decoder's upsampling (upsampleConv3x3): phase convs interleaved by DepthToSpace.
      'DepthToSpace',
    ]) {
      expect(ops.has(op), op).toBe(true);
    }
  });

  it('so does every op of minDALL-E prefill and decode step (tiny fixture weights)', async () => {
    const dir = join(import.meta.dirname, '../../fixtures/reference/mindalle-tiny');
    const config = await loadDalleConfig(dir);
    const model = Weights.fromFile(join(dir, 'model.safetensors'));
    const weights = prepareDalleWeights(config, model);
    model.close();
    const uses: NodeUse[] = [];
    {
      const g = new TypedGraph();
      const p = buildPrefill(g, config, weights, 2);
      uses.push(
        ...nodeUses('dalle prefill', g, { logits: p.logits, k: p.presentKeys[0]!, v: p.presentValues[0]! }),
      );
    }
    {
      const g = new TypedGraph();
      const d = buildDecodeStep(g, config, weights, 2);
      uses.push(
        ...nodeUses('dalle decode', g, { logits: d.logits, k: d.presentKeys[0]!, v: d.presentValues[0]! }),
      );
    }
    expect([...new Set(uses.filter((u) => !kernelFor(table, u)).map(describeUse))]).toEqual([]);
  });

  it('asin is built from ops with CUDA kernels (ONNX Asin has none)', () => {
    const g = new TypedGraph();
    const x = g.input('x', [4]);
    const y = asin(x);
    const [gx] = grad(y, [x], { seed: g.input('gy', [4]) });
    const uses = nodeUses('asin', g, { y, gx: gx! });
    expect(uses.map((u) => u.op)).not.toContain('Asin');
    expect(uses.filter((u) => !kernelFor(table, u)).map(describeUse)).toEqual([]);
  });

  it("run-time zeros (ConstantOfShape) and split's VJP have CUDA kernels", () => {
    const g = new TypedGraph();
    const x = g.input('x', [4, 4]);
    const unused = g.input('unused', [5]);
    const [, b, c] = split(x, [1, 1, 2], 0);
    const [gx, gu] = grad(reduceSum(mul(concat([c!, b!], 0), 2)), [x, unused]);
    const [gx1] = grad(reduceSum(split(x, [1, 3], 0)[1]!), [x]);
    const uses = nodeUses('zeros', g, { gx: gx!, gu: gu!, gx1: gx1! });
    expect(uses.map((u) => u.op)).toContain('ConstantOfShape');
    expect(uses.filter((u) => !kernelFor(table, u)).map(describeUse)).toEqual([]);
  });

  it('a contrib op without a CUDA kernel is reported: the int8 image tower is CPU-only', () => {
    const models = tinyModels();
    const S = models.clip.config.vision_config.image_size;
    const g = new TypedGraph();
    const out = clipVision(g, g.input('pixels', [1, 3, S, S]), models.clip.config, models.clip.weights, {
      precision: 'int8',
    });
    const missing = new Set(
      nodeUses('clip vision int8', g, { embeds: out.embeds })
        .filter((u) => !kernelFor(table, u))
        .map((u) => `${u.domain}:${u.op}`),
    );
    // CLIP_IMAGE_PRECISION=int8 is a CPU option (onnxruntime's CUDA provider has no
    // DynamicQuantizeMatMul); on a GPU the fp32 tower is the one to run.
    expect([...missing]).toEqual(['com.microsoft:DynamicQuantizeMatMul']);
    expect(DOMAIN_OPSETS['com.microsoft']).toBe(1);
  });
});
