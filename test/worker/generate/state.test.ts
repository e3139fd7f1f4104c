import { describe, expect, it } from 'vitest';
import { BadInputError } from '../../../src/shared/errors.js';
import { Rng } from '../../../src/worker/generate/rng.js';
import { decodeState, encodeState, type GenerationState } from '../../../src/worker/generate/state.js';

function sample(withInit: boolean): GenerationState {
  const n = 4 * 2 * 3;
  const r = new Rng(3);
  return {
    version: 1,
    params: {
      prompts: [
        { text: 'a cat: ü', weight: 1 },
        { text: 'blurry', weight: -0.5 },
      ],
      imagePromptWeights: [0.25],
      seed: 4294967295,
      steps: 120,
      width: 48,
      height: 32,
      cutouts: 8,
      lr: 0.1,
      lrDecay: 0.995,
      cutPow: 1,
      minCutFraction: 0.25,
      noise: 0.1,
      init: withInit ? 'image' : 'random',
      initWeight: withInit ? 0.5 : 0,
      initDecaySteps: 200,
      preset: 'draft',
    },
    step: 120,
    latent: { data: r.fillNormal(new Float32Array(n)), dims: [1, 4, 2, 3] },
    adam: { m: r.fillNormal(new Float32Array(n), 1e-3), v: r.fillNormal(new Float32Array(n), 1e-6), t: 120 },
    ...(withInit && { initPixels: Uint8Array.from({ length: 3 * 32 * 48 }, (_, i) => i % 256) }),
  };
}

describe('generation state blobs', () => {
  for (const withInit of [false, true]) {
    it(`round-trip bit for bit${withInit ? ' with an init image' : ''}`, () => {
      const s = sample(withInit);
      const back = decodeState(encodeState(s));
      expect(back).toEqual(s);
      expect(Buffer.from(back.adam.v.buffer).equals(Buffer.from(s.adam.v.buffer))).toBe(true);
    });
  }

  it('read from an unaligned view (a blob inside a larger buffer)', () => {
    const bytes = encodeState(sample(false));
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 1);
    expect(decodeState(padded.subarray(1, 1 + bytes.length))).toEqual(sample(false));
  });

  it('read from a Node Buffer (what blob stores return), a view into a shared pool', () => {
    for (const withInit of [false, true]) {
      const bytes = encodeState(sample(withInit));
      // Small Buffers share one pooled allocation: a view at an offset, whose slice() copies nothing.
      const pooled = Buffer.from(bytes);
      const back = decodeState(pooled);
      expect(back).toEqual(sample(withInit));
      pooled.fill(0);
      expect(back).toEqual(sample(withInit));
    }
  });

  it('refuse what is not a state', () => {
    const good = encodeState(sample(false));
    const bad = [
      new Uint8Array([1, 2, 3]),
      new TextEncoder().encode('PNG not a state at all'),
      good.subarray(0, good.length - 4),
      (() => {
        const b = good.slice();
        b[10] = 0x7b; // breaks the JSON header
        return b;
      })(),
    ];
    for (const b of bad) expect(() => decodeState(b)).toThrow(BadInputError);
  });
});
