// Adam on the latent, in TypeScript (the latent is small: 256x16x16 at 256 px). Its state (m, v, t)
// is plain data that is saved with the latent, so Continue resumes the optimiser exactly where it
// stopped: a run of 20 + 10 steps equals one of 30, bit for bit.

export interface AdamOptions {
  /** Learning rate. @defaultValue 0.1 */
  readonly lr?: number;
  /** @defaultValue 0.9 */
  readonly beta1?: number;
  /** @defaultValue 0.999 */
  readonly beta2?: number;
  /** @defaultValue 1e-8 */
  readonly eps?: number;
  /** Multiplies the learning rate once per step (lr_t = lr * decay^(t-1)); 1 keeps it fixed. @defaultValue 1 */
  readonly decay?: number;
}

export const DefaultAdamOptions = {
  lr: 0.1,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  decay: 1,
} as const satisfies Required<AdamOptions>;

export interface AdamState {
  /** First moment, one per parameter. */
  readonly m: Float32Array;
  /** Second moment, one per parameter. */
  readonly v: Float32Array;
  /** Steps taken so far. */
  t: number;
}

export function adamInit(size: number): AdamState {
  return { m: new Float32Array(size), v: new Float32Array(size), t: 0 };
}

/** A deep copy (the loop updates its state in place). */
export function adamClone(state: AdamState): AdamState {
  return { m: state.m.slice(), v: state.v.slice(), t: state.t };
}

/** The learning rate used by step number `t` (1-based). */
export function adamLr(t: number, options: AdamOptions = {}): number {
  const o = { ...DefaultAdamOptions, ...options };
  return o.lr * o.decay ** (t - 1);
}

/**
 * One Adam step in place (PyTorch's formulation, bias-corrected, no weight decay):
 * p -= lr_t * m_hat / (sqrt(v_hat) + eps). Arithmetic is in float64; the stored state is float32,
 * so a saved and reloaded state continues identically.
 */
export function adamStep(
  params: Float32Array,
  grad: Float32Array,
  state: AdamState,
  options: AdamOptions = {},
): void {
  const o = { ...DefaultAdamOptions, ...options };
  const n = params.length;
  if (grad.length !== n || state.m.length !== n || state.v.length !== n) {
    throw new RangeError(
      `adamStep: sizes differ (params ${n}, grad ${grad.length}, m ${state.m.length}, v ${state.v.length})`,
    );
  }
  state.t += 1;
  const t = state.t;
  const lr = o.lr * o.decay ** (t - 1);
  const c1 = 1 - o.beta1 ** t;
  const c2 = 1 - o.beta2 ** t;
  const { m, v } = state;
  for (let i = 0; i < n; i++) {
    const g = grad[i]!;
    const mi = o.beta1 * m[i]! + (1 - o.beta1) * g;
    const vi = o.beta2 * v[i]! + (1 - o.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i]! -= (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + o.eps);
  }
}
