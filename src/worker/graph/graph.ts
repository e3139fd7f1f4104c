// The graph builder: tensors with static shapes, ONNX nodes, initializers, and a tape of
// differentiable records that autodiff.ts walks backwards. Ops (ops/*.ts) are plain functions
// that call `Graph.emit`; serialize.ts turns a finished graph into ONNX bytes for onnxruntime.

export type DType = 'float32' | 'int64' | 'int32' | 'bool' | 'float16' | 'uint8' | 'int8';

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};
export type Shape = readonly number[];
export type TensorData = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array | Int8Array;

export type AttrValue =
  | { readonly type: 'int'; readonly value: number }
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'ints'; readonly value: readonly number[] }
  | { readonly type: 'floats'; readonly value: readonly number[] };

/** Shorthand attribute constructors. */
export const attr = {
  int: (value: number): AttrValue => ({ type: 'int', value }),
  float: (value: number): AttrValue => ({ type: 'float', value }),
  string: (value: string): AttrValue => ({ type: 'string', value }),
  ints: (value: readonly number[]): AttrValue => ({ type: 'ints', value }),
  floats: (value: readonly number[]): AttrValue => ({ type: 'floats', value }),
};

/** A build-time error: wrong shapes, unknown ops, impossible gradients. Never thrown by ORT. */
export class GraphError extends Error {
  override readonly name = 'GraphError';
}

export interface Tensor {
  readonly graph: Graph;
  readonly name: string;
  readonly shape: Shape;
  readonly dtype: DType;
  /** Set for constants (initializers): the data, so ops can fold them at build time. */
  readonly value?: TensorData;
  /** Why this tensor exists, for error messages. */
  readonly origin: string;
}

export interface OnnxNode {
  readonly opType: string;
  readonly domain: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/**
 * Vector-Jacobian product of one tape record: given the gradients arriving at the record's
 * outputs (undefined where none arrives), return gradients for its inputs (undefined where
 * `needs[i]` is false or the input gets none). It emits ordinary forward ops into the graph.
 */
export type Vjp = (
  gradOutputs: readonly (Tensor | undefined)[],
  needs: readonly boolean[],
) => readonly (Tensor | undefined)[];

export interface TapeRecord {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly vjp: Vjp | undefined;
}

export interface Initializer {
  readonly name: string;
  readonly dtype: DType;
  readonly dims: Shape;
  readonly data: TensorData;
}

export const sizeOf = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);
export const fmtShape = (shape: Shape): string => `[${shape.join(',')}]`;

const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  int64: 8,
  int32: 4,
  bool: 1,
  uint8: 1,
  float16: 2,
  int8: 1,
};
export const bytesPerElement = (dtype: DType): number => BYTES_PER_ELEMENT[dtype];

const EXPECTED_ARRAY: Record<DType, string> = {
  float32: 'Float32Array',
  int64: 'BigInt64Array',
  int32: 'Int32Array',
  bool: 'Uint8Array',
  uint8: 'Uint8Array',
  float16: 'Uint16Array',
  int8: 'Int8Array',
};

export interface EmitOptions {
  readonly attrs?: Readonly<Record<string, AttrValue>>;
  readonly domain?: string;
  /** Output shapes and dtypes, computed by the op. */
  readonly outputs: readonly { readonly shape: Shape; readonly dtype: DType }[];
  /** Differentiable ops give a VJP; ops whose outputs carry no gradient (argmin, shapes) omit it. */
  readonly vjp?: Vjp;
  /** Record the node without a tape record even when it has float outputs (internals of composites). */
  readonly noTape?: boolean;
}

export class Graph {
  readonly nodes: OnnxNode[] = [];
  readonly tape: TapeRecord[] = [];
  readonly initializers = new Map<string, Initializer>();
  readonly inputs: Tensor[] = [];
  readonly opset: number;
  private readonly names = new Set<string>();
  private counter = 0;
  /** While > 0, emitted nodes get no tape records (composite internals). */
  private noTapeDepth = 0;
  private readonly scalarCache = new Map<string, Tensor>();
  /** Bytes of every node output emitted so far: what running the graph would hold with no reuse. */
  emittedBytes = 0;
  /** Constants derived at build time from other data (transposed, flipped weights), per graph. */
  private readonly derivedCache = new WeakMap<object, Map<string, Tensor>>();

  constructor(options: { opset?: number } = {}) {
    this.opset = options.opset ?? 18;
  }

  /** A fresh unique name with a readable stem. */
  uniqueName(stem: string): string {
    const clean = stem.replace(/[^A-Za-z0-9_./:-]/g, '_') || 't';
    let name = clean;
    while (this.names.has(name)) name = `${clean}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** A graph input fed at run time. */
  input(name: string, shape: Shape, dtype: DType = 'float32'): Tensor {
    checkShape(shape, `input "${name}"`);
    if (this.names.has(name)) throw new GraphError(`input name "${name}" is already used in this graph`);
    this.names.add(name);
    const t: Tensor = { graph: this, name, shape: [...shape], dtype, origin: `input ${name}` };
    this.inputs.push(t);
    return t;
  }

  /** A constant (initializer). Its data is kept so ops can fold it at build time. */
  constant(data: TensorData, shape: Shape, options: { name?: string; dtype?: DType } = {}): Tensor {
    const dtype = options.dtype ?? dtypeOfArray(data);
    checkShape(shape, `constant "${options.name ?? ''}"`);
    if (data.constructor.name !== EXPECTED_ARRAY[dtype]) {
      throw new GraphError(`constant "${options.name ?? ''}": ${dtype} needs a ${EXPECTED_ARRAY[dtype]}`);
    }
    if (data.length !== sizeOf(shape)) {
      throw new GraphError(
        `constant "${options.name ?? ''}": ${data.length} values do not fill shape ${fmtShape(shape)}`,
      );
    }
    const name = this.uniqueName(options.name ?? 'const');
    this.initializers.set(name, { name, dtype, dims: [...shape], data });
    return { graph: this, name, shape: [...shape], dtype, value: data, origin: `constant ${name}` };
  }

  /** A float32 scalar constant (shape []), cached per value. */
  scalar(value: number, dtype: 'float32' | 'int64' = 'float32'): Tensor {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    const cached = this.scalarCache.get(key);
    if (cached) return cached;
    const t =
      dtype === 'float32'
        ? this.constant(new Float32Array([value]), [], { name: 'scalar' })
        : this.constant(new BigInt64Array([BigInt(value)]), [], { name: 'scalar_i64' });
    this.scalarCache.set(key, t);
    return t;
  }

  /**
   * A constant derived from `source` (e.g. a transposed weight), made once per graph and `key`.
   * The cache lives on the graph, so it never keeps another graph's constants alive.
   */
  derived(source: object, key: string, make: () => Tensor): Tensor {
    let byKey = this.derivedCache.get(source);
    if (!byKey) {
      byKey = new Map();
      this.derivedCache.set(source, byKey);
    }
    let t = byKey.get(key);
    if (!t) {
      t = make();
      byKey.set(key, t);
    }
    return t;
  }

  /** A 1-D int64 constant, e.g. shapes and axes. */
  int64s(values: readonly number[], name = 'ints'): Tensor {
    return this.constant(
      BigInt64Array.from(values, (v) => BigInt(v)),
      [values.length],
      { name },
    );
  }

  /**
   * Emits one ONNX node. Records it on the tape (for autodiff) when any output is a float tensor
   * and `noTape` is not set; the VJP is then required only if a gradient ever has to pass.
   */
  emit(opType: string, inputs: readonly (Tensor | undefined)[], options: EmitOptions): Tensor[] {
    const present = inputs.filter((t): t is Tensor => t !== undefined);
    for (const t of present) {
      if (t.graph !== this) throw new GraphError(`${opType}: input "${t.name}" belongs to another graph`);
    }
    const nodeName = this.uniqueName(`${opType}`);
    const outputs: Tensor[] = options.outputs.map((o, i) => {
      checkShape(o.shape, `${opType} output ${i}`);
      this.emittedBytes += sizeOf(o.shape) * bytesPerElement(o.dtype);
      return {
        graph: this,
        name: this.uniqueName(`${nodeName}:${i}`),
        shape: [...o.shape],
        dtype: o.dtype,
        origin: `${opType} (${nodeName})`,
      };
    });
    this.nodes.push({
      opType,
      domain: options.domain ?? '',
      name: nodeName,
      inputs: inputs.map((t) => t?.name ?? ''),
      outputs: outputs.map((t) => t.name),
      attrs: options.attrs ?? {},
    });
    const differentiable = outputs.some((t) => t.dtype === 'float32');
    if (differentiable && !options.noTape && this.noTapeDepth === 0) {
      this.tape.push({ op: opType, inputs: present, outputs, vjp: options.vjp });
    }
    return outputs;
  }

  /**
   * Builds a composite op: `forward` emits any nodes (not taped), and one tape record maps the
   * composite's outputs back to its inputs with `vjp`. Used where a hand-written VJP is cheaper
   * or more exact than differentiating the pieces (norms, softmax, the straight-through quantizer).
   */
  composite(op: string, inputs: readonly Tensor[], forward: () => Tensor[], vjp: Vjp): Tensor[] {
    this.noTapeDepth++;
    let outputs: Tensor[];
    try {
      outputs = forward();
    } finally {
      this.noTapeDepth--;
    }
    if (this.noTapeDepth === 0) this.tape.push({ op, inputs, outputs, vjp });
    return outputs;
  }

  /** Runs `fn` with taping off: emitted nodes are treated as constants by autodiff. */
  withoutTape<T>(fn: () => T): T {
    this.noTapeDepth++;
    try {
      return fn();
    } finally {
      this.noTapeDepth--;
    }
  }
}

export function dtypeOfArray(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new GraphError(`${what}: bad shape ${fmtShape(shape)}`);
  }
}
