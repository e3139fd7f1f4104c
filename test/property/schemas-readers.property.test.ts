// Property tests (fast-check) that parsers.property.test.ts leaves out: every job schema (all six
// kinds, and the result schemas the bot reads back) on valid jobs and on valid jobs broken one field
// at a time; the pickle reader on pickles it must read back exactly, on every cut of them and on
// GLOBALs outside its table; the zip reader and the checkpoint reader on a real torch.save file
// damaged anywhere. Each either returns what it promises or throws a CodedError with a sentence.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { renderError } from '../../src/bots/core/render.js';
import { CodedError, parseSerializedError } from '../../src/shared/errors.js';
import { checkJob, type JobKind, jobKinds, jobSchemas, parseJob } from '../../src/shared/jobs.js';
import { TorchCheckpoint } from '../../src/worker/models/pull/checkpoint.js';
import { type PickleValue, PyDict, PyTuple, unpickle } from '../../src/worker/models/pull/pickle.js';
import { ZipReader } from '../../src/worker/models/pull/zip.js';

const RUNS = { numRuns: 200 };

function coded(fn: () => unknown): CodedError | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    const sentence = renderError(error as CodedError);
    expect(sentence.length).toBeGreaterThan(0);
    expect(sentence).not.toMatch(/\n\s+at /);
    return error as CodedError;
  }
}

// --- Job schemas -------------------------------------------------------------------------------

const idText = fc.stringMatching(/^[A-Za-z0-9]{1,20}$/);
const blobKey = fc.stringMatching(/^[a-z0-9]{1,12}:[a-z0-9-]{1,30}$/);
const platform = fc.constantFrom('discord', 'slack', 'web', 'cli');
const origin = fc.record(
  { platform, workspace: idText, channel: idText, user: idText, message: idText },
  { requiredKeys: ['platform', 'user'] },
);
const scope = { platform, workspace: idText, channel: idText };
const side = fc.integer({ min: 4, max: 64 }).map((n) => n * 16);

/** Valid data for each kind, as a bot builds it. */
const validJobs: { [K in JobKind]: fc.Arbitrary<Record<string, unknown>> } = {
  imagine: fc.record(
    {
      prompt: fc.stringMatching(/^[a-z][a-z ]{0,60}[a-z]$/),
      seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      steps: fc.integer({ min: 1, max: 1000 }),
      size: fc.record({ width: side, height: side }),
      cutouts: fc.integer({ min: 1, max: 128 }),
      preset: fc.constantFrom('draft', 'normal', 'better'),
      initImage: blobKey,
      imagePrompts: fc.array(blobKey, { maxLength: 8 }),
      origin,
    },
    { requiredKeys: ['prompt', 'origin'] },
  ),
  classify: fc.record(
    {
      image: blobKey,
      labels: fc.array(fc.stringMatching(/^[a-z]{1,20}$/), { minLength: 1, maxLength: 20 }),
      templates: fc.array(fc.constant('a photo of a {}.'), { minLength: 1, maxLength: 3 }),
      topK: fc.integer({ min: 1, max: 50 }),
      origin,
    },
    { requiredKeys: ['image'] },
  ),
  'embed-image': fc.record(
    {
      image: blobKey,
      ...scope,
      message: idText,
      file: idText,
      link: fc.constant('https://example.com/m/1'),
      origin,
    },
    { requiredKeys: ['image', 'platform', 'workspace', 'channel', 'message', 'file'] },
  ),
  search: fc.oneof(
    fc.record({ query: fc.stringMatching(/^[a-z]{1,30}$/), ...scope, k: fc.integer({ min: 1, max: 50 }) }),
    fc.record({ image: blobKey, ...scope, k: fc.integer({ min: 1, max: 50 }), includeFlagged: fc.boolean() }),
  ),
  'delete-image': fc.oneof(
    fc.record({ imageId: fc.uuid(), ...scope }),
    fc.record(
      { message: idText, file: idText, ...scope },
      { requiredKeys: ['message', 'platform', 'workspace', 'channel'] },
    ),
  ),
  'channel-state': fc.record(
    {
      ...scope,
      set: fc.record(
        { indexing: fc.boolean(), backfillCursor: fc.option(idText), backfillDone: fc.boolean() },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: ['platform', 'workspace', 'channel'] },
  ),
};

/** Values of the wrong type for any field: none of the schemas takes a field of each of these. */
const wrongValue = fc.oneof(
  fc.constant(null),
  fc.constant([[[]]]),
  fc.constant({ $where: 'sleep(1000)' }),
  fc.double({ noNaN: false }).filter((d) => !Number.isInteger(d)),
  fc.constant('\u0000'.repeat(3000)),
);

describe('job schemas, every kind', () => {
  it.each(jobKinds)('%s: a valid job is accepted, and survives JSON (Redis) unchanged', (kind) => {
    fc.assert(
      fc.property(validJobs[kind], (data) => {
        const parsed = checkJob(jobSchemas[kind].data, data);
        expect(checkJob(jobSchemas[kind].data, JSON.parse(JSON.stringify(parsed)))).toEqual(parsed);
      }),
      RUNS,
    );
  });

  it.each(jobKinds)('%s: one field broken, or one unknown field, is refused naming that field', (kind) => {
    fc.assert(
      fc.property(
        validJobs[kind],
        fc.nat(),
        wrongValue,
        fc.stringMatching(/^[a-z]{3,10}$/),
        (data, pick, value, extra) => {
          const keys = Object.keys(data);
          const key = keys[pick % keys.length] as string;
          const broken = { ...data, [key]: value };
          const error = coded(() => checkJob(jobSchemas[kind].data, broken));
          expect(error, `${kind}.${key} = ${JSON.stringify(value)?.slice(0, 40)}`).toBeDefined();
          if (error?.code === 'bad_input') {
            const paths = (error.details.issues as { path: string }[]).map((i) => i.path.split('.')[0]);
            expect(paths).toContain(key);
          } else expect(error?.code).toBe('prompt_too_long');
          if (!Object.hasOwn(data, extra)) {
            const unknown = coded(() => checkJob(jobSchemas[kind].data, { ...data, [extra]: 1 }));
            expect(unknown?.code).toBe('bad_input');
          }
        },
      ),
      RUNS,
    );
  });

  it.each(jobKinds)(
    '%s: anything at all is accepted or refused with a coded error, in the worker too',
    (kind) => {
      fc.assert(
        fc.property(fc.anything({ maxDepth: 3, withNullPrototype: true, withBigInt: true }), (data) => {
          const error = coded(() => checkJob(jobSchemas[kind].data, data));
          if (!error) return;
          // The worker's refusal carries the same error through failedReason.
          let thrown: unknown;
          try {
            parseJob(jobSchemas[kind].data, data);
          } catch (e) {
            thrown = e;
          }
          expect((thrown as Error).name).toBe('UnrecoverableError');
          expect(parseSerializedError((thrown as Error).message).code).toBe(error.code);
        }),
        RUNS,
      );
    },
  );

  it.each(jobKinds)('%s: a result the bot reads back is accepted or refused with a coded error', (kind) => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 3 }), (data) => {
        coded(() => checkJob(jobSchemas[kind].result, data));
      }),
      { numRuns: 100 },
    );
  });
});

// --- Pickle ------------------------------------------------------------------------------------

/** What the test writes: plain values, as a state_dict's metadata holds them. */
type Plain =
  | null
  | boolean
  | number
  | bigint
  | string
  | Plain[]
  | { tuple: Plain[] }
  | { dict: [string, Plain][] };

const plain: fc.Arbitrary<Plain> = fc.letrec<{ value: Plain }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    fc.bigInt({ min: 2n ** 64n, max: 2n ** 200n }),
    fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
    fc.string({ maxLength: 20, unit: 'grapheme' }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(tie('value'), { maxLength: 4 }).map((tuple) => ({ tuple })),
    fc
      .uniqueArray(fc.tuple(fc.string({ maxLength: 8 }), tie('value')), {
        maxLength: 4,
        selector: ([k]) => k,
      })
      .map((dict) => ({ dict })),
  ),
})).value;

/** A protocol-2 pickle of `v`, written with the opcodes torch.save uses. */
function pickle(v: Plain): Uint8Array {
  const out: number[] = [0x80, 0x02];
  const u32 = (n: number) => out.push(n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255);
  const write = (x: Plain): void => {
    if (x === null) out.push(0x4e);
    else if (x === true) out.push(0x88);
    else if (x === false) out.push(0x89);
    else if (typeof x === 'number' && Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31) {
      out.push(0x4a);
      u32(x);
    } else if (typeof x === 'number') {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(x);
      out.push(0x47, ...b);
    } else if (typeof x === 'bigint') {
      const bytes: number[] = [];
      for (let n = x; n > 0n; n >>= 8n) bytes.push(Number(n & 255n));
      bytes.push(0); // a positive number: its top byte is below 0x80
      out.push(0x8a, bytes.length, ...bytes);
    } else if (typeof x === 'string') {
      const b = Buffer.from(x, 'utf8');
      out.push(0x58);
      u32(b.length);
      out.push(...b);
    } else if (Array.isArray(x)) {
      out.push(0x5d, 0x28);
      for (const item of x) write(item);
      out.push(0x65);
    } else if ('tuple' in x) {
      out.push(0x28);
      for (const item of x.tuple) write(item);
      out.push(0x74);
    } else {
      out.push(0x7d, 0x28);
      for (const [k, item] of x.dict) {
        write(k);
        write(item);
      }
      out.push(0x75);
    }
  };
  write(v);
  out.push(0x2e);
  return Uint8Array.from(out);
}

/** The reader's value back in the test's shape. */
function toPlain(v: PickleValue): Plain {
  if (v instanceof PyTuple) return { tuple: v.items.map(toPlain) };
  if (v instanceof PyDict) return { dict: [...v.items].map(([k, x]) => [k as string, toPlain(x)]) };
  if (Array.isArray(v)) return v.map(toPlain);
  return v as Plain;
}

describe('unpickle', () => {
  it('reads back exactly what a pickle of plain values holds', () => {
    fc.assert(
      fc.property(plain, (v) => {
        expect(toPlain(unpickle(pickle(v)))).toEqual(v);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses every cut of a valid pickle with a coded error, and reads none as a value', () => {
    fc.assert(
      fc.property(plain, fc.nat(), (v, at) => {
        const bytes = pickle(v);
        const cut = bytes.subarray(0, at % bytes.length);
        expect(coded(() => unpickle(cut))?.code).toBe('bad_input');
      }),
      { numRuns: 500 },
    );
  });

  it('reads or refuses a valid pickle with any byte changed, never throwing anything else', () => {
    fc.assert(
      fc.property(plain, fc.nat(), fc.integer({ min: 1, max: 255 }), (v, at, xor) => {
        const bytes = pickle(v);
        const i = at % bytes.length;
        bytes[i] = (bytes[i] ?? 0) ^ xor;
        coded(() => unpickle(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses any GLOBAL outside its table, wherever it stands, before calling anything', () => {
    const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.]{0,20}$/);
    fc.assert(
      fc.property(plain, name, name, fc.boolean(), (v, module, attr, called) => {
        fc.pre(
          !/^(collections|torch|_codecs|builtins|__builtin__|pytorch_lightning|lightning)\b/.test(module),
        );
        const inner = pickle(v).subarray(2, -1);
        const global = Buffer.from(`c${module}\n${attr}\n`, 'latin1');
        // [value, module.attr] or module.attr(value,) as a REDUCE.
        const body = called
          ? [...global, 0x28, ...inner, 0x74, 0x52]
          : [0x5d, 0x28, ...inner, ...global, 0x65];
        const error = coded(() => unpickle(Uint8Array.from([0x80, 0x02, ...body, 0x2e])));
        expect(error?.details.reason).toBe('forbidden_global');
        expect(error?.message).toContain(`${module}.${attr}`);
      }),
      RUNS,
    );
  });

  it('refuses an integer of 100 KiB at once (reading one is quadratic, and no state_dict holds one)', () => {
    const n = 100 * 1024;
    const bytes = new Uint8Array(2 + 5 + n + 1);
    bytes.set([0x80, 0x02, 0x8b, n & 255, (n >> 8) & 255, (n >> 16) & 255, 0]);
    bytes.fill(0x11, 7, 7 + n);
    bytes[7 + n] = 0x2e;
    const error = coded(() => unpickle(bytes));
    expect(error?.details.reason).toBe('malformed');
    expect(error?.message).toMatch(/102400-byte integer/);
  });
});

// --- Zip and checkpoint readers ----------------------------------------------------------------

describe('ZipReader and TorchCheckpoint on a damaged torch.save file', () => {
  const fixture = join(import.meta.dirname, '../fixtures/pull/last.ckpt');
  const original = readFileSync(fixture);
  const dir = mkdtempSync(join(tmpdir(), 'vqclip-zip-prop-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  /** Opens the damaged file both ways and reads everything; only CodedErrors may come out. */
  function readAll(bytes: Uint8Array): void {
    const path = join(dir, `f${n++}.ckpt`);
    writeFileSync(path, bytes);
    const zip = (() => {
      let z: ZipReader | undefined;
      coded(() => {
        z = ZipReader.open(path);
      });
      return z;
    })();
    if (zip) {
      for (const name of zip.names()) {
        const entry = zip.entry(name);
        if (entry) coded(() => zip.read(entry));
      }
      zip.close();
    }
    coded(() => {
      const ckpt = TorchCheckpoint.open(path);
      try {
        for (const [name, t] of ckpt.stateDict()) coded(() => ckpt.readFloat32(name, t));
      } finally {
        ckpt.close();
      }
    });
  }

  it('the undamaged fixture opens both ways', () => {
    const path = join(dir, 'good.ckpt');
    copyFileSync(fixture, path);
    const ckpt = TorchCheckpoint.open(path);
    expect(ckpt.stateDict().size).toBeGreaterThan(0);
    ckpt.close();
  });

  it('a central directory entry whose name or extra field runs past the directory is refused as damaged', () => {
    // Found by the property below: the extra field was read past the directory (a RangeError).
    const first = original.indexOf(Buffer.from('PK\x01\x02', 'latin1'));
    const last = original.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1'));
    for (const [at, field] of [
      [first, 30], // extra length of the first entry
      [last, 30], // extra length of the last
      [last, 28], // name length of the last
    ] as const) {
      const bytes = Buffer.from(original);
      bytes.writeUInt16LE(0xfff0, at + field);
      const path = join(dir, `dir${n++}.ckpt`);
      writeFileSync(path, bytes);
      const error = coded(() => ZipReader.open(path).close());
      expect(error?.message, `${at}+${field}`).toMatch(/central directory entry \d+ is damaged/);
    }
  });

  it('cut anywhere: opens or refuses with a coded error', () => {
    fc.assert(
      fc.property(fc.nat({ max: original.length - 1 }), (at) => {
        readAll(original.subarray(0, at));
      }),
      { numRuns: 150 },
    );
  });

  it('any byte changed: opens or refuses with a coded error', () => {
    // Most of the file is tensor data, which no reader checks: aim a third of the changes at the
    // pickle (the first entry) and a third at the central directory (the end).
    const directory = original.indexOf(Buffer.from('PK\x01\x02', 'latin1'));
    const position = fc.oneof(
      fc.nat({ max: original.length - 1 }),
      fc.integer({ min: 0, max: 20_000 }),
      fc.integer({ min: directory, max: original.length - 1 }),
    );
    fc.assert(
      fc.property(position, fc.integer({ min: 1, max: 255 }), (at, xor) => {
        const bytes = Uint8Array.from(original);
        bytes[at] = (bytes[at] ?? 0) ^ xor;
        readAll(bytes);
      }),
      { numRuns: 300 },
    );
  });
});
