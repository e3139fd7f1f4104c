// minDALL-E's stage 2 as our graphs against the PyTorch reference (tools/dalle_reference.py) on the
// same tiny random weights: the prefill, six decode steps for two candidates, and the full
// recompute; and our cached decode against our own full recompute.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DalleConfig, loadDalleConfig } from '../../../src/worker/dalle/config.js';
import { DalleRunner, fullForwardLogits } from '../../../src/worker/dalle/runner.js';
import { type DalleWeights, prepareDalleWeights } from '../../../src/worker/dalle/transformer.js';
import { Weights } from '../../../src/worker/models/weights.js';

const DIR = join(import.meta.dirname, '../../fixtures/reference');

/** Largest |a - b| / max|b|: relative to the tensor's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
  }
  return err / scale;
}

describe('minDALL-E transformer vs PyTorch (tiny)', () => {
  let config: DalleConfig;
  let weights: DalleWeights;
  let io: Weights;
  let text: number[];
  let image: Float32Array;
  const N = 2;
  const STEPS = 6;

  beforeAll(async () => {
    config = await loadDalleConfig(join(DIR, 'mindalle-tiny'));
    const model = Weights.fromFile(join(DIR, 'mindalle-tiny/model.safetensors'));
    weights = prepareDalleWeights(config, model);
    model.close();
    io = Weights.fromFile(join(DIR, 'mindalle-tiny-io.safetensors'));
    text = Array.from(io.get('text_f32', [1, config.ctx_len_txt]));
    image = io.get('image_f32', [N, STEPS]);
  });
  afterAll(() => io.close());

  it('prefill and decode steps give the reference logits', async () => {
    const expected = io.get('step_logits', [STEPS + 1, N, config.vocab_size_img]);
    const V = config.vocab_size_img;
    const runner = await DalleRunner.create(config, weights, { candidates: N });
    try {
      const first = await runner.prefill(text);
      for (let n = 0; n < N; n++) {
        const err = relErr(first, expected.subarray(n * V, (n + 1) * V));
        expect(err, 'prefill').toBeLessThan(1e-5);
      }
      let worst = 0;
      for (let j = 0; j < STEPS; j++) {
        const tokens = Array.from({ length: N }, (_, n) => image[n * STEPS + j]!);
        const logits = await runner.step(tokens);
        const err = relErr(logits, expected.subarray((j + 1) * N * V, (j + 2) * N * V));
        worst = Math.max(worst, err);
        expect(err, `step ${j}`).toBeLessThan(1e-4);
      }
      expect(runner.position).toBe(STEPS);
      // The measured agreement, for the record (seen: ~1e-6).
      console.info(
        `minDALL-E tiny: decode logits vs PyTorch, max error / max |logit| = ${worst.toExponential(2)}`,
      );
    } finally {
      await runner.release();
    }
  });

  it('the full recompute gives the reference logits', async () => {
    const textN = [...text, ...text];
    const logits = await fullForwardLogits(config, weights, textN, image, N);
    const expected = io.get('full_logits', [N, STEPS + 1, config.vocab_size_img]);
    expect(relErr(logits, expected)).toBeLessThan(1e-4);
  });

  // Batch 1 (one prefill row per candidate) and several candidates sharing the cache slots.
  it.each([1, 2])(
    'the cached decode equals a full recompute of the sequence at every step (batch %i)',
    async (N) => {
      const V = config.vocab_size_img;
      // A whole image's worth of steps but the last, on tokens of our own.
      const n = config.ctx_len_img - 1;
      const tokens = Array.from({ length: N * n }, (_, i) => (i * 7919 + 13) % V);
      const textN = Array.from({ length: N }, () => text).flat();
      const full = await fullForwardLogits(config, weights, textN, tokens, N); // [N, n + 1, V]
      const runner = await DalleRunner.create(config, weights, { candidates: N });
      try {
        const rows: Float32Array[] = [];
        const first = await runner.prefill(text);
        rows.push(new Float32Array(Array.from({ length: N }, () => [...first]).flat()));
        for (let j = 0; j < n; j++)
          rows.push(await runner.step(Array.from({ length: N }, (_, b) => tokens[b * n + j]!)));
        let worst = 0;
        for (let j = 0; j <= n; j++) {
          for (let b = 0; b < N; b++) {
            const got = rows[j]!.subarray(b * V, (b + 1) * V);
            const want = full.subarray((b * (n + 1) + j) * V, (b * (n + 1) + j + 1) * V);
            worst = Math.max(worst, relErr(got, want));
          }
        }
        expect(worst).toBeLessThan(1e-5);
        await expect(runner.step(new Array<number>(N).fill(0))).rejects.toThrow(/already decoded/);
      } finally {
        await runner.release();
      }
    },
  );
});
