// Turns named weights into graph constants, once per name per graph, with the shapes each model
// expects (a missing or mis-shaped tensor fails in the WeightSource, naming it).
import type { Graph, Tensor } from '../graph/graph.js';
import { conv2d } from '../graph/ops/conv.js';
import { linear } from '../graph/ops/matmul.js';
import { groupNorm, layerNorm } from '../graph/ops/norm.js';

/** Where model weights come from: a safetensors file, or anything that can hand out named arrays. */
export interface WeightSource {
  /** The tensor's values; throws (naming the tensor) when missing or of another shape. */
  get(name: string, expectedShape?: readonly number[]): Float32Array;
}

export class Params {
  private readonly cache = new Map<string, Tensor>();

  constructor(
    readonly g: Graph,
    private readonly w: WeightSource,
  ) {}

  get(name: string, shape: readonly number[]): Tensor {
    let t = this.cache.get(name);
    if (!t) {
      t = this.g.constant(this.w.get(name, shape), shape, { name });
      this.cache.set(name, t);
    }
    return t;
  }

  /** The raw values of a named weight (no constant is made), for weights derived at build time. */
  array(name: string, shape: readonly number[]): Float32Array {
    return this.w.get(name, shape);
  }

  /**
   * A constant computed from named weights at build time (a fused or rescaled weight), made once
   * per graph under `name`, which must not collide with a weight's own name.
   */
  derived(name: string, shape: readonly number[], make: () => Float32Array): Tensor {
    let t = this.cache.get(name);
    if (!t) {
      t = this.g.constant(make(), shape, { name });
      this.cache.set(name, t);
    }
    return t;
  }

  /** torch.nn.Linear named `prefix` ([out, in] weight). */
  linear(x: Tensor, prefix: string, inF: number, outF: number, bias = true): Tensor {
    const wt = this.get(`${prefix}.weight`, [outF, inF]);
    return bias ? linear(x, wt, this.get(`${prefix}.bias`, [outF])) : linear(x, wt);
  }

  /** torch.nn.Conv2d named `prefix`, square kernel, with bias. */
  conv(
    x: Tensor,
    prefix: string,
    cin: number,
    cout: number,
    k: number,
    stride = 1,
    pads: readonly [number, number, number, number] = [(k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2],
  ): Tensor {
    return conv2d(x, this.get(`${prefix}.weight`, [cout, cin, k, k]), this.get(`${prefix}.bias`, [cout]), {
      strides: [stride, stride],
      pads,
    });
  }

  layerNorm(x: Tensor, prefix: string, d: number, eps: number): Tensor {
    return layerNorm(x, this.get(`${prefix}.weight`, [d]), this.get(`${prefix}.bias`, [d]), eps);
  }

  groupNorm(x: Tensor, prefix: string, c: number, groups: number, eps: number): Tensor {
    return groupNorm(x, groups, this.get(`${prefix}.weight`, [c]), this.get(`${prefix}.bias`, [c]), eps);
  }
}

const cache = new WeakMap<Graph, WeakMap<WeightSource, Params>>();

/** One Params per (graph, weights) pair, so two towers built into one graph share constants. */
export function paramsFor(g: Graph, w: WeightSource): Params {
  let byWeights = cache.get(g);
  if (!byWeights) {
    byWeights = new WeakMap();
    cache.set(g, byWeights);
  }
  let p = byWeights.get(w);
  if (!p) {
    p = new Params(g, w);
    byWeights.set(w, p);
  }
  return p;
}
