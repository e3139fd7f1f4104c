// The VQGAN+CLIP step as one ONNX graph: latent -> straight-through quantise -> decoder -> image in
// [0, 1] -> cutouts (matrix products with per-step matrices fed as inputs) -> noise -> CLIP
// normalisation -> image tower -> unit embeddings -> weighted spherical distance to each prompt ->
// loss, plus d(loss)/d(latent) from our autodiff. Static for a (models, size, cutouts, prompt count).
import { totalmem } from 'node:os';
import { grad } from '../graph/autodiff.js';
import { Graph, GraphError, type Tensor } from '../graph/graph.js';
import { add, clip, mul, sub } from '../graph/ops/elementwise.js';
import { matmul } from '../graph/ops/matmul.js';
import { reduceMean, reduceSum } from '../graph/ops/reduce.js';
import { reshape, transpose } from '../graph/ops/shape.js';
import { clampWithGrad, l2Normalize, sphericalDistance } from '../graph/ops/trig.js';
import { serialize } from '../graph/serialize.js';
import { type ClipConfig, clipVision } from '../models/clip.js';
import type { WeightSource } from '../models/params.js';
import { type VqganConfig, vqganDecode, vqganFactor, vqganQuantize } from '../models/vqgan.js';
import { ModelSession, type SessionOptions } from '../onnx/session.js';

/** CLIP's input normalisation (openai/clip-vit-base-patch32 preprocessor). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** The two models a generation uses, with their weights. */
export interface GenerationModels {
  readonly clip: { readonly config: ClipConfig; readonly weights: WeightSource };
  readonly vqgan: { readonly config: VqganConfig; readonly weights: WeightSource };
}

export interface StepGraphSpec {
  /** Image width and height in pixels, multiples of the VQGAN's downsampling factor. */
  readonly width: number;
  readonly height: number;
  /** Cutouts per step. */
  readonly cutouts: number;
  /** Prompt embeddings per step (text and image prompts together). */
  readonly prompts: number;
  /**
   * Straight-through quantisation of the latent before decoding, as VQGAN-CLIP does. Off, the
   * decoder sees the latent itself (a smooth function of it, which is what gradient checks need).
   * @defaultValue true
   */
  readonly quantize?: boolean;
  /** Adds `init_weight * mean((image - init_image)^2)` to the loss, with both as inputs. @defaultValue false */
  readonly initImage?: boolean;
  /**
   * Gradient through the [0, 1] clamp of the image: 'through' lets it pass wherever it pulls a
   * saturated pixel back into range (VQGAN-CLIP's ClampWithGrad); 'exact' is torch.clamp's.
   * @defaultValue 'through'
   */
  readonly clampGradient?: 'through' | 'exact';
}

export const DefaultStepGraphSpec = {
  quantize: true,
  initImage: false,
  clampGradient: 'through',
} as const satisfies Required<Pick<StepGraphSpec, 'quantize' | 'initImage' | 'clampGradient'>>;

/** Input and output names of the step graph. */
export const STEP_INPUTS = {
  z: 'z',
  rows: 'rows',
  cols: 'cols',
  noise: 'noise',
  prompts: 'prompt_embeds',
  weights: 'prompt_weights',
  initImage: 'init_image',
  initWeight: 'init_weight',
} as const;

export const STEP_OUTPUTS = { loss: 'loss', losses: 'losses', image: 'image', grad: 'grad' } as const;

/** Shapes a caller needs to feed the graph. */
export interface StepShapes {
  /** [1, embed_dim, height / f, width / f] */
  readonly latent: readonly [number, number, number, number];
  /** CLIP's input side S: cutouts are S x S. */
  readonly cutoutSize: number;
  /** CLIP's embedding width D. */
  readonly embedDim: number;
}

export function stepShapes(models: GenerationModels, spec: StepGraphSpec): StepShapes {
  const f = vqganFactor(models.vqgan.config);
  const { width, height, cutouts, prompts } = spec;
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % f !== 0) {
      throw new GraphError(`step graph: ${name} ${v} must be a positive multiple of the VQGAN factor ${f}`);
    }
  }
  if (!Number.isInteger(cutouts) || cutouts < 1)
    throw new GraphError(`step graph: cutouts ${cutouts} must be >= 1`);
  if (!Number.isInteger(prompts) || prompts < 1)
    throw new GraphError(`step graph: prompts ${prompts} must be >= 1`);
  return {
    latent: [1, models.vqgan.config.embed_dim, height / f, width / f],
    cutoutSize: models.clip.config.vision_config.image_size,
    embedDim: models.clip.config.projection_dim,
  };
}

export interface BuiltStepGraph {
  readonly bytes: Uint8Array;
  readonly shapes: StepShapes;
  readonly spec: Required<StepGraphSpec>;
  /** Bytes of all the graph's node outputs (Graph.emittedBytes): its memory with no reuse at all. */
  readonly activationBytes: number;
}

/**
 * Step sessions run with ORT's memory arena and memory-pattern planner when the graph's node outputs
 * (Graph.emittedBytes: every activation with no reuse, more than the planner ever reserves) fit in a
 * budget of this fraction of the machine's memory; larger ones run without, allocating each tensor
 * fresh. The arena is what makes a step fast: without it every large tensor is a fresh mmap that both
 * threads page-fault into and munmap after. Measured at full size, 256x256 with 32 cutouts, 2 threads,
 * quiet cores (2 Dec 2026): 6.6-7.8 s a step with the arena against 9.3-10.3 s without; the CPU time
 * that goes is the kernel's (system time 1-1.7 s a step without, 0.04 s with); peak RSS 7.9 GiB against
 * 4.5 GiB. On the tiny models at 128 px it saves ~15 ms of ~55 (bench tiny-step). 0.6 of the memory
 * keeps a 24 GiB machine's largest default step (256 px, 32 cutouts: 13.2 GiB of outputs, ~7.9 GiB
 * reserved) on the arena and a 16 GiB laptop's off it at that size.
 */
export const STEP_ARENA_MEMORY_FRACTION = 0.6;

/** The arena budget of this machine: STEP_ARENA_MEMORY_FRACTION of its memory, in bytes. */
export function defaultStepMemoryBudget(): number {
  return Math.floor(totalmem() * STEP_ARENA_MEMORY_FRACTION);
}

/** ModelSession options for a step graph of this size (see STEP_ARENA_MEMORY_FRACTION). */
export function stepSessionMemory(
  activationBytes: number,
  budgetBytes: number = defaultStepMemoryBudget(),
): { memoryArena: boolean } {
  return { memoryArena: activationBytes <= budgetBytes };
}

/** The step graph before serialisation: the graph and its four outputs. */
export interface StepGraph {
  readonly graph: Graph;
  readonly outputs: Readonly<Record<(typeof STEP_OUTPUTS)[keyof typeof STEP_OUTPUTS], Tensor>>;
  readonly shapes: StepShapes;
  readonly spec: Required<StepGraphSpec>;
}

/** Builds the step graph into `g` (a fresh Graph by default; benchmarks pass one that counts FLOPs). */
export function stepGraph(
  models: GenerationModels,
  specIn: StepGraphSpec,
  g: Graph = new Graph(),
): StepGraph {
  const spec = { ...DefaultStepGraphSpec, ...specIn };
  const shapes = stepShapes(models, spec);
  const { width: W, height: H, cutouts: K, prompts: P } = spec;
  const S = shapes.cutoutSize;
  const z = g.input(STEP_INPUTS.z, shapes.latent);
  const rows = g.input(STEP_INPUTS.rows, [K, S, H]);
  const cols = g.input(STEP_INPUTS.cols, [K, S, W]);
  const noise = g.input(STEP_INPUTS.noise, [K, 3, S, S]);
  const promptEmbeds = g.input(STEP_INPUTS.prompts, [P, shapes.embedDim]);
  const promptWeights = g.input(STEP_INPUTS.weights, [P]);

  const { vqgan, clip: clipModel } = models;
  const zq = spec.quantize ? vqganQuantize(g, z, vqgan.config, vqgan.weights).quantized : z;
  const decoded = vqganDecode(g, zq, vqgan.config, vqgan.weights);
  const unit = mul(add(decoded, 1), 0.5);
  const image = spec.clampGradient === 'through' ? clampWithGrad(unit, 0, 1) : clip(unit, 0, 1);

  // cutout_k = rows_k . img . cols_k^T per channel, batched: [K,1,S,H] @ [1,3,H,W] @ [K,1,W,S].
  const colsT = transpose(reshape(cols, [K, 1, S, W]), [0, 1, 3, 2]);
  const cut = matmul(matmul(reshape(rows, [K, 1, S, H]), image), colsT);
  const pixels = mul(
    sub(add(cut, noise), g.constant(Float32Array.from(CLIP_MEAN), [1, 3, 1, 1], { name: 'clip_mean' })),
    g.constant(
      Float32Array.from(CLIP_STD, (s) => 1 / s),
      [1, 3, 1, 1],
      { name: 'clip_inv_std' },
    ),
  );
  const { embeds } = clipVision(g, pixels, clipModel.config, clipModel.weights);
  const distances = sphericalDistance(l2Normalize(embeds, -1), promptEmbeds); // [K, P]
  const losses = reduceMean(distances, [0]); // [P]
  let loss: Tensor = reduceSum(mul(losses, promptWeights));
  if (spec.initImage) {
    const init = g.input(STEP_INPUTS.initImage, [1, 3, H, W]);
    const initWeight = g.input(STEP_INPUTS.initWeight, []);
    const diff = sub(image, init);
    loss = add(loss, mul(reduceMean(mul(diff, diff)), initWeight));
  }
  const [gz] = grad(loss, [z]);
  return { graph: g, outputs: { loss, losses, image, grad: gz! }, shapes, spec };
}

/** Builds and serialises the step graph. */
export function buildStepGraph(models: GenerationModels, spec: StepGraphSpec): BuiltStepGraph {
  const built = stepGraph(models, spec);
  const bytes = serialize(built.graph, { outputs: built.outputs, name: 'vqgan_clip_step' }).bytes;
  return { bytes, shapes: built.shapes, spec: built.spec, activationBytes: built.graph.emittedBytes };
}

/** One step's inputs as flat arrays in the shapes of StepShapes. */
export interface StepFeeds {
  readonly z: Float32Array;
  /** [K, S, H] */
  readonly rows: Float32Array;
  /** [K, S, W] */
  readonly cols: Float32Array;
  /** [K, 3, S, S] */
  readonly noise: Float32Array;
  /** [P, D], unit rows. */
  readonly prompts: Float32Array;
  /** [P] */
  readonly weights: Float32Array;
  /** [1, 3, H, W] in [0, 1]; required when the graph has the init-image term. */
  readonly initImage?: Float32Array;
  readonly initWeight?: number;
}

export interface StepOutputs {
  /** The weighted total. */
  readonly loss: number;
  /** [P] mean spherical distance to each prompt, unweighted. */
  readonly losses: Float32Array;
  /** [1, 3, H, W] in [0, 1]: the image of the latent fed in. */
  readonly image: Float32Array;
  /** d(loss)/d(latent), the latent's shape. */
  readonly grad: Float32Array;
}

/** An inference session of one step graph, fed and read with plain arrays. */
export class StepSession {
  private constructor(
    private readonly session: ModelSession,
    readonly spec: Required<StepGraphSpec>,
    readonly shapes: StepShapes,
    /** The graph's node outputs in bytes (Graph.emittedBytes). */
    readonly activationBytes: number,
    /** Whether it runs on ORT's memory arena (stepSessionMemory, unless the options said). */
    readonly memoryArena: boolean,
  ) {}

  /**
   * Builds the graph and its session; the memory arena by stepSessionMemory against `budgetBytes`
   * unless `options.memoryArena` says.
   */
  static async create(
    models: GenerationModels,
    spec: StepGraphSpec,
    options: SessionOptions = {},
    budgetBytes?: number,
  ): Promise<StepSession> {
    const built = buildStepGraph(models, spec);
    return StepSession.open(
      built.bytes,
      built.spec,
      built.shapes,
      built.activationBytes,
      options,
      budgetBytes,
    );
  }

  /** A session of a step graph built with stepGraph() (e.g. into a FLOP-counting Graph). */
  static async fromGraph(
    built: StepGraph,
    options: SessionOptions = {},
    budgetBytes?: number,
  ): Promise<StepSession> {
    const bytes = serialize(built.graph, { outputs: built.outputs, name: 'vqgan_clip_step' }).bytes;
    return StepSession.open(bytes, built.spec, built.shapes, built.graph.emittedBytes, options, budgetBytes);
  }

  private static async open(
    bytes: Uint8Array,
    spec: Required<StepGraphSpec>,
    shapes: StepShapes,
    activationBytes: number,
    options: SessionOptions,
    budgetBytes: number | undefined,
  ): Promise<StepSession> {
    const memoryArena = options.memoryArena ?? stepSessionMemory(activationBytes, budgetBytes).memoryArena;
    const session = await ModelSession.create(bytes, { ...options, memoryArena });
    return new StepSession(session, spec, shapes, activationBytes, memoryArena);
  }

  get provider(): string {
    return this.session.provider;
  }

  async run(feeds: StepFeeds): Promise<StepOutputs> {
    const { width: W, height: H, cutouts: K, prompts: P } = this.spec;
    const S = this.shapes.cutoutSize;
    const input: Record<string, { data: Float32Array; dims: readonly number[] }> = {
      [STEP_INPUTS.z]: { data: feeds.z, dims: this.shapes.latent },
      [STEP_INPUTS.rows]: { data: feeds.rows, dims: [K, S, H] },
      [STEP_INPUTS.cols]: { data: feeds.cols, dims: [K, S, W] },
      [STEP_INPUTS.noise]: { data: feeds.noise, dims: [K, 3, S, S] },
      [STEP_INPUTS.prompts]: { data: feeds.prompts, dims: [P, this.shapes.embedDim] },
      [STEP_INPUTS.weights]: { data: feeds.weights, dims: [P] },
    };
    if (this.spec.initImage) {
      if (!feeds.initImage) throw new GraphError('step graph: this graph needs an init image');
      input[STEP_INPUTS.initImage] = { data: feeds.initImage, dims: [1, 3, H, W] };
      input[STEP_INPUTS.initWeight] = { data: new Float32Array([feeds.initWeight ?? 0]), dims: [] };
    }
    const out = await this.session.run(input);
    return {
      loss: (out[STEP_OUTPUTS.loss]!.data as Float32Array)[0]!,
      losses: out[STEP_OUTPUTS.losses]!.data as Float32Array,
      image: out[STEP_OUTPUTS.image]!.data as Float32Array,
      grad: out[STEP_OUTPUTS.grad]!.data as Float32Array,
    };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** A step session borrowed from the cache; give it back with release(). */
export interface StepLease {
  readonly session: StepSession;
  release(): Promise<void>;
}

interface CacheEntry {
  readonly key: string;
  readonly session: Promise<StepSession>;
  users: number;
  lastUsed: number;
  /** What its arena may hold once built (its activation bytes if on the arena, else 0). */
  arenaBytes: number;
}

export interface StepGraphCacheOptions {
  /** Idle sessions kept; a full-size one holds ~1-2 GB. @defaultValue 2 */
  readonly maxEntries?: number;
  /** @defaultValue {} (CPU) */
  readonly session?: SessionOptions;
  /**
   * Bytes the step sessions' memory arenas may hold together (stepSessionMemory): a session over it
   * runs without the arena, and idle arena sessions are released, least recently used first, while
   * the arenas of all sessions add up to more. @defaultValue defaultStepMemoryBudget()
   */
  readonly memoryBudgetBytes?: number;
}

/**
 * Step sessions keyed by (models, size, cutouts, prompt count, flags): building one at full size
 * takes seconds, so a worker reuses them across jobs. Sessions in use are never released; idle
 * ones beyond maxEntries are, least recently used first.
 */
export class StepGraphCache {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly maxEntries: number;
  private readonly sessionOptions: SessionOptions;
  /** What the arenas of its sessions may hold together (StepGraphCacheOptions.memoryBudgetBytes). */
  readonly memoryBudgetBytes: number;
  private tick = 0;

  constructor(options: StepGraphCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 2;
    this.sessionOptions = options.session ?? {};
    this.memoryBudgetBytes = options.memoryBudgetBytes ?? defaultStepMemoryBudget();
  }

  get size(): number {
    return this.entries.size;
  }

  async acquire(models: GenerationModels, specIn: StepGraphSpec): Promise<StepLease> {
    const spec = { ...DefaultStepGraphSpec, ...specIn };
    const key = cacheKey(models, spec);
    let entry = this.entries.get(key);
    const built = !entry;
    if (!entry) {
      const session = StepSession.create(models, spec, this.sessionOptions, this.memoryBudgetBytes);
      const created: CacheEntry = { key, session, users: 0, lastUsed: 0, arenaBytes: 0 };
      session.then(
        (s) => {
          created.arenaBytes = s.memoryArena ? s.activationBytes : 0;
        },
        // A failed build must not stay cached.
        () => this.entries.delete(key),
      );
      entry = created;
      this.entries.set(key, entry);
    }
    entry.users++;
    entry.lastUsed = ++this.tick;
    let session: StepSession;
    try {
      session = await entry.session;
    } catch (err) {
      entry.users--;
      throw err;
    }
    // A new arena session may put the arenas over the budget: idle ones go before it first runs.
    if (built) await this.evict();
    const held = entry;
    let released = false;
    return {
      session,
      release: async () => {
        if (released) return;
        released = true;
        held.users--;
        await this.evict();
      },
    };
  }

  /** Releases every idle session. */
  async clear(): Promise<void> {
    const idle = [...this.entries.values()].filter((e) => e.users === 0);
    for (const e of idle) this.entries.delete(e.key);
    await Promise.all(idle.map(async (e) => (await e.session).release()));
  }

  private async evict(): Promise<void> {
    const idle = [...this.entries.values()]
      .filter((e) => e.users === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    const drop = idle.splice(0, Math.max(0, this.entries.size - this.maxEntries));
    let arenas = 0;
    for (const e of this.entries.values()) if (!drop.includes(e)) arenas += e.arenaBytes;
    for (const e of idle) {
      if (arenas <= this.memoryBudgetBytes) break;
      if (e.arenaBytes === 0) continue;
      drop.push(e);
      arenas -= e.arenaBytes;
    }
    for (const e of drop) this.entries.delete(e.key);
    await Promise.all(drop.map(async (e) => (await e.session).release()));
  }
}

const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) {
    id = nextId++;
    ids.set(o, id);
  }
  return id;
}

function cacheKey(models: GenerationModels, spec: Required<StepGraphSpec>): string {
  return JSON.stringify([
    idOf(models.clip.weights),
    idOf(models.vqgan.weights),
    models.clip.config,
    models.vqgan.config,
    spec,
  ]);
}
