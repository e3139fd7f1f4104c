// Turns a built Graph into ONNX ModelProto bytes for InferenceSession.create(bytes).
// Only the nodes and initializers that the chosen outputs need are written (dead code is
// dropped), so one Graph can serve several builds with different outputs.
import protobuf from 'protobufjs';
import {
  type Graph,
  GraphError,
  type Initializer,
  ONNX_DTYPE,
  type OnnxNode,
  type Tensor,
  type TensorData,
} from './graph.js';

// The subset of onnx.proto we write, with the field numbers of the official schema.
const ONNX_SCHEMA = `
syntax = "proto3";
package onnx;
message AttributeProto {
  string name = 1; float f = 2; int64 i = 3; bytes s = 4;
  repeated float floats = 7; repeated int64 ints = 8; int32 type = 20;
}
message NodeProto {
  repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4;
  repeated AttributeProto attribute = 5; string domain = 7;
}
message TensorProto {
  repeated int64 dims = 1; int32 data_type = 2; string name = 8; bytes raw_data = 9;
}
message TensorShapeProto { message Dimension { int64 dim_value = 1; } repeated Dimension dim = 1; }
message TypeProto { message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; } Tensor tensor_type = 1; }
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message GraphProto {
  repeated NodeProto node = 1; string name = 2; repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12;
}
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message ModelProto {
  int64 ir_version = 1; string producer_name = 2; GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`;

const root = protobuf.parse(ONNX_SCHEMA, { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');

const ATTR_TYPE = { float: 1, int: 2, string: 3, floats: 6, ints: 7 } as const;

export interface SerializeOptions {
  /** Graph outputs: tensors, named by key when given as a record. */
  readonly outputs: readonly Tensor[] | Readonly<Record<string, Tensor>>;
  /** @defaultValue 'graph' */
  readonly name?: string;
}

/** What `serialize` wrote, for callers that feed and fetch by name. */
export interface SerializedModel {
  readonly bytes: Uint8Array;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
}

export function serialize(graph: Graph, options: SerializeOptions): SerializedModel {
  const outputsIn = options.outputs;
  const outputList: [string, Tensor][] = Array.isArray(outputsIn)
    ? (outputsIn as readonly Tensor[]).map((t) => [t.name, t])
    : Object.entries(outputsIn as Record<string, Tensor>);
  if (outputList.length === 0) throw new GraphError('serialize: a model needs at least one output');

  // An output keeps its tensor's name when it can (ONNX and ORT accept node outputs, graph
  // inputs and initializers as graph outputs). Identity nodes give an output its own name where
  // it is renamed or listed a second time. A requested name that is already another tensor's
  // name would make an invalid model ("Duplicate definition"), so it is refused here.
  const extraNodes: { input: string; output: string }[] = [];
  const taken = new Map<string, string>();
  for (const t of graph.inputs) taken.set(t.name, `input ${t.name}`);
  for (const name of graph.initializers.keys()) taken.set(name, `constant ${name}`);
  for (const n of graph.nodes) for (const o of n.outputs) taken.set(o, `output of ${n.opType} (${n.name})`);
  const seen = new Set<string>();
  const outputs = outputList.map(([name, t]) => {
    if (t.graph !== graph) throw new GraphError(`serialize: output "${name}" belongs to another graph`);
    if (name !== t.name && taken.has(name)) {
      throw new GraphError(
        `serialize: output name "${name}" (for "${t.name}") is already the name of another tensor (${taken.get(name)})`,
      );
    }
    if (name !== t.name || seen.has(name)) {
      // Record keys are unique, so only a tensor listed twice in an array needs a fresh name.
      const outName = name === t.name ? graph.uniqueName(`${name}_out`) : name;
      extraNodes.push({ input: t.name, output: outName });
      seen.add(outName);
      return { name: outName, tensor: t };
    }
    seen.add(name);
    return { name, tensor: t };
  });

  // Dead-code elimination: keep nodes that the outputs need.
  const needed = new Set<string>(outputs.map((o) => o.tensor.name));
  const keep: boolean[] = new Array(graph.nodes.length).fill(false);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i]!;
    if (node.outputs.some((o) => needed.has(o))) {
      keep[i] = true;
      for (const inp of node.inputs) if (inp) needed.add(inp);
    }
  }
  const nodes = graph.nodes.filter((_, i) => keep[i]);
  const inputs = graph.inputs.filter((t) => needed.has(t.name));
  const initializers = [...graph.initializers.values()].filter((init) => needed.has(init.name));

  const message = {
    ir_version: 8,
    producer_name: 'vqclip-bot graph builder',
    opset_import: opsetImports(graph.opset, nodes),
    graph: {
      name: options.name ?? 'graph',
      node: [
        ...nodes.map((n) => ({
          input: n.inputs,
          output: n.outputs,
          name: n.name,
          op_type: n.opType,
          domain: n.domain,
          attribute: Object.entries(n.attrs).map(([name, a]) => encodeAttr(name, a)),
        })),
        ...extraNodes.map((e) => ({
          input: [e.input],
          output: [e.output],
          name: `${e.output}_id`,
          op_type: 'Identity',
        })),
      ],
      initializer: initializers.map(encodeInitializer),
      input: inputs.map((t) => valueInfo(t.name, t)),
      output: outputs.map((o) => valueInfo(o.name, o.tensor)),
    },
  };
  const bytes = ModelProto.encode(ModelProto.fromObject(message)).finish();
  return { bytes, inputNames: inputs.map((t) => t.name), outputNames: outputs.map((o) => o.name) };
}

/**
 * Opset versions of the domains that extension ops come from. ONNX Runtime's contrib ops
 * (`com.microsoft`: Attention, SkipLayerNormalization, QuickGelu, ...) are all version 1.
 */
export const DOMAIN_OPSETS: Readonly<Record<string, number>> = { 'com.microsoft': 1 };

/** The default domain at the graph's opset, plus each other domain that a kept node uses. */
function opsetImports(opset: number, nodes: readonly OnnxNode[]): { domain: string; version: number }[] {
  const out = [{ domain: '', version: opset }];
  const domains = new Set(nodes.map((n) => n.domain).filter((d) => d !== '' && d !== 'ai.onnx'));
  for (const domain of [...domains].sort()) {
    const version = DOMAIN_OPSETS[domain];
    if (version === undefined) {
      throw new GraphError(
        `serialize: no opset version known for domain "${domain}" (known: ${Object.keys(DOMAIN_OPSETS).join(', ')})`,
      );
    }
    out.push({ domain, version });
  }
  return out;
}

function encodeAttr(name: string, a: import('./graph.js').AttrValue): Record<string, unknown> {
  switch (a.type) {
    case 'int':
      return { name, type: ATTR_TYPE.int, i: a.value };
    case 'float':
      return { name, type: ATTR_TYPE.float, f: a.value };
    case 'string':
      return { name, type: ATTR_TYPE.string, s: new TextEncoder().encode(a.value) };
    case 'ints':
      return { name, type: ATTR_TYPE.ints, ints: [...a.value] };
    case 'floats':
      return { name, type: ATTR_TYPE.floats, floats: [...a.value] };
  }
}

function encodeInitializer(init: Initializer): Record<string, unknown> {
  return {
    name: init.name,
    dims: [...init.dims],
    data_type: ONNX_DTYPE[init.dtype],
    raw_data: rawBytes(init.data),
  };
}

/** Little-endian bytes of a typed array (every platform ORT runs on is little-endian). */
function rawBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function valueInfo(name: string, t: Tensor): Record<string, unknown> {
  return {
    name,
    type: {
      tensor_type: { elem_type: ONNX_DTYPE[t.dtype], shape: { dim: t.shape.map((d) => ({ dim_value: d })) } },
    },
  };
}
