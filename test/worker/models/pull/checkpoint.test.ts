import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointError, TorchCheckpoint } from '../../../../src/worker/models/pull/checkpoint.js';
import {
  PickleError,
  PyDict,
  PyGlobal,
  PyTuple,
  TensorRef,
  unpickle,
} from '../../../../src/worker/models/pull/pickle.js';
import { Weights } from '../../../../src/worker/models/weights.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/pull');

/** Protocol-2 pickle bytes from opcodes written as a latin-1 string. */
const pkl = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

describe('unpickle', () => {
  it('reads containers, numbers and strings as torch.save writes them', () => {
    // l = [1, -2, 300, 70000, 2**70]; {'a': l, 'b': (1.5, True, None), 'c': l}
    const big = `\x8a\x09${'\x00'.repeat(8)}\x40`;
    const v = unpickle(
      pkl(
        '\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00' +
          big +
          'eX\x01\x00\x00\x00bG?\xf8\x00\x00\x00\x00\x00\x00\x88N\x87X\x01\x00\x00\x00ch\x02u.',
      ),
    );
    expect(v).toBeInstanceOf(PyDict);
    const d = v as PyDict;
    expect(d.get('a')).toEqual([1, -2, 300, 70000, 2n ** 70n]);
    expect(d.get('b')).toEqual(new PyTuple([1.5, true, null]));
    expect(d.get('c')).toBe(d.get('a')); // BINGET 2: the same list object, as in Python
  });

  it('refuses a GLOBAL outside the table without calling anything', () => {
    const evil = pkl('\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.');
    expect(() => unpickle(evil)).toThrowError(PickleError);
    expect(() => unpickle(evil)).toThrow(/posix\.system/);
    try {
      unpickle(evil);
    } catch (err) {
      expect((err as PickleError).reason).toBe('forbidden_global');
    }
  });

  it('allows a Lightning callback class as a value but refuses to call it', () => {
    const asKey = pkl('\x80\x02}cpytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint\nK\x01s.');
    const d = unpickle(asKey) as PyDict;
    const [key] = [...d.items.keys()];
    expect(key).toBeInstanceOf(PyGlobal);
    const called = pkl('\x80\x02cpytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint\n)R.');
    expect(() => unpickle(called)).toThrow(
      /calls pytorch_lightning\.callbacks\.model_checkpoint\.ModelCheckpoint/,
    );
  });

  it('reports truncated and unknown input as malformed / unsupported', () => {
    expect(() => unpickle(pkl('\x80\x02X\x05\x00\x00\x00ab'))).toThrow(/needs 5 bytes/);
    expect(() => unpickle(pkl('\x80\x02\xff'))).toThrow(/opcode 0xff/);
    expect(() => unpickle(pkl('\x80\x02h\x07.'))).toThrow(/memo 7/);
  });
});

describe('TorchCheckpoint', () => {
  it('reads the fixture checkpoint as torch does (dtypes, strided and shared views)', () => {
    const ckpt = TorchCheckpoint.open(join(FIXTURES, 'last.ckpt'));
    const expected = Weights.fromFile(join(FIXTURES, 'expected.safetensors'));
    try {
      const root = ckpt.root as PyDict;
      expect(root.get('epoch')).toBe(3);
      expect(root.get('global_step')).toBe(10);
      const sd = ckpt.stateDict();
      expect([...sd.keys()].filter((k) => k.startsWith('loss.'))).toHaveLength(6);
      expect(sd.get('quantize.embedding.weight')!.dtype).toBe('BF16');
      expect(sd.get('quant_conv.bias')!.dtype).toBe('F64');
      expect(sd.get('post_quant_conv.bias')!.offset).toBe(3);
      for (const name of expected.names()) {
        const ref = sd.get(name);
        expect(ref, name).toBeInstanceOf(TensorRef);
        expect(ref!.shape, name).toEqual(expected.shape(name));
        expect(ckpt.readFloat32(name, ref!), name).toEqual(expected.get(name));
      }
      expect(() =>
        ckpt.readFloat32('num', sd.get('loss.discriminator.main.2.num_batches_tracked')!),
      ).toThrowError(CheckpointError);
    } finally {
      ckpt.close();
      expected.close();
    }
  });

  it('refuses a checkpoint whose pickle names os.system', () => {
    expect(() => TorchCheckpoint.open(join(FIXTURES, 'evil.ckpt'))).toThrow(
      /asks for posix\.system, which is not part of a PyTorch state_dict/,
    );
  });

  it('says what a non-zip file is', () => {
    expect(() => TorchCheckpoint.open(join(FIXTURES, 'model.yaml'))).toThrow(/not a zip file/);
    expect(readFileSync(join(FIXTURES, 'model.yaml'), 'utf8')).toContain('taming.models.vqgan.VQModel');
  });
});
