// Seeded randomness for generation: every random draw of a run (initial latent, each step's
// cutouts and noise) comes from its own stream keyed by (seed, purpose, step), so a run continued
// from a saved state draws exactly what one uninterrupted run would have drawn at the same step.

/** 32-bit mix (splitmix32 finaliser). */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a over UTF-16 code units. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Folds a seed and stream keys into one 32-bit value. */
export function streamSeed(seed: number, ...keys: readonly (string | number)[]): number {
  let h = mix32(seed >>> 0);
  for (const k of keys) h = mix32(h ^ (typeof k === 'number' ? mix32(k >>> 0) : hashString(k)));
  return h;
}

/** sfc32: small, fast, good enough for crops and noise, and the same on every platform. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;

  constructor(seed: number, ...keys: readonly (string | number)[]) {
    const s = streamSeed(seed, ...keys);
    this.a = mix32(s);
    this.b = mix32(s ^ 0x6a09e667);
    this.c = mix32(s ^ 0xbb67ae85);
    this.d = 1;
    for (let i = 0; i < 15; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller; both values of a pair are used). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(1 - this.next()));
    const theta = 2 * Math.PI * this.next();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
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
