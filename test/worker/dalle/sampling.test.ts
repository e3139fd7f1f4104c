// Sampling the next image token: top-k, top-p and temperature cut and shape the distribution as
// minDALL-E does, top-k = 1 is greedy argmax, and a seed fixes every draw.
import { describe, expect, it } from 'vitest';
import { argmax, sampleRows, sampleToken } from '../../../src/worker/dalle/sampling.js';
import { Rng } from '../../../src/worker/generate/rng.js';

function randomLogits(seed: number, n: number, scale = 3): Float32Array {
  const rng = new Rng(seed, 'logits');
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Frequencies of each token over `draws` seeded samples of one row. */
function frequencies(row: Float32Array, options: Parameters<typeof sampleToken>[1], draws: number): number[] {
  const rng = new Rng(7, 'draws');
  const counts = new Array<number>(row.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampleToken(row, options, rng.next())]! += 1;
  return counts.map((c) => c / draws);
}

/** A frequency over n independent draws within 4 standard deviations of p. */
function expectFrequency(freq: number, p: number, n: number): void {
  expect(Math.abs(freq - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n) + 1e-12);
}

describe('sampleToken', () => {
  it('top-k = 1 is argmax, whatever the draw and temperature', () => {
    for (let s = 0; s < 50; s++) {
      const row = randomLogits(s, 1000);
      for (const u of [0, 0.3, 0.999999]) {
        expect(sampleToken(row, { topK: 1, temperature: 2 }, u)).toBe(argmax(row));
      }
    }
    // Ties go to the lower id, as argmax's do.
    const tied = new Float32Array([0, 5, 1, 5, 5]);
    expect(argmax(tied)).toBe(1);
    expect(sampleToken(tied, { topK: 1 }, 0.99)).toBe(1);
  });

  it('samples the softmax of logits / temperature without cut-offs', () => {
    const row = new Float32Array([1, 2, 0, -1, 1.5]);
    for (const temperature of [1, 0.5]) {
      const z = Array.from(row, (x) => Math.exp(x / temperature));
      const sum = z.reduce((a, b) => a + b, 0);
      const freq = frequencies(row, { topK: 0, temperature }, 40_000);
      z.forEach((v, i) => {
        expectFrequency(freq[i]!, v / sum, 40_000);
      });
    }
  });

  it('top-k keeps exactly the k most likely tokens, renormalised', () => {
    const row = new Float32Array([0, 3, 1, 2, -1, 2.5]);
    const freq = frequencies(row, { topK: 3 }, 30_000);
    const kept = [1, 5, 3];
    const z = kept.map((i) => Math.exp(row[i]!));
    const sum = z.reduce((a, b) => a + b, 0);
    kept.forEach((id, j) => {
      expectFrequency(freq[id]!, z[j]! / sum, 30_000);
    });
    expect(freq[0]! + freq[2]! + freq[4]!).toBe(0);
  });

  it('top-p keeps the nucleus up to and including the token that crosses p', () => {
    // Probabilities 0.5, 0.3, 0.15, 0.05: with p = 0.7 the first two (0.5 < 0.7, then 0.8).
    const row = Float32Array.from([0.5, 0.3, 0.15, 0.05], Math.log);
    const freq = frequencies(row, { topK: 0, topP: 0.7 }, 30_000);
    expectFrequency(freq[0]!, 0.5 / 0.8, 30_000);
    expectFrequency(freq[1]!, 0.3 / 0.8, 30_000);
    expect(freq[2]! + freq[3]!).toBe(0);
    // p below the first token's share keeps the first alone.
    expect(frequencies(row, { topK: 0, topP: 0.2 }, 1000)[0]).toBe(1);
  });

  it('refuses bad options and NaN logits', () => {
    const row = new Float32Array([0, 1]);
    expect(() => sampleToken(row, { temperature: 0 }, 0.5)).toThrow(/temperature/);
    expect(() => sampleToken(row, { topK: -1 }, 0.5)).toThrow(/topK/);
    expect(() => sampleToken(row, { topP: 0 }, 0.5)).toThrow(/topP/);
    expect(() => sampleToken(new Float32Array([Number.NaN, Number.NaN]), {}, 0.5)).toThrow(/NaN/);
  });
});

describe('sampleRows', () => {
  it('the same seed gives the same tokens, another seed others', () => {
    const rows = 8;
    const logits = randomLogits(1, rows * 16384, 1);
    const run = (seed: number) => {
      const rng = new Rng(seed, 'dalle');
      return sampleRows(logits, rows, { topK: 256 }, () => rng.next());
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
    expect(() => sampleRows(logits, 3, {}, Math.random)).toThrow(/rows/);
  });
});
