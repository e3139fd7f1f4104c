// Model weights in the safetensors format (Hugging Face's): the one way weights enter the worker,
// whether real (converted checkpoints) or random (random.ts). Reads F32/F16/BF16/F64 into Float32Array
// for compute; writes F32 or F16 one tensor at a time so a 600 MB model never sits in memory twice.
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { type ErrorCode, ReasonedError } from '../../shared/errors.js';

/** Every dtype name the safetensors spec defines, with its size in bytes. */
const DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_BYTES;
/** The dtypes `Weights.get` converts to float32. */
export const READABLE_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16', 'F64'];
export type WritableDType = 'F32' | 'F16';

/**
 * A file that holds less than the model needs is a model not (fully) installed; one that is not what
 * its config describes is a misconfiguration; an I/O failure on a file that was there (loadModels
 * checks first), or one read after close (a shutdown racing a job), may pass on a retry.
 */
const weightsErrorCodes = {
  missing_tensor: 'model_missing',
  truncated: 'model_missing',
  shape_mismatch: 'config_invalid',
  bad_header: 'config_invalid',
  unsupported_dtype: 'config_invalid',
  io: 'internal',
} as const satisfies Record<string, ErrorCode>;

export type WeightsErrorReason = keyof typeof weightsErrorCodes;

/** Anything wrong with a weights file; the message names the file and, where one is at fault, the tensor. */
export class WeightsError extends ReasonedError<
  WeightsErrorReason,
  (typeof weightsErrorCodes)[WeightsErrorReason]
> {
  override readonly name = 'WeightsError';
  constructor(reason: WeightsErrorReason, message: string, options: { cause?: unknown } = {}) {
    super(weightsErrorCodes[reason], reason, message, options);
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Byte offsets into the data section (after the header), end exclusive. */
  readonly begin: number;
  readonly end: number;
}

/**
 * Largest header we accept. The reference implementation caps it at 100 MB; a larger length field is
 * almost surely a file that is not safetensors at all (or garbage), and we would rather say so than
 * try to allocate it.
 */
export const MAX_HEADER_BYTES = 100_000_000;

// Conversions below read bytes as host-order typed arrays; every platform Node ships for is
// little-endian, but a silent byte swap would be the worst possible failure, so check once.
if (endianness() !== 'LE') throw new Error('weights.ts assumes a little-endian host');

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;
const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Where the bytes of a safetensors file live: in memory, or in a file read on demand. */
interface ByteSource {
  readonly size: number;
  /** Fills `into` with the bytes at [position, position + into.length). */
  read(position: number, into: Uint8Array): void;
  close(): void;
}

class MemorySource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(position: number, into: Uint8Array): void {
    into.set(this.bytes.subarray(position, position + into.length));
  }
  close(): void {}
}

class FileSource implements ByteSource {
  private fd: number | undefined;
  readonly size: number;
  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'r');
      this.size = fstatSync(this.fd).size;
    } catch (cause) {
      if (this.fd !== undefined) closeSync(this.fd);
      throw new WeightsError('io', `cannot open weights file ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
  read(position: number, into: Uint8Array): void {
    if (this.fd === undefined) throw new WeightsError('io', `${this.path}: weights file already closed`);
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.fd, into, done, into.length - done, position + done);
      if (n === 0) {
        throw new WeightsError(
          'truncated',
          `${this.path}: file ended at byte ${position + done} while reading`,
        );
      }
      done += n;
    }
  }
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function badHeader(source: string, why: string): WeightsError {
  return new WeightsError('bad_header', `${source}: bad safetensors header: ${why}`);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and checks the header against the data section's size (offsets in range, no overlap, sizes). */
function parseHeader(
  source: string,
  json: string,
  dataBytes: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (cause) {
    throw badHeader(source, `not valid JSON (${(cause as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw badHeader(source, 'the header is not a JSON object');
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(raw)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw badHeader(source, '__metadata__ is not an object');
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw badHeader(source, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof entry !== 'object' || entry === null)
      throw badHeader(source, `tensor "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw badHeader(source, `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw badHeader(source, `tensor "${name}" has a bad shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      throw badHeader(source, `tensor "${name}" has bad data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin)
      throw badHeader(
        source,
        `tensor "${name}" has data_offsets [${begin}, ${end}] ending before they begin`,
      );
    const want = numel(shape) * DTYPE_BYTES[dtype as SafetensorsDType];
    if (end - begin !== want) {
      throw badHeader(
        source,
        `tensor "${name}" (${dtype} ${fmt(shape)}) needs ${want} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    tensors.set(name, { name, dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end });
  }
  // Overlaps would let one tensor's bytes silently alias another's: a corrupt or malicious header.
  const byOffset = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    const cur = byOffset[i]!;
    if (cur.begin < prev.end) {
      throw badHeader(
        source,
        `tensors "${prev.name}" [${prev.begin}, ${prev.end}) and "${cur.name}" [${cur.begin}, ${cur.end}) overlap`,
      );
    }
  }
  const last = byOffset.at(-1);
  if (last && last.end > dataBytes) {
    const cut = byOffset.find((t) => t.end > dataBytes)!;
    throw new WeightsError(
      'truncated',
      `${source} is truncated: tensor "${cut.name}" needs data bytes [${cut.begin}, ${cut.end}) ` +
        `but the file holds only ${dataBytes} data bytes (${last.end - dataBytes} missing)`,
    );
  }
  return { tensors, metadata };
}

let f16Table: Float32Array | undefined;
/** All 65536 half-precision values as float32: one lookup per element beats bit fiddling in JS. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/** IEEE half bits to float32 values (checkpoint converters share the reader's table). */
export function halfToFloat32(raw: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = table[raw[i]!]!;
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** float32 -> IEEE half, round to nearest even, overflow to infinity (as PyTorch's .half()). */
export function toHalf(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  // A carry out of the mantissa bumps the exponent, which is right (and reaches 0x7c00 = infinity at the top).
  return sign | half;
}

/**
 * A safetensors file, opened for reading by name. `get` returns a fresh Float32Array each time (graph
 * constants keep the array, so handing out shared views would let one graph's edits leak into another).
 * From a path the tensors are read on demand, so loading all of a model costs its size once, not twice;
 * call `close()` when done.
 */
export class Weights {
  private constructor(
    /** The file's path, or a label for in-memory bytes; used in every error message. */
    readonly source: string,
    private readonly bytes: ByteSource,
    private readonly dataStart: number,
    private readonly tensors: ReadonlyMap<string, TensorInfo>,
    /** The `__metadata__` strings, e.g. `{ format: 'pt' }`. */
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Opens a file and checks its header; tensor bytes are read when asked for. */
  static fromFile(path: string): Weights {
    const src = new FileSource(path);
    try {
      return Weights.open(path, src);
    } catch (err) {
      src.close();
      throw err;
    }
  }

  /** Wraps bytes already in memory (not copied; do not modify them while in use). */
  static fromBytes(bytes: Uint8Array, label = '<safetensors bytes>'): Weights {
    return Weights.open(label, new MemorySource(bytes));
  }

  private static open(source: string, src: ByteSource): Weights {
    if (src.size < 8) {
      throw new WeightsError(
        'truncated',
        `${source} is truncated: ${src.size} bytes, too short for the header length`,
      );
    }
    const lenBytes = new Uint8Array(8);
    src.read(0, lenBytes);
    const len = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (len > BigInt(MAX_HEADER_BYTES)) {
      throw badHeader(
        source,
        `header length ${len} exceeds ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`,
      );
    }
    const headerLen = Number(len);
    if (headerLen < 2) throw badHeader(source, `header length ${headerLen} is too short for a JSON object`);
    if (8 + headerLen > src.size) {
      throw new WeightsError(
        'truncated',
        `${source} is truncated: the header claims ${headerLen} bytes but the file has only ${src.size - 8} after the length`,
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    src.read(8, headerBytes);
    let json: string;
    try {
      json = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    } catch {
      throw badHeader(source, 'the header is not valid UTF-8');
    }
    const dataStart = 8 + headerLen;
    const { tensors, metadata } = parseHeader(source, json, src.size - dataStart);
    return new Weights(source, src, dataStart, tensors, metadata);
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The header entry of a tensor (dtype, shape, offsets); throws missing_tensor. */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) {
      throw new WeightsError(
        'missing_tensor',
        `${this.source}: no tensor "${name}" (the file has ${this.tensors.size} tensors${this.nearby(name)})`,
      );
    }
    return t;
  }

  shape(name: string): readonly number[] {
    return this.info(name).shape;
  }

  /** Total number of elements over all tensors. */
  numParameters(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += numel(t.shape);
    return n;
  }

  /**
   * The tensor as float32 in a fresh array. With `expectedShape`, a different shape is an error naming
   * both shapes: the cheapest place to catch a config that does not match its weights.
   */
  get(name: string, expectedShape?: readonly number[]): Float32Array {
    const t = this.info(name);
    if (
      expectedShape &&
      (expectedShape.length !== t.shape.length || expectedShape.some((d, i) => d !== t.shape[i]))
    ) {
      throw new WeightsError(
        'shape_mismatch',
        `${this.source}: tensor "${name}" has shape ${fmt(t.shape)} but the model expects ${fmt(expectedShape)}`,
      );
    }
    const n = numel(t.shape);
    const at = this.dataStart + t.begin;
    switch (t.dtype) {
      case 'F32': {
        // Read straight into the result's memory: no intermediate copy.
        const out = new Float32Array(n);
        this.bytes.read(at, new Uint8Array(out.buffer));
        return out;
      }
      case 'F16': {
        const raw = new Uint16Array(n);
        this.bytes.read(at, new Uint8Array(raw.buffer));
        const table = halfTable();
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = table[raw[i]!]!;
        return out;
      }
      case 'BF16': {
        // bfloat16 is the top half of a float32: widen in place with a shift.
        const out = new Float32Array(n);
        const bits = new Uint32Array(out.buffer);
        const raw = new Uint16Array(n);
        this.bytes.read(at, new Uint8Array(raw.buffer));
        for (let i = 0; i < n; i++) bits[i] = raw[i]! << 16;
        return out;
      }
      case 'F64': {
        const raw = new Float64Array(n);
        this.bytes.read(at, new Uint8Array(raw.buffer));
        return Float32Array.from(raw);
      }
      default:
        throw new WeightsError(
          'unsupported_dtype',
          `${this.source}: tensor "${name}" is ${t.dtype}; only ${READABLE_DTYPES.join(', ')} can be read as float32`,
        );
    }
  }

  /** Releases the file (a no-op for bytes). Further `get` calls fail. */
  close(): void {
    this.bytes.close();
  }

  /** A hint for typos: up to three tensor names sharing the longest prefix with `name`. */
  private nearby(name: string): string {
    const score = (other: string): number => {
      let i = 0;
      while (i < name.length && i < other.length && name[i] === other[i]) i++;
      return i;
    };
    const best = [...this.tensors.keys()]
      .map((k) => [k, score(k)] as const)
      .filter(([, s]) => s > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([k]) => `"${k}"`);
    return best.length ? `; closest: ${best.join(', ')}` : '';
  }
}

/** One tensor to write: its name and shape; the data comes later, from the producer. */
export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface WriteOptions {
  /**
   * Element type on disk.
   * @defaultValue 'F32'
   */
  readonly dtype?: WritableDType;
  /**
   * `__metadata__` strings. Hugging Face transformers refuses files whose `format` is not one it knows.
   * @defaultValue { format: 'pt' }
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

const DEFAULT_METADATA = { format: 'pt' } as const;

/** The header bytes (length prefix included) for tensors laid out back to back in `specs` order. */
function encodeHeader(specs: readonly TensorSpec[], options: WriteOptions): Uint8Array {
  const dtype = options.dtype ?? 'F32';
  const size = DTYPE_BYTES[dtype];
  const header: Record<string, unknown> = { __metadata__: options.metadata ?? DEFAULT_METADATA };
  let offset = 0;
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw new WeightsError('bad_header', `tensor "${s.name}" appears twice`);
    if (!s.shape.every(isNonNegInt))
      throw new WeightsError('bad_header', `tensor "${s.name}" has bad shape ${fmt(s.shape)}`);
    seen.add(s.name);
    const bytes = numel(s.shape) * size;
    header[s.name] = { dtype, shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces to a multiple of 8 (as the reference writer does) so the data section, and with
  // it every F32 tensor, starts aligned when the file is mapped.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

function encodeData(spec: TensorSpec, data: Float32Array, dtype: WritableDType): Uint8Array {
  if (data.length !== numel(spec.shape)) {
    throw new WeightsError(
      'shape_mismatch',
      `tensor "${spec.name}": ${data.length} values do not fill shape ${fmt(spec.shape)}`,
    );
  }
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const half = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) half[i] = toHalf(data[i]!);
  return new Uint8Array(half.buffer);
}

/**
 * Writes a safetensors file, asking `produce` for each tensor's values in `specs` order and writing them
 * out before asking for the next, so memory holds one tensor at a time. Writes to a temporary name and
 * renames at the end: a crash leaves no half-written file that would later read as truncated.
 */
export function writeSafetensors(
  path: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, index: number) => Float32Array,
  options: WriteOptions = {},
): void {
  const dtype = options.dtype ?? 'F32';
  const header = encodeHeader(specs, options);
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, header);
    specs.forEach((spec, i) => {
      writeAll(fd, encodeData(spec, produce(spec, i), dtype));
    });
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, path);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** The whole file in memory, for small models and tests. */
export function encodeSafetensors(
  tensors: readonly (TensorSpec & { readonly data: Float32Array })[],
  options: WriteOptions = {},
): Uint8Array {
  const dtype = options.dtype ?? 'F32';
  const header = encodeHeader(tensors, options);
  const parts = tensors.map((t) => encodeData(t, t.data, dtype));
  const out = new Uint8Array(header.length + parts.reduce((a, p) => a + p.length, 0));
  out.set(header);
  let at = header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
