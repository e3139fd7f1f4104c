import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSerializedError, serializeError } from '../../../src/shared/errors.js';
import {
  encodeSafetensors,
  toHalf,
  Weights,
  WeightsError,
  writeSafetensors,
} from '../../../src/worker/models/weights.js';

const dir = mkdtempSync(join(tmpdir(), 'weights-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a raw header object and data bytes, as another writer might produce it. */
function rawFile(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Runs `fn`, expecting a WeightsError; returns it for checks on code and message. */
function weightsError(fn: () => unknown): WeightsError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(WeightsError);
    return err as WeightsError;
  }
  throw new Error('expected a WeightsError');
}

const tensors = [
  { name: 'scale', shape: [], data: Float32Array.of(2.6592) },
  { name: 'layer.weight', shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 1e-30, -0, 123456.789) },
  { name: 'layer.bias', shape: [3], data: Float32Array.of(0.1, 0.2, 0.3) },
  { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
];

describe('F32 round trip', () => {
  it('reads back every tensor exactly, in order, from bytes and from a file', () => {
    const bytes = encodeSafetensors(tensors, { metadata: { format: 'pt', note: 'hi' } });
    const path = join(dir, 'roundtrip.safetensors');
    writeSafetensors(path, tensors, (spec) => tensors.find((t) => t.name === spec.name)!.data, {
      metadata: { format: 'pt', note: 'hi' },
    });
    // The streaming writer and the in-memory encoder produce the same file.
    expect(readFileSync(path)).toEqual(Buffer.from(bytes));
    for (const w of [Weights.fromBytes(bytes), Weights.fromFile(path)]) {
      expect(w.names()).toEqual(tensors.map((t) => t.name));
      expect(w.metadata).toEqual({ format: 'pt', note: 'hi' });
      for (const t of tensors) {
        expect(w.has(t.name)).toBe(true);
        expect(w.shape(t.name)).toEqual(t.shape);
        expect(w.info(t.name).dtype).toBe('F32');
        expect(Array.from(w.get(t.name, t.shape))).toEqual(Array.from(t.data));
      }
      expect(Object.is(w.get('layer.weight')[4], -0)).toBe(true);
      expect(w.numParameters()).toBe(1 + 6 + 3);
      w.close();
    }
  });

  it('pads the header so the data section starts 8-byte aligned, and defaults format to pt', () => {
    const bytes = encodeSafetensors([{ name: 'x', shape: [1], data: Float32Array.of(1) }]);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    expect(Weights.fromBytes(bytes).metadata).toEqual({ format: 'pt' });
  });

  it('hands out a fresh array on every get', () => {
    const w = Weights.fromBytes(encodeSafetensors(tensors));
    const a = w.get('layer.bias');
    a[0] = 99;
    expect(w.get('layer.bias')[0]).toBeCloseTo(0.1, 7);
  });

  it('refuses reads after close', () => {
    const path = join(dir, 'closed.safetensors');
    writeFileSync(path, encodeSafetensors(tensors));
    const w = Weights.fromFile(path);
    w.close();
    const err = weightsError(() => w.get('layer.bias'));
    expect(err.reason).toBe('io');
    // A shutdown closing the file under a running job: another attempt may well succeed.
    expect([err.code, err.retryable]).toEqual(['internal', true]);
    expect(err.message).toContain('closed');
  });

  it('leaves no file behind when producing a tensor fails', () => {
    const path = join(dir, 'failed.safetensors');
    expect(() =>
      writeSafetensors(path, tensors, (spec) => {
        if (spec.name === 'layer.bias') throw new Error('boom');
        return tensors.find((t) => t.name === spec.name)!.data;
      }),
    ).toThrow('boom');
    expect(readdirSync(dir).filter((f) => f.startsWith('failed'))).toEqual([]);
  });

  it('rejects data that does not fill its shape when writing', () => {
    const err = weightsError(() =>
      encodeSafetensors([{ name: 'w', shape: [2, 2], data: new Float32Array(3) }]),
    );
    expect(err.reason).toBe('shape_mismatch');
    expect(err.message).toContain('"w"');
  });
});

describe('half precision', () => {
  it('reads F16 (normal, subnormal, signed zero, infinities, NaN) from a hand-made file', () => {
    const halves = Uint16Array.of(
      0x3c00,
      0xc000,
      0x3555,
      0x0001,
      0x7bff,
      0x8000,
      0x7c00,
      0xfc00,
      0x7e00,
      0x0400,
    );
    const expected = [1, -2, 0.333251953125, 2 ** -24, 65504, -0, Infinity, -Infinity, Number.NaN, 2 ** -14];
    const file = rawFile({ h: { dtype: 'F16', shape: [2, 5], data_offsets: [0, 20] } }, bytesOf(halves));
    const got = Weights.fromBytes(file).get('h', [2, 5]);
    // toEqual compares with Object.is: NaN matches NaN, and -0 must stay -0.
    expect(Array.from(got)).toEqual(expected);
  });

  it('reads BF16 as the top half of float32', () => {
    const raw = Uint16Array.of(0x3f80, 0xc040, 0x4049, 0x7f80, 0x0001, 0x8000);
    const expected = [1, -3, 3.140625, Infinity, 2 ** -133, -0];
    const file = rawFile({ b: { dtype: 'BF16', shape: [6], data_offsets: [0, 12] } }, bytesOf(raw));
    const got = Weights.fromBytes(file).get('b');
    expect(Array.from(got)).toEqual(expected.map(Math.fround));
  });

  it('reads F64, rounding to float32', () => {
    const raw = Float64Array.of(0.1, -1e10, 1 / 3);
    const file = rawFile({ d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] } }, bytesOf(raw));
    expect(Array.from(Weights.fromBytes(file).get('d'))).toEqual([0.1, -1e10, 1 / 3].map(Math.fround));
  });

  it('toHalf inverts the reader on every one of the 65536 half values', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const floats = Weights.fromBytes(
      rawFile({ a: { dtype: 'F16', shape: [65536], data_offsets: [0, 131072] } }, bytesOf(all)),
    ).get('a');
    let mismatches = 0;
    for (let h = 0; h < 65536; h++) {
      const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (nan) expect(Number.isNaN(floats[h])).toBe(true);
      else if (toHalf(floats[h]!) !== h) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('toHalf rounds to nearest even and overflows to infinity', () => {
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00); // tie: stays on the even 1.0
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: goes up to the even neighbour
    expect(toHalf(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // above the tie
    expect(toHalf(65519)).toBe(0x7bff);
    expect(toHalf(65520)).toBe(0x7c00);
    expect(toHalf(-1e6)).toBe(0xfc00);
    expect(toHalf(2 ** -25)).toBe(0); // tie at half the smallest subnormal: to even (zero)
    expect(toHalf(2 ** -25 + 2 ** -30)).toBe(1);
    expect(toHalf(3 * 2 ** -25)).toBe(2); // subnormal tie 1.5 -> 2
  });

  it('writes F16 that reads back to the nearest half', () => {
    const data = Float32Array.of(0.1, -2.5, 1000.3, 1e-6);
    const w = Weights.fromBytes(encodeSafetensors([{ name: 'x', shape: [4], data }], { dtype: 'F16' }));
    expect(w.info('x').dtype).toBe('F16');
    // Half has 11 significant bits: relative error at most 2^-11 for normal values.
    const got = w.get('x');
    for (let i = 0; i < 3; i++)
      expect(Math.abs(got[i]! - data[i]!) / Math.abs(data[i]!)).toBeLessThanOrEqual(2 ** -11);
    expect(got[0]).toBe(0.0999755859375);
    expect(got[3]).toBe(17 * 2 ** -24); // 1e-6 is subnormal in half: 16.78 -> 17 units of 2^-24
  });
});

describe('errors name the tensor and the file', () => {
  const bytes = encodeSafetensors(tensors);

  it('missing tensor', () => {
    const err = weightsError(() => Weights.fromBytes(bytes, 'clip/model.safetensors').get('layer.wieght'));
    expect(err.reason).toBe('missing_tensor');
    // Part of the model is not there: the operator's sentence, not retried; the reason crosses Redis.
    expect([err.code, err.retryable]).toEqual(['model_missing', false]);
    const wire = parseSerializedError(serializeError(err));
    expect([wire.code, wire.details.reason, wire.message]).toEqual([
      'model_missing',
      'missing_tensor',
      err.message,
    ]);
    expect(err.message).toContain('"layer.wieght"');
    expect(err.message).toContain('clip/model.safetensors');
    expect(err.message).toContain('"layer.weight"'); // the nearest names, as a hint
  });

  it('shape mismatch names both shapes', () => {
    const err = weightsError(() => Weights.fromBytes(bytes).get('layer.weight', [3, 2]));
    expect(err.reason).toBe('shape_mismatch');
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('"layer.weight"');
    expect(err.message).toContain('[2, 3]');
    expect(err.message).toContain('[3, 2]');
    // Same element count but another rank is a mismatch too.
    expect(weightsError(() => Weights.fromBytes(bytes).get('layer.weight', [6])).reason).toBe(
      'shape_mismatch',
    );
  });

  it('truncated data names the first tensor cut off', () => {
    const path = join(dir, 'truncated.safetensors');
    writeFileSync(path, bytes);
    truncateSync(path, bytes.length - 5); // into layer.bias (the empty tensor takes no bytes)
    const err = weightsError(() => Weights.fromFile(path));
    expect(err.reason).toBe('truncated');
    expect(err.message).toContain('"layer.bias"');
    expect(err.message).toContain(path);
    expect(err.message).toContain('5 missing');
  });

  it('a file cut inside the header or its length is truncated', () => {
    expect(weightsError(() => Weights.fromBytes(bytes.subarray(0, 5))).reason).toBe('truncated');
    const err = weightsError(() => Weights.fromBytes(bytes.subarray(0, 40)));
    expect(err.reason).toBe('truncated');
    expect(err.message).toContain('header');
  });

  it('corrupt headers', () => {
    const cases: [string, Uint8Array, string][] = [
      ['not JSON', rawFile(null, new Uint8Array(0), '{"a": {"dtype": '), 'not valid JSON'],
      ['an array', rawFile([], new Uint8Array(0)), 'not a JSON object'],
      [
        'unknown dtype',
        rawFile({ t: { dtype: 'F7', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
        '"t" has unknown dtype',
      ],
      [
        'size does not match shape',
        rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(8)),
        '"t" (F32 [2]) needs 8 bytes',
      ],
      [
        'offsets overlap',
        rawFile(
          {
            a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
          },
          new Uint8Array(12),
        ),
        'tensors "a" [0, 8) and "b" [4, 12) overlap',
      ],
      [
        'negative shape',
        rawFile({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
        '"t" has a bad shape',
      ],
      [
        'offsets reversed',
        rawFile({ t: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, new Uint8Array(4)),
        'ending before they begin',
      ],
      ['metadata not strings', rawFile({ __metadata__: { n: 1 } }, new Uint8Array(0)), '__metadata__.n'],
    ];
    for (const [what, file, message] of cases) {
      const err = weightsError(() => Weights.fromBytes(file, 'bad.safetensors'));
      expect(err.reason, what).toBe('bad_header');
      expect(err.message, what).toContain(message);
      expect(err.message, what).toContain('bad.safetensors');
    }
  });

  it('an absurd header length is a bad header, not an allocation', () => {
    const file = new Uint8Array(64);
    new DataView(file.buffer).setBigUint64(0, 0x7fff_ffff_ffffn, true);
    const err = weightsError(() => Weights.fromBytes(file));
    expect(err.reason).toBe('bad_header');
    expect(err.message).toContain('exceeds');
  });

  it('integer tensors can sit in the file but not be read as weights', () => {
    const ids = BigInt64Array.of(0n, 1n, 2n);
    const f = Float32Array.of(5, 6);
    const data = new Uint8Array(32);
    data.set(bytesOf(ids), 0);
    data.set(bytesOf(f), 24);
    const w = Weights.fromBytes(
      rawFile(
        {
          'text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 3], data_offsets: [0, 24] },
          w: { dtype: 'F32', shape: [2], data_offsets: [24, 32] },
        },
        data,
      ),
    );
    const err = weightsError(() => w.get('text_model.embeddings.position_ids'));
    expect(err.reason).toBe('unsupported_dtype');
    expect(err.message).toContain('"text_model.embeddings.position_ids" is I64');
    expect(Array.from(w.get('w'))).toEqual([5, 6]);
  });

  it('a missing file is an io error naming the path', () => {
    const err = weightsError(() => Weights.fromFile(join(dir, 'nope.safetensors')));
    expect(err.reason).toBe('io');
    expect(err.message).toContain('nope.safetensors');
  });
});
