// minDALL-E with int8 dense weights (prepareDalleWeights' 'int8') against float32 on the tiny
// PyTorch-fixture weights: the next-token logits after the prefill and several decode steps stay
// within the stated error, and the distributions agree on their most likely tokens.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDalleConfig } from '../../../src/worker/dalle/config.js';
import { compareLogits } from '../../../src/worker/dalle/logit-agreement.js';
import { DalleRunner } from '../../../src/worker/dalle/runner.js';
import { prepareDalleWeights } from '../../../src/worker/dalle/transformer.js';
import { Weights } from '../../../src/worker/models/weights.js';

const DIR = join(import.meta.dirname, '../../fixtures/reference');

describe('minDALL-E int8 weights (tiny)', () => {
  it('keeps the next-token logits close to float32', async () => {
    const config = await loadDalleConfig(join(DIR, 'mindalle-tiny'));
    const model = Weights.fromFile(join(DIR, 'mindalle-tiny/model.safetensors'));
    const fp32 = prepareDalleWeights(config, model);
    const int8 = prepareDalleWeights(config, model, { precision: 'int8' });
    model.close();
    expect(int8.has('blocks.0.attn.qkv.weight')).toBe(false);
    expect(int8.get('blocks.0.mlp.0.weight_int8')?.data).toBeInstanceOf(Int8Array);
    const N = 2;
    const V = config.vocab_size_img;
    const text = Array.from({ length: config.ctx_len_txt }, (_, i) => (i * 7 + 3) % config.vocab_size_txt);
    // int8 weights as graph constants (the default, packed once) and as inputs (packed every run).
    const [a, b, c] = await Promise.all([
      DalleRunner.create(config, fp32, { candidates: N }),
      DalleRunner.create(config, int8, { candidates: N }),
      DalleRunner.create(config, int8, { candidates: N, build: { int8Constants: false } }),
    ]);
    try {
      const rows: { ref: Float32Array; got: Float32Array }[] = [];
      let inputsErr = 0;
      const asInputs = (got: Float32Array, other: Float32Array) => {
        for (let i = 0; i < got.length; i++) inputsErr = Math.max(inputsErr, Math.abs(got[i]! - other[i]!));
        return got;
      };
      rows.push({ ref: await a.prefill(text), got: asInputs(await b.prefill(text), await c.prefill(text)) });
      for (let j = 0; j < 12; j++) {
        // Both fed the float32 model's greedy tokens, so the two see the same sequence.
        const prev = rows[rows.length - 1]!.ref;
        const tokens = Array.from({ length: N }, (_, n) => {
          const row = prev.length === V ? prev : prev.subarray(n * V, (n + 1) * V);
          return (row.indexOf(Math.max(...row)) + n * 17) % V;
        });
        rows.push({ ref: await a.step(tokens), got: asInputs(await b.step(tokens), await c.step(tokens)) });
      }
      const r = compareLogits(rows, V, 5);
      console.info(
        `minDALL-E tiny int8: max |dlogit| / max |logit| ${r.maxRelError.toExponential(2)}, top-1 ${r.top1}, top-5 overlap ${r.topkOverlap.toFixed(3)} over ${r.rows} rows`,
      );
      expect(inputsErr, 'int8 weights as inputs vs constants').toBeLessThan(1e-4);
      expect(r.maxRelError).toBeLessThan(0.06);
      expect(r.top1).toBeGreaterThanOrEqual(0.9);
      expect(r.topkOverlap).toBeGreaterThanOrEqual(0.8);
    } finally {
      await Promise.all([a.release(), b.release(), c.release()]);
    }
  });
});
