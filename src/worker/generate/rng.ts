// Seeded randomness for generation: every random draw of a run (initial latent, each step's
// cutouts and noise) comes from its own stream keyed by (seed, purpose, step), so a run continued
// from a saved state draws exactly what one uninterrupted run would have drawn at the same step.

import { hashString, mix32, Sfc32 } from '../sfc32.js';

/** Folds a seed and stream keys into one 32-bit value. */
export function streamSeed(seed: number, ...keys: readonly (string | number)[]): number {
  let h = mix32(seed >>> 0);
  for (const k of keys) h = mix32(h ^ (typeof k === 'number' ? mix32(k >>> 0) : hashString(k)));
  return h;
}

/** The generation streams' generator: state from streamSeed(seed, ...keys). */
export class Rng extends Sfc32 {
  constructor(seed: number, ...keys: readonly (string | number)[]) {
    const s = streamSeed(seed, ...keys);
    super(mix32(s), mix32(s ^ 0x6a09e667), mix32(s ^ 0xbb67ae85), 1, 15);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fills `out` with normal samples times `scale`. */
  fillNormal(out: Float32Array, scale = 1, offset = 0, length = out.length - offset): Float32Array {
    const end = offset + length;
    let i = offset;
    // Pairs straight from Box-Muller: this fills millions of values per step at full size.
    for (; i + 1 < end; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - this.next())) * scale;
      const theta = 2 * Math.PI * this.next();
      out[i] = r * Math.cos(theta);
      out[i + 1] = r * Math.sin(theta);
    }
    if (i < end) out[i] = this.normal() * scale;
    return out;
  }
}

/** A fresh seed for a run that did not ask for one: uniform over the 32-bit range. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
