import { describe, expect, it } from 'vitest';
import { adamClone, adamInit, adamLr, adamStep } from '../../../src/worker/generate/adam.js';

/** Plain float64 Adam (PyTorch's formulation), independent of the module under test. */
function referenceAdam(p0: number[], grads: number[][], lr: number, decay = 1): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    const lrT = lr * decay ** k;
    for (let i = 0; i < p.length; i++) {
      m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
      v[i] = 0.999 * v[i]! + 0.001 * g[i]! ** 2;
      const mh = m[i]! / (1 - 0.9 ** t);
      const vh = v[i]! / (1 - 0.999 ** t);
      p[i] = p[i]! - (lrT * mh) / (Math.sqrt(vh) + 1e-8);
    }
  });
  return p;
}

const grads = [
  [0.5, -2, 1e-3, 0],
  [0.4, -1, -2e-3, 0],
  [-0.3, 3, 5e-3, 0],
  [0.2, 0.5, 1e-3, 0],
];

describe('adam', () => {
  it('the first step moves each parameter by lr against the sign of its gradient', () => {
    const p = Float32Array.from([1, 1, 1, 1]);
    const s = adamInit(4);
    adamStep(p, Float32Array.from(grads[0]!), s);
    // m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps); a zero gradient does not move.
    for (const [i, v] of [0.9, 1.1, 0.9, 1].entries()) expect(p[i]).toBeCloseTo(v, 5);
    expect(p[3]).toBe(1);
    expect(s.t).toBe(1);
  });

  it('matches a float64 reference over several steps, with and without lr decay', () => {
    for (const decay of [1, 0.9]) {
      const p = Float32Array.from([0.3, -0.2, 1.5, 0.7]);
      const s = adamInit(4);
      for (const g of grads) adamStep(p, Float32Array.from(g), s, { lr: 0.05, decay });
      const ref = referenceAdam([0.3, -0.2, 1.5, 0.7].map(Math.fround), grads, 0.05, decay);
      for (let i = 0; i < 4; i++) expect(p[i]).toBeCloseTo(ref[i]!, 6);
    }
    expect(adamLr(3, { lr: 0.1, decay: 0.5 })).toBeCloseTo(0.025, 12);
  });

  it('a cloned state continues exactly as the original', () => {
    const p = Float32Array.from([0.3, -0.2, 1.5, 0.7]);
    const s = adamInit(4);
    for (const g of grads.slice(0, 2)) adamStep(p, Float32Array.from(g), s);
    const p2 = p.slice();
    const s2 = adamClone(s);
    for (const g of grads.slice(2)) {
      adamStep(p, Float32Array.from(g), s);
      adamStep(p2, Float32Array.from(g), s2);
    }
    expect(Array.from(p2)).toEqual(Array.from(p));
    expect(s2.t).toBe(4);
    expect(s.m).not.toBe(s2.m);
  });

  it('refuses mismatched sizes', () => {
    expect(() => adamStep(new Float32Array(3), new Float32Array(4), adamInit(3))).toThrow(/sizes differ/);
  });
});
