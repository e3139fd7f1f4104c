// A pickle reader for exactly what torch.save writes for a state_dict (and the Lightning checkpoint
// around one): plain containers, numbers and strings, tensors as `_rebuild_tensor_v2` over storages
// named by persistent ids. It never executes anything: a GLOBAL is looked up in a fixed table of names
// we model as data, and anything else is refused with the name it asked for.
import { ReasonedError } from '../../../shared/errors.js';

export type PickleErrorReason = 'forbidden_global' | 'forbidden_call' | 'unsupported_opcode' | 'malformed';

/** A pickle refused or unreadable: the file's fault, so `bad_input` whatever the reason. */
export class PickleError extends ReasonedError<PickleErrorReason, 'bad_input'> {
  override readonly name = 'PickleError';
  constructor(reason: PickleErrorReason, message: string, options: { cause?: unknown } = {}) {
    super('bad_input', reason, message, options);
  }
}

/** Element types of torch storages, by safetensors' names. */
export type TorchDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const TORCH_DTYPE_BYTES: Readonly<Record<TorchDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The legacy typed-storage classes torch.save names in persistent ids (still, in torch 2.x). */
const STORAGE_TYPES: Readonly<Record<string, TorchDType>> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** A GLOBAL we allowed: a name, never resolved to code. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A Python dict or OrderedDict, in insertion order; `attrs` holds what BUILD set (a state_dict's `_metadata`). */
export class PyDict {
  readonly items = new Map<PickleKey, PickleValue>();
  attrs: PickleValue = null;
  get(key: PickleKey): PickleValue | undefined {
    return this.items.get(key);
  }
}

export class PyTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}

/** A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`. */
export interface StorageRef {
  readonly dtype: TorchDType;
  /** The zip entry `{archive}/data/{key}` holding its bytes. */
  readonly key: string;
  readonly location: string;
  /** Elements (not bytes). */
  readonly numel: number;
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view into a storage, in elements. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
  get dtype(): TorchDType {
    return this.storage.dtype;
  }
}

export type PickleKey = string | number | bigint | boolean | null | PyGlobal | PyTuple;
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PyTuple
  | PyDict
  | PyGlobal
  | StorageRef
  | TensorRef;

type Call = (args: readonly PickleValue[], where: string) => PickleValue;

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
const ints = (v: PickleValue): number[] | undefined => {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
  return items?.every(isInt) ? (items as number[]) : undefined;
};
const isStorage = (v: unknown): v is StorageRef =>
  typeof v === 'object' && v !== null && 'key' in v && 'dtype' in v && 'numel' in v && !(v instanceof PyDict);

function rebuildTensor(args: readonly PickleValue[], where: string): TensorRef {
  const [storage, offset, size, stride] = args;
  const shape = size === undefined ? undefined : ints(size);
  const strides = stride === undefined ? undefined : ints(stride);
  if (!isStorage(storage) || !isInt(offset) || !shape || !strides || shape.length !== strides.length) {
    throw new PickleError(
      'malformed',
      `${where}: _rebuild_tensor arguments are not (storage, offset, size, stride)`,
    );
  }
  return new TensorRef(storage, offset, shape, strides);
}

/** Longest integer (LONG1/LONG4 payload) read: 8 KiB, a number of ~20,000 digits. */
const MAX_LONG_BYTES = 8192;

/** What each allowed callable builds. Only data comes out; nothing named here is ever run. */
const CALLABLES: Readonly<Record<string, Call>> = {
  'collections.OrderedDict': (args, where) => {
    const d = new PyDict();
    const [pairs] = args;
    if (pairs === undefined) return d;
    const list = pairs instanceof PyTuple ? pairs.items : Array.isArray(pairs) ? pairs : undefined;
    for (const pair of list ?? []) {
      const kv = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : [];
      if (kv.length !== 2) throw new PickleError('malformed', `${where}: OrderedDict item is not a pair`);
      d.items.set(kv[0] as PickleKey, kv[1]!);
    }
    if (!list) throw new PickleError('malformed', `${where}: OrderedDict argument is not a list of pairs`);
    return d;
  },
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  'torch._utils._rebuild_tensor_v2': rebuildTensor,
  'torch._utils._rebuild_tensor': rebuildTensor,
  // (data, requires_grad, backward_hooks): a Parameter is its data here.
  'torch._utils._rebuild_parameter': (args, where) => {
    if (!(args[0] instanceof TensorRef))
      throw new PickleError('malformed', `${where}: parameter without a tensor`);
    return args[0];
  },
  // Protocol 2 writes Python 3 bytes as _codecs.encode(latin-1 text, 'latin1').
  '_codecs.encode': (args, where) => {
    const [text, encoding] = args;
    if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      throw new PickleError('malformed', `${where}: _codecs.encode arguments are not (str, 'latin1')`);
    }
    return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  },
  'builtins.set': (args, where) => {
    const [items] = args;
    if (items !== undefined && !Array.isArray(items))
      throw new PickleError('malformed', `${where}: set of a non-list`);
    return [...(items ?? [])];
  },
};

/**
 * Classes that may appear as plain values but are never called: Lightning keys its `callbacks` dict by
 * callback class (CompVis checkpoints of the taming / latent-diffusion era hold
 * pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint there; torch.load(weights_only=True)
 * refuses those files for exactly this GLOBAL).
 */
const REFERENCES: ReadonlySet<string> = new Set(
  ['pytorch_lightning', 'lightning.pytorch'].flatMap((pl) => [
    `${pl}.callbacks.model_checkpoint.ModelCheckpoint`,
    `${pl}.callbacks.early_stopping.EarlyStopping`,
    `${pl}.callbacks.lr_monitor.LearningRateMonitor`,
  ]),
);

/** Python 2 names that protocol 2 pickles carry for Python 3 builtins (fix_imports). */
const RENAMED_MODULES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

function resolveGlobal(module: string, name: string, where: string): PyGlobal {
  const mod = RENAMED_MODULES[module] ?? module;
  const q = `${mod}.${name}`;
  if (Object.hasOwn(CALLABLES, q) || REFERENCES.has(q)) return new PyGlobal(mod, name);
  if (mod === 'torch' && Object.hasOwn(STORAGE_TYPES, name)) return new PyGlobal(mod, name);
  throw new PickleError(
    'forbidden_global',
    `${where}: the pickle asks for ${q}, which is not part of a PyTorch state_dict; ` +
      'refusing to read it (a checkpoint should hold tensors and plain values only)',
  );
}

export interface UnpickleOptions {
  /** Names the data in error messages. @defaultValue 'pickle' */
  readonly source?: string;
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/**
 * Reads one pickle (protocols 0-5 framing, the opcodes torch.save and plain containers use) into
 * PickleValues; throws PickleError for anything outside that, or for a GLOBAL not in the table.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): PickleValue {
  const source = options.source ?? 'pickle';
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = 0;
  let opAt = 0;

  const where = () => `${source} at byte ${opAt}`;
  const fail = (why: string): never => {
    throw new PickleError('malformed', `${where()}: ${why}`);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length) fail(`needs ${n} bytes, ${bytes.length - pos} left`);
  };
  const u8 = () => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is too large`);
    return Number(v);
  };
  const take = (n: number) => {
    need(n);
    const v = bytes.subarray(pos, pos + n);
    pos += n;
    return v;
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line');
    const v = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return v;
  };
  const text = (raw: Uint8Array) => {
    try {
      return utf8.decode(raw);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) return fail('stack underflow');
    return v;
  };
  const top = (): PickleValue => {
    const v = stack.at(-1);
    if (v === undefined || v === MARK) return fail('stack underflow');
    return v;
  };
  const popMark = (): PickleValue[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK');
    // stack[m] is the MARK itself, kept there so that pop() cannot reach below it.
    return stack.splice(m).slice(1) as PickleValue[];
  };
  const push = (v: PickleValue) => stack.push(v);
  const longFrom = (raw: Uint8Array): number | bigint => {
    if (raw.length === 0) return 0;
    // Building a BigInt byte by byte is quadratic: a LONG4 of a few MiB would hang the reader for
    // hours. State dicts hold no integers anywhere near this long.
    if (raw.length > MAX_LONG_BYTES) fail(`a ${raw.length}-byte integer; a state_dict holds none that long`);
    let n = 0n;
    for (let i = raw.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(raw[i]!);
    if (raw[raw.length - 1]! & 0x80) n -= 1n << BigInt(raw.length * 8);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  };
  const setItems = (d: PickleValue, kv: readonly PickleValue[]) => {
    if (!(d instanceof PyDict)) return fail('SETITEM on something that is not a dict');
    if (kv.length % 2) fail('odd number of items for SETITEMS');
    for (let i = 0; i < kv.length; i += 2) d.items.set(kv[i] as PickleKey, kv[i + 1]!);
  };
  const appendItems = (list: PickleValue, items: readonly PickleValue[]) => {
    if (!Array.isArray(list)) return fail('APPEND on something that is not a list');
    list.push(...items);
  };
  const call = (fn: PickleValue, args: PickleValue, how: string): PickleValue => {
    if (!(fn instanceof PyGlobal)) return fail(`${how} of something that is not a global`);
    const impl = CALLABLES[fn.qualifiedName];
    if (!impl) {
      throw new PickleError('forbidden_call', `${where()}: the pickle calls ${fn.qualifiedName}; refusing`);
    }
    const list = args instanceof PyTuple ? args.items : fail(`${how} arguments are not a tuple`);
    return impl(list, `${where()} (${fn.qualifiedName})`);
  };
  const persistent = (pid: PickleValue): StorageRef => {
    const t = pid instanceof PyTuple ? pid.items : [];
    const [tag, type, key, location, numel] = t;
    if (
      t.length !== 5 ||
      tag !== 'storage' ||
      !(type instanceof PyGlobal) ||
      type.module !== 'torch' ||
      !Object.hasOwn(STORAGE_TYPES, type.name) ||
      typeof key !== 'string' ||
      typeof location !== 'string' ||
      !isInt(numel) ||
      numel < 0
    ) {
      return fail('persistent id is not ("storage", torch.<Type>Storage, key, location, numel)');
    }
    return { dtype: STORAGE_TYPES[type.name]!, key, location, numel };
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol above 5');
        break;
      case 0x95: // FRAME: a length prefix we do not need
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail('STOP with a stack that is not one value');
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.pop() === undefined) fail('stack underflow');
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x8a: // LONG1
        push(longFrom(take(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        push(longFrom(take(n)));
        break;
      }
      case 0x49: {
        // INT (text): also True/False as 01/00
        const s = line();
        if (s === '01' || s === '00') push(s === '01');
        else if (/^[-+]?\d+$/.test(s)) push(Number(s));
        else fail(`bad INT ${JSON.stringify(s)}`);
        break;
      }
      case 0x47: {
        // BINFLOAT: big-endian double
        need(8);
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x58: // BINUNICODE
        push(text(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(text(take(u64())));
        break;
      case 0x54: {
        // BINSTRING (Python 2 str)
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        push(latin1.decode(take(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x8f: // EMPTY_SET
        push([]);
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x91: // FROZENSET
        push(popMark());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number(line()), top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: {
        // GET (text)
        const i = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        const v = memo.get(i);
        if (v === undefined) fail(`memo ${i} was never stored`);
        push(v!);
        break;
      }
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const module = line();
        const name = line();
        push(resolveGlobal(module, name, where()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL of non-strings');
        push(resolveGlobal(module as string, name as string, where()));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        push(call(fn, args, 'REDUCE'));
        break;
      }
      case 0x81: {
        // NEWOBJ (cls.__new__(cls, *args)): only for what we can build, i.e. the same table.
        const args = pop();
        const cls = pop();
        push(call(cls, args, 'NEWOBJ'));
        break;
      }
      case 0x62: {
        // BUILD: an OrderedDict's instance dict (a state_dict's _metadata); nothing else takes state.
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict)) fail('BUILD on something that is not a dict');
        (obj as PyDict).attrs = state;
        break;
      }
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      default:
        throw new PickleError(
          'unsupported_opcode',
          `${where()}: opcode 0x${op.toString(16).padStart(2, '0')} is not one torch.save writes for a state_dict`,
        );
    }
  }
}
