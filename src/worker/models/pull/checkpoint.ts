// PyTorch checkpoints as torch.save writes them since 1.6 (a zip of `{archive}/data.pkl` and one
// `{archive}/data/{key}` entry per storage), read without Python: the pickle through our data-only
// reader, tensor bytes from the zip on demand, converted to float32 for the safetensors writer.
import { closeSync, openSync, readSync } from 'node:fs';
import { ReasonedError } from '../../../shared/errors.js';
import { halfToFloat32 } from '../weights.js';
import {
  type PickleValue,
  PyDict,
  TensorRef,
  TORCH_DTYPE_BYTES,
  type TorchDType,
  unpickle,
} from './pickle.js';
import { ZipError, ZipReader } from './zip.js';

export type CheckpointErrorReason = 'not_torch_zip' | 'legacy_format' | 'no_state_dict' | 'bad_tensor';

/** A checkpoint we cannot read: every reason is the file's, so all are `bad_input`. */
export class CheckpointError extends ReasonedError<CheckpointErrorReason, 'bad_input'> {
  override readonly name = 'CheckpointError';
  constructor(reason: CheckpointErrorReason, message: string, options: { cause?: unknown } = {}) {
    super('bad_input', reason, message, options);
  }
}

/** The first bytes of torch's pre-1.6 format: a pickled magic number (protocol 2, LONG1). */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8];

const FLOAT_DTYPES: ReadonlySet<TorchDType> = new Set(['F32', 'F16', 'BF16', 'F64']);

export class TorchCheckpoint {
  private constructor(
    readonly path: string,
    private readonly zip: ZipReader,
    /** The folder inside the zip ("archive", or the saved file's name in older torch). */
    private readonly prefix: string,
    /** The unpickled object: a state_dict, or a dict holding one (Lightning's checkpoint). */
    readonly root: PickleValue,
  ) {}

  /** Opens a torch zip checkpoint and reads its pickle; throws CheckpointError, ZipError or PickleError. */
  static open(path: string): TorchCheckpoint {
    let zip: ZipReader;
    try {
      zip = ZipReader.open(path);
    } catch (err) {
      if (err instanceof ZipError && err.reason === 'not_zip' && startsWithLegacyMagic(path)) {
        throw new CheckpointError(
          'legacy_format',
          `${path} is in PyTorch's pre-1.6 format, which this reader does not support; load it in Python and ` +
            'save the state_dict again with torch.save (or convert it to safetensors) first',
          { cause: err },
        );
      }
      throw err;
    }
    try {
      const pkl = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (pkl.length !== 1) {
        throw new CheckpointError(
          'not_torch_zip',
          `${path} is a zip but not a torch.save checkpoint (expected one ARCHIVE/data.pkl, found ${pkl.length})`,
        );
      }
      const prefix = pkl[0]!.slice(0, -'/data.pkl'.length);
      const byteorder = zip.entry(`${prefix}/byteorder`);
      if (byteorder && new TextDecoder().decode(zip.read(byteorder)) !== 'little') {
        throw new CheckpointError(
          'not_torch_zip',
          `${path} was saved on a big-endian machine; not supported`,
        );
      }
      const root = unpickle(zip.read(zip.entry(pkl[0]!)!), { source: `${path}:${pkl[0]}` });
      return new TorchCheckpoint(path, zip, prefix, root);
    } catch (err) {
      zip.close();
      throw err;
    }
  }

  /**
   * The tensors of the model: `root.state_dict` when the root is a training checkpoint (Lightning's
   * dict with epoch, global_step, optimizer_states, ...), else the root itself when it is a dict of
   * tensors (a plain `torch.save(model.state_dict())`). Non-tensor entries are left out.
   */
  stateDict(): Map<string, TensorRef> {
    const root = this.root;
    if (!(root instanceof PyDict)) {
      throw new CheckpointError('no_state_dict', `${this.path}: the checkpoint is not a dict`);
    }
    const inner = root.get('state_dict');
    const dict = inner instanceof PyDict ? inner : root;
    const out = new Map<string, TensorRef>();
    for (const [k, v] of dict.items) if (typeof k === 'string' && v instanceof TensorRef) out.set(k, v);
    if (out.size === 0) {
      const keys = [...root.items.keys()].filter((k) => typeof k === 'string').slice(0, 8);
      throw new CheckpointError(
        'no_state_dict',
        `${this.path}: no tensors found (top-level keys: ${keys.join(', ') || 'none'})`,
      );
    }
    return out;
  }

  /** A tensor's values as float32 in a fresh array (any layout: offsets, strides, shared storages). */
  readFloat32(name: string, t: TensorRef): Float32Array {
    if (!FLOAT_DTYPES.has(t.dtype)) {
      throw new CheckpointError(
        'bad_tensor',
        `${this.path}: tensor "${name}" is ${t.dtype}, not a float type`,
      );
    }
    const entryName = `${this.prefix}/data/${t.storage.key}`;
    const entry = this.zip.entry(entryName);
    const es = TORCH_DTYPE_BYTES[t.dtype];
    if (!entry)
      throw new CheckpointError('bad_tensor', `${this.path}: tensor "${name}" has no storage ${entryName}`);
    if (entry.size < t.storage.numel * es) {
      throw new CheckpointError(
        'bad_tensor',
        `${this.path}: storage ${entryName} holds ${entry.size} bytes, the pickle says ${t.storage.numel} x ${es}`,
      );
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n === 0) return new Float32Array(0);
    if (t.offset < 0 || t.stride.some((s) => s < 0) || t.shape.some((d) => d < 0)) {
      throw new CheckpointError(
        'bad_tensor',
        `${this.path}: tensor "${name}" has a negative offset, stride or size`,
      );
    }
    // The span of storage elements the view touches: [offset, last].
    const last = t.offset + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i]!, 0);
    if (last >= t.storage.numel) {
      throw new CheckpointError(
        'bad_tensor',
        `${this.path}: tensor "${name}" reaches element ${last} of a ${t.storage.numel}-element storage`,
      );
    }
    const span = decode(t.dtype, this.zip.read(entry, t.offset * es, (last - t.offset + 1) * es));
    if (isContiguous(t.shape, t.stride) && span.length === n) return span;
    const out = new Float32Array(n);
    // Walk the index space in row-major order, adding strides like an odometer.
    const rank = t.shape.length;
    const idx = new Array<number>(rank).fill(0);
    let src = 0;
    for (let i = 0; i < n; i++) {
      out[i] = span[src]!;
      for (let d = rank - 1; d >= 0; d--) {
        idx[d]!++;
        src += t.stride[d]!;
        if (idx[d]! < t.shape[d]!) break;
        src -= t.stride[d]! * t.shape[d]!;
        idx[d] = 0;
      }
    }
    return out;
  }

  close(): void {
    this.zip.close();
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d]! !== 1 && stride[d]! !== expect) return false;
    expect *= shape[d]!;
  }
  return true;
}

function decode(dtype: TorchDType, bytes: Uint8Array): Float32Array {
  // Copy to an aligned buffer: zip entries are aligned by torch, but a view's offset need not be.
  const buf = bytes.slice().buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return Float32Array.from(new Float64Array(buf));
    case 'F16':
      return halfToFloat32(new Uint16Array(buf));
    case 'BF16': {
      const raw = new Uint16Array(buf);
      const out = new Float32Array(raw.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < raw.length; i++) bits[i] = raw[i]! << 16;
      return out;
    }
    default:
      throw new CheckpointError('bad_tensor', `cannot read ${dtype} as float32`);
  }
}

function startsWithLegacyMagic(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const head = new Uint8Array(LEGACY_MAGIC.length);
      readSync(fd, head, 0, head.length, 0);
      return LEGACY_MAGIC.every((b, i) => head[i] === b);
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
