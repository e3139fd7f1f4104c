// Reverse-mode autodiff at build time: walks the graph's tape backwards from a loss and emits
// each record's vector-Jacobian product as ordinary ONNX ops into the same graph. Only records
// that lie between the requested inputs and the loss are differentiated; fan-out sums.
import { fmtShape, type Graph, GraphError, sizeOf, type Tensor } from './graph.js';
import { zeros } from './ops/shape.js';

export interface GradOptions {
  /**
   * Gradient of the final objective w.r.t. `y` (the seed). Defaults to 1 for a scalar `y`;
   * required when `y` has more than one element.
   */
  readonly seed?: Tensor;
}

/**
 * Returns d(y)/d(x) for each x in `wrt`, as tensors of the graph. An x that `y` does not depend
 * on gets a zero tensor (made at run time), so every gradient can be a graph output.
 */
export function grad(y: Tensor, wrt: readonly Tensor[], options: GradOptions = {}): Tensor[] {
  const g = y.graph;
  if (y.dtype !== 'float32') throw new GraphError(`grad: the loss "${y.name}" is ${y.dtype}, not float32`);
  for (const x of wrt) {
    if (x.graph !== g) throw new GraphError(`grad: "${x.name}" belongs to another graph`);
    if (x.dtype !== 'float32') {
      throw new GraphError(
        `grad: cannot differentiate w.r.t. "${x.name}" (${x.origin}): it is ${x.dtype}, not float32`,
      );
    }
  }
  let seed = options.seed;
  if (seed === undefined) {
    if (sizeOf(y.shape) !== 1) {
      throw new GraphError(
        `grad: the loss "${y.name}" has shape ${fmtShape(y.shape)}; reduce it to a scalar or pass a seed gradient`,
      );
    }
    seed = g.constant(new Float32Array([1]), y.shape, { name: 'grad_seed' });
  } else if (seed.shape.join(',') !== y.shape.join(',')) {
    throw new GraphError(
      `grad: seed shape ${fmtShape(seed.shape)} differs from loss shape ${fmtShape(y.shape)}`,
    );
  }

  const tapeLength = g.tape.length;
  const nodesBefore = g.nodes.length;
  const earlier = backwardTensors.get(g);
  if (earlier) refuseSecondOrder(g, y, wrt, earlier);

  // Forward reachability: which tensors depend on any x (through taped records).
  const depends = new Set<string>(wrt.map((x) => x.name));
  for (let i = 0; i < tapeLength; i++) {
    const rec = g.tape[i]!;
    if (rec.inputs.some((t) => depends.has(t.name))) for (const o of rec.outputs) depends.add(o.name);
  }

  const pending = new Map<string, Tensor[]>();
  const add = (t: Tensor, gt: Tensor) => {
    if (gt.shape.join(',') !== t.shape.join(',')) {
      throw new GraphError(
        `grad: internal error, gradient for "${t.name}" (${t.origin}) has shape ${fmtShape(gt.shape)}, expected ${fmtShape(t.shape)}`,
      );
    }
    const list = pending.get(t.name);
    if (list) list.push(gt);
    else pending.set(t.name, [gt]);
  };
  // Sums the contributions of a tensor once, then remembers the total.
  const total = new Map<string, Tensor>();
  const take = (t: Tensor): Tensor | undefined => {
    const done = total.get(t.name);
    if (done) return done;
    const list = pending.get(t.name);
    if (!list) return undefined;
    const sum =
      list.length === 1
        ? list[0]!
        : g.withoutTape(() => g.emit('Sum', list, { outputs: [{ shape: t.shape, dtype: 'float32' }] })[0]!);
    total.set(t.name, sum);
    return sum;
  };

  if (depends.has(y.name)) add(y, seed);
  for (let i = tapeLength - 1; i >= 0; i--) {
    const rec = g.tape[i]!;
    if (!rec.outputs.some((o) => pending.has(o.name))) continue;
    const needs = rec.inputs.map((t) => t.dtype === 'float32' && depends.has(t.name));
    if (!needs.some(Boolean)) continue;
    if (!rec.vjp) {
      throw new GraphError(
        `grad: op ${rec.op} has no gradient, but "${rec.outputs[0]?.name}" lies between the inputs and the loss`,
      );
    }
    const gradOutputs = rec.outputs.map((o) => (o.dtype === 'float32' ? take(o) : undefined));
    // VJPs emit plain forward ops; they are not taped, so second-order use stays out of scope.
    const gradInputs = g.withoutTape(() => rec.vjp!(gradOutputs, needs));
    rec.inputs.forEach((inp, k) => {
      const gi = gradInputs[k];
      if (needs[k] && gi) add(inp, gi);
    });
  }

  const grads = wrt.map((x) => {
    const gx = take(x);
    if (gx) return gx;
    // A run-time zero (ConstantOfShape), not an initializer of x's size.
    return zeros(g, x.shape);
  });
  const marked = earlier ?? new Set<string>();
  for (let i = nodesBefore; i < g.nodes.length; i++) for (const o of g.nodes[i]!.outputs) marked.add(o);
  backwardTensors.set(g, marked);
  return grads;
}

/**
 * Outputs of the nodes that earlier grad() calls emitted, per graph. Those nodes are not taped,
 * so a later grad() would treat them as constants and silently drop the second-order terms.
 */
const backwardTensors = new WeakMap<Graph, Set<string>>();

/**
 * Throws when `y` depends, through taped records, on a tensor of an earlier backward pass that
 * itself depends on one of `wrt`: its derivative w.r.t. `wrt` would be missing from the result.
 */
function refuseSecondOrder(g: Graph, y: Tensor, wrt: readonly Tensor[], earlier: ReadonlySet<string>): void {
  // Dependence on wrt through every node, taped or not.
  const reach = new Set(wrt.map((x) => x.name));
  for (const n of g.nodes) if (n.inputs.some((i) => reach.has(i))) for (const o of n.outputs) reach.add(o);
  const fail = (name: string) => {
    throw new GraphError(
      `grad: the loss "${y.name}" depends on "${name}", a gradient from an earlier grad() call; ` +
        'second-order gradients are not supported (build that use inside graph.withoutTape(...) to treat it as a constant)',
    );
  };
  if (earlier.has(y.name) && reach.has(y.name)) fail(y.name);
  const toLoss = new Set([y.name]);
  for (let i = g.tape.length - 1; i >= 0; i--) {
    const rec = g.tape[i]!;
    if (!rec.outputs.some((o) => toLoss.has(o.name))) continue;
    for (const t of rec.inputs) {
      if (earlier.has(t.name) && reach.has(t.name)) fail(t.name);
      toLoss.add(t.name);
    }
  }
}
