// The generation loop behind /imagine: validates and resolves a request, embeds its prompts, starts
// a latent (seed, init image, saved latent or saved state), then runs the cached step graph and Adam
// step by step as an async iterator of progress, previews and, last, the result (final PNG,
// timelapse, and the state that Continue and Variations start from).
import { BadInputError, CancelledError, CodedError, InternalError } from '../../shared/errors.js';
import type { CoverLimits } from '../../shared/image/cover.js';
import { parsePrompt, type WeightedPrompt } from '../../shared/prompt.js';
import { vqganFactor } from '../models/vqgan.js';
import type { SessionOptions } from '../onnx/session.js';
import { type AdamState, adamClone, adamInit, adamStep } from './adam.js';
import { makeCutouts } from './cutouts.js';
import { decodeImage8, type EncodedImage, encodeImage, type ImageFormat, unitFloats } from './image.js';
import { encodeLatent, type Latent, randomLatent } from './latent.js';
import { type Device, type Preset, presetSettings } from './presets.js';
import { Rng, randomSeed } from './rng.js';
import type { GenerationParams, GenerationState } from './state.js';
import { type GenerationModels, type StepFeeds, StepGraphCache } from './step-graph.js';
import { type Timelapse, type TimelapseOptions, TimelapseRecorder } from './timelapse.js';

export interface ImagePromptInput {
  /** Encoded image bytes (any format sharp reads). */
  readonly image: Uint8Array;
  /** @defaultValue 1 */
  readonly weight?: number;
}

/** Where the latent starts. */
export type GenerateInit =
  /** Random codebook entries drawn from the seed. */
  | { readonly kind: 'random' }
  /** An image through the VQGAN encoder; `weight` > 0 adds an MSE pull toward it that fades over `decaySteps`. */
  | {
      readonly kind: 'image';
      readonly image: Uint8Array;
      readonly weight?: number;
      readonly decaySteps?: number;
    }
  /** A saved latent with a fresh optimiser (Variations: usually with a new seed). */
  | { readonly kind: 'latent'; readonly latent: Latent }
  /** A saved state: latent, optimiser, step count and parameters (Continue). */
  | { readonly kind: 'state'; readonly state: GenerationState };

export interface GenerateRequest {
  /** Weighted prompt syntax: `a watercolor teacher:1 | blurry:-0.5`. */
  readonly prompt: string;
  readonly imagePrompts?: readonly ImagePromptInput[];
  /** 32-bit unsigned seed. @defaultValue the state's seed when continuing, else random */
  readonly seed?: number;
  /** Picks steps, size and cutouts where not given. @defaultValue the state's preset, else 'normal' */
  readonly preset?: Preset;
  /** Steps of this run; when continuing, the steps added. */
  readonly steps?: number;
  /** Pixels, multiples of the VQGAN factor (16 for f16). Fixed by the latent when starting from one. */
  readonly width?: number;
  readonly height?: number;
  readonly cutouts?: number;
  /** @defaultValue 0.1 */
  readonly lr?: number;
  /** Per-step multiplicative learning-rate decay. @defaultValue 1 */
  readonly lrDecay?: number;
  /** Crop sizes favour small crops above 1. @defaultValue 1 */
  readonly cutPow?: number;
  /** Smallest crop side as a fraction of the image's short side. @defaultValue 0.25 */
  readonly minCutFraction?: number;
  /** Per-cutout Gaussian noise std is drawn uniformly from [0, noise]. @defaultValue 0.1 */
  readonly noise?: number;
  /** @defaultValue { kind: 'random' } */
  readonly init?: GenerateInit;
  /** Wall-clock budget of this run, setup included: it ends early, cleanly, with a full result. */
  readonly timeBudgetMs?: number;
}

/** The models and the prompt embedders (ClipEmbedder in embed.ts, or anything equivalent). */
export interface GenerateDeps extends GenerationModels {
  /** Unit (or any-length: they are normalised again) CLIP embeddings [D] of each text. */
  embedTexts(texts: readonly string[]): Promise<Float32Array[]>;
  /** Embeddings [D] of planar [3, S, S] images in [0, 1]; needed only for image prompts. */
  embedImages?(pixels: readonly Float32Array[]): Promise<Float32Array[]>;
}

export interface GenerateLimits {
  /** @defaultValue 1000 */
  readonly maxSteps?: number;
  /** @defaultValue 16 */
  readonly minSide?: number;
  /** @defaultValue 1024 */
  readonly maxSide?: number;
  /** @defaultValue 1024 * 1024 */
  readonly maxPixels?: number;
  /** @defaultValue 128 */
  readonly maxCutouts?: number;
  /** @defaultValue 8 */
  readonly maxImagePrompts?: number;
}

export const DefaultGenerateLimits = {
  maxSteps: 1000,
  minSide: 16,
  maxSide: 1024,
  maxPixels: 1024 * 1024,
  maxCutouts: 128,
  maxImagePrompts: 8,
} as const satisfies Required<GenerateLimits>;

export interface GenerateOptions {
  readonly signal?: AbortSignal;
  /** Step sessions shared across runs. @defaultValue a process-wide cache of 2 */
  readonly cache?: StepGraphCache;
  /** Which preset table applies. @defaultValue 'cpu' */
  readonly device?: Device;
  /** Milliseconds clock (injectable for tests). @defaultValue performance.now */
  readonly now?: () => number;
  /** A preview every this many steps; 0 turns step-based previews off. @defaultValue 10 */
  readonly previewEvery?: number;
  /** A preview when this long has passed since the last one; Infinity turns it off. @defaultValue 5000 */
  readonly previewIntervalMs?: number;
  /** @defaultValue 'webp' */
  readonly previewFormat?: ImageFormat;
  /** Timelapse settings, or false for none. @defaultValue {} */
  readonly timelapse?: TimelapseOptions | false;
  readonly limits?: GenerateLimits;
  readonly decodeLimits?: CoverLimits;
  /** Options of the one-off init-image encoder session. */
  readonly session?: SessionOptions;
}

export const DefaultGenerateOptions = {
  device: 'cpu',
  previewEvery: 10,
  previewIntervalMs: 5000,
  previewFormat: 'webp',
} as const satisfies Pick<
  Required<GenerateOptions>,
  'device' | 'previewEvery' | 'previewIntervalMs' | 'previewFormat'
>;

export interface StepEvent {
  readonly type: 'step';
  /** Steps taken, counted from the latent's first run. */
  readonly step: number;
  /** Total steps this run ends at. */
  readonly steps: number;
  /** Weighted loss of the latent before this step's update. */
  readonly loss: number;
  /** Mean spherical distance to each prompt (text prompts, then image prompts), unweighted. */
  readonly losses: readonly number[];
  readonly elapsedMs: number;
  readonly etaMs: number;
}

export interface PreviewEvent {
  readonly type: 'preview';
  /** Steps taken by the latent shown. */
  readonly step: number;
  readonly image: EncodedImage;
}

export interface GenerateResult {
  /** The final image, PNG. */
  readonly image: EncodedImage;
  readonly timelapse?: Timelapse;
  /** Latent, optimiser, parameters and seed: the input of Continue (`init: { kind: 'state' }`). */
  readonly state: GenerationState;
  readonly params: GenerationParams;
  readonly seed: number;
  /** Steps taken in this run. */
  readonly stepsRun: number;
  /** 'time' when the time budget ended the run early. */
  readonly stoppedBy: 'steps' | 'time';
  /** Loss at the first step of this run and of the final latent. */
  readonly lossFirst: number;
  readonly lossLast: number;
  /** Per-prompt distances of the final latent. */
  readonly losses: readonly number[];
  /** Loss of every step of this run. */
  readonly lossHistory: readonly number[];
  /** Milliseconds: setup (validation, embeddings, graph), steps, finish (final image, encoding), total. */
  readonly timings: {
    readonly setupMs: number;
    readonly stepsMs: number;
    readonly finishMs: number;
    readonly totalMs: number;
  };
}

export interface DoneEvent {
  readonly type: 'done';
  readonly result: GenerateResult;
}

export type GenerateEvent = StepEvent | PreviewEvent | DoneEvent;

const defaultCache = new StepGraphCache();

/** The process-wide step-session cache used when none is passed. */
export function defaultStepCache(): StepGraphCache {
  return defaultCache;
}

/** Runs a generation, yielding step and preview events, then one 'done' event with the result. */
export async function* generate(
  request: GenerateRequest,
  deps: GenerateDeps,
  options: GenerateOptions = {},
): AsyncGenerator<GenerateEvent, void, undefined> {
  const o = { ...DefaultGenerateOptions, ...options };
  const now = options.now ?? (() => performance.now());
  const signal = options.signal;
  const t0 = now();
  checkAbort(signal);

  // 1. Everything that can be wrong with the request, before any work.
  const plan = resolveRequest(request, deps, o.device, { ...DefaultGenerateLimits, ...options.limits });
  const { params } = plan;
  const { width: W, height: H, cutouts: K } = params;
  const S = deps.clip.config.vision_config.image_size;
  const D = deps.clip.config.projection_dim;
  const initPixels =
    plan.initImage !== undefined
      ? await decodeImage8(plan.initImage, W, H, options.decodeLimits)
      : plan.state?.initPixels;
  const imagePixels = await Promise.all(
    (request.imagePrompts ?? []).map(async (p) =>
      unitFloats(await decodeImage8(p.image, S, S, options.decodeLimits)),
    ),
  );
  if (imagePixels.length > 0 && !deps.embedImages) {
    throw new InternalError('image prompts were given but no image embedder is configured');
  }

  // 2. Prompt embeddings [P, D] and weights [P].
  const textEmbeds = await deps.embedTexts(params.prompts.map((p) => p.text));
  const imageEmbeds = imagePixels.length > 0 ? await deps.embedImages!(imagePixels) : [];
  const embeds = [...textEmbeds, ...imageEmbeds];
  const P = embeds.length;
  if (textEmbeds.length !== params.prompts.length || imageEmbeds.length !== imagePixels.length) {
    throw new InternalError(
      `the embedder returned ${embeds.length} embeddings for ${params.prompts.length + imagePixels.length} prompts`,
    );
  }
  const promptData = new Float32Array(P * D);
  embeds.forEach((e, i) => {
    if (e.length !== D)
      throw new InternalError(`prompt embedding ${i} has ${e.length} values, the model ${D}`);
    let norm = 0;
    for (const v of e) norm += v * v;
    const inv = 1 / Math.max(Math.sqrt(norm), 1e-12);
    for (let j = 0; j < D; j++) promptData[i * D + j] = e[j]! * inv;
  });
  const promptWeights = Float32Array.from([
    ...params.prompts.map((p) => p.weight),
    ...params.imagePromptWeights,
  ]);
  checkAbort(signal);

  // 3. The step session and the starting latent and optimiser.
  const startStep = plan.state?.step ?? 0;
  const totalSteps = params.steps;
  const initTerm = params.initWeight > 0 && initPixels !== undefined && startStep < params.initDecaySteps;
  const lease = await (options.cache ?? defaultCache).acquire(deps, {
    width: W,
    height: H,
    cutouts: K,
    prompts: P,
    initImage: initTerm,
  });
  try {
    const session = lease.session;
    let start: Latent;
    let adam: AdamState;
    if (plan.state) {
      start = plan.state.latent;
      adam = adamClone(plan.state.adam);
    } else {
      if (plan.latent) start = plan.latent;
      else if (initPixels)
        start = await encodeLatent(deps.vqgan, unitFloats(initPixels), W, H, options.session);
      else start = randomLatent(deps.vqgan, W, H, params.seed);
      adam = adamInit(start.data.length);
    }
    const z = start.data.slice(); // never mutate the caller's latent
    const initFloats = initTerm ? unitFloats(initPixels!) : undefined;
    // Two noise buffers: the next step's feeds are made while ORT still reads this step's.
    const noiseBufs = [new Float32Array(K * 3 * S * S), new Float32Array(K * 3 * S * S)] as const;
    const feedsFor = (step: number): StepFeeds => {
      const noiseBuf = noiseBufs[step % 2]!;
      const rng = new Rng(params.seed, 'cutouts', step);
      const cut = makeCutouts(() => rng.next(), {
        count: K,
        size: S,
        height: H,
        width: W,
        cutPow: params.cutPow,
        minFraction: params.minCutFraction,
      });
      if (params.noise > 0) {
        const nr = new Rng(params.seed, 'noise', step);
        const per = 3 * S * S;
        for (let k = 0; k < K; k++) nr.fillNormal(noiseBuf, nr.next() * params.noise, k * per, per);
      }
      const decay = params.initDecaySteps > 0 ? Math.max(0, 1 - step / params.initDecaySteps) : 0;
      return {
        z,
        rows: cut.rows,
        cols: cut.cols,
        noise: noiseBuf,
        prompts: promptData,
        weights: promptWeights,
        ...(initFloats && { initImage: initFloats, initWeight: params.initWeight * decay }),
      };
    };
    const recorder =
      options.timelapse === false
        ? undefined
        : new TimelapseRecorder(W, H, totalSteps - startStep, options.timelapse ?? {});
    checkAbort(signal);

    // 4. The steps.
    const loopStart = now();
    const setupMs = loopStart - t0;
    let lastPreview = loopStart;
    let stoppedBy: 'steps' | 'time' = 'steps';
    const history: number[] = [];
    const adamOptions = { lr: params.lr, decay: params.lrDecay };
    let step = startStep;
    let next = feedsFor(step);
    for (; step < totalSteps; step++) {
      checkAbort(signal);
      const done = step - startStep;
      if (request.timeBudgetMs !== undefined && done > 0) {
        const perStep = (now() - loopStart) / done;
        // Room for this step and the final evaluation, or stop here.
        if (now() - t0 + 2 * perStep > request.timeBudgetMs) {
          stoppedBy = 'time';
          break;
        }
      }
      const running = session.run(next);
      // session.run works on ORT's threads: make the next step's cutouts and noise meanwhile
      // (they depend only on the seed and the step; the latent array is updated in place later).
      next = feedsFor(step + 1);
      const out = await running;
      checkAbort(signal);
      if (!Number.isFinite(out.loss)) {
        throw new InternalError(`the loss is ${out.loss} at step ${step}; a lower learning rate may help`);
      }
      let preview: EncodedImage | undefined;
      const byStep = o.previewEvery > 0 && done > 0 && done % o.previewEvery === 0;
      const byTime = done > 0 && now() - lastPreview >= o.previewIntervalMs;
      if (byStep || byTime) {
        preview = await encodeImage(out.image, W, H, o.previewFormat);
        lastPreview = now();
      }
      if (recorder?.wants(done)) await recorder.add(out.image);
      adamStep(z, out.grad, adam, adamOptions);
      history.push(out.loss);
      const t = now();
      const perStep = (t - loopStart) / (done + 1);
      yield {
        type: 'step',
        step: step + 1,
        steps: totalSteps,
        loss: out.loss,
        losses: Array.from(out.losses),
        elapsedMs: t - t0,
        // The steps left and the final evaluation.
        etaMs: perStep * (totalSteps - step),
      };
      if (preview) yield { type: 'preview', step, image: preview };
    }

    // 5. The final latent's image and loss, the timelapse, and the state to continue from.
    checkAbort(signal);
    const loopEnd = now();
    const final = await session.run(next);
    if (recorder) await recorder.addFinal(final.image);
    const image = await encodeImage(final.image, W, H, 'png');
    const timelapse = await recorder?.encode();
    const finalParams: GenerationParams = { ...params, steps: step };
    const keepInit = params.initWeight > 0 && initPixels !== undefined && step < params.initDecaySteps;
    const state: GenerationState = {
      version: 1,
      params: finalParams,
      step,
      latent: { data: z, dims: start.dims },
      adam,
      ...(keepInit && { initPixels: initPixels! }),
    };
    const end = now();
    yield {
      type: 'done',
      result: {
        image,
        ...(timelapse && { timelapse }),
        state,
        params: finalParams,
        seed: params.seed,
        stepsRun: step - startStep,
        stoppedBy,
        lossFirst: history[0] ?? final.loss,
        lossLast: final.loss,
        losses: Array.from(final.losses),
        lossHistory: history,
        timings: { setupMs, stepsMs: loopEnd - loopStart, finishMs: end - loopEnd, totalMs: end - t0 },
      },
    };
  } finally {
    await lease.release();
  }
}

/** Runs a generation to the end and returns its result; `onEvent` sees every step and preview. */
export async function runGeneration(
  request: GenerateRequest,
  deps: GenerateDeps,
  options: GenerateOptions = {},
  onEvent?: (event: StepEvent | PreviewEvent) => void | Promise<void>,
): Promise<GenerateResult> {
  for await (const event of generate(request, deps, options)) {
    if (event.type === 'done') return event.result;
    await onEvent?.(event);
  }
  throw new InternalError('the generation ended without a result');
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw signal.reason instanceof CodedError ? signal.reason : new CancelledError();
}

export interface GenerationPlan {
  readonly params: GenerationParams;
  readonly initImage?: Uint8Array;
  readonly latent?: Latent;
  readonly state?: GenerationState;
}

function bad(field: string, message: string): never {
  throw new BadInputError(message, { field });
}

function checkInt(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max)
    bad(field, `${field} must be a whole number from ${min} to ${max}, got ${v}`);
  return v;
}

function checkNumber(field: string, v: number, min: number, max: number, minOpen = false): number {
  if (!Number.isFinite(v) || v > max || (minOpen ? v <= min : v < min)) {
    bad(field, `${field} must be ${minOpen ? 'above' : 'at least'} ${min} and at most ${max}, got ${v}`);
  }
  return v;
}

/** Validates the request and resolves every parameter (request, then saved state, then preset, then defaults). */
export function resolveRequest(
  request: GenerateRequest,
  models: GenerationModels,
  device: Device,
  limits: Required<GenerateLimits>,
): GenerationPlan {
  const prompts: WeightedPrompt[] = parsePrompt(request.prompt);
  const init = request.init ?? { kind: 'random' };
  const state = init.kind === 'state' ? init.state : undefined;
  const base = state?.params;
  const preset = request.preset ?? base?.preset ?? 'normal';
  if (!['draft', 'normal', 'better'].includes(preset)) bad('preset', `unknown preset "${preset}"`);
  const ps = presetSettings(preset, device);
  const vq = models.vqgan.config;
  const f = vqganFactor(vq);

  // A latent fixes the size.
  const latent = init.kind === 'latent' ? init.latent : state?.latent;
  let width = request.width ?? base?.width ?? ps.width;
  let height = request.height ?? base?.height ?? ps.height;
  if (latent) {
    const [one, d, h, w] = latent.dims;
    if (one !== 1 || d !== vq.embed_dim || latent.data.length !== d * h * w) {
      bad(
        'init',
        `the saved latent [${latent.dims.join(', ')}] does not fit this VQGAN (embed_dim ${vq.embed_dim})`,
      );
    }
    if (
      (request.width !== undefined && request.width !== w * f) ||
      (request.height !== undefined && request.height !== h * f)
    ) {
      bad('size', `a saved latent fixes the size to ${w * f}x${h * f}`);
    }
    width = w * f;
    height = h * f;
  }
  for (const [field, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    checkInt(field, v, limits.minSide, limits.maxSide);
    if (v % f !== 0) bad(field, `${field} must be a multiple of ${f}, got ${v}`);
  }
  if (width * height > limits.maxPixels) bad('size', `${width}x${height} exceeds ${limits.maxPixels} pixels`);
  const runSteps = checkInt('steps', request.steps ?? ps.steps, 1, limits.maxSteps);
  const cutouts = checkInt('cutouts', request.cutouts ?? base?.cutouts ?? ps.cutouts, 1, limits.maxCutouts);
  const lr = checkNumber('lr', request.lr ?? base?.lr ?? 0.1, 0, 10, true);
  const lrDecay = checkNumber('lrDecay', request.lrDecay ?? base?.lrDecay ?? 1, 0, 1, true);
  const cutPow = checkNumber('cutPow', request.cutPow ?? base?.cutPow ?? 1, 0, 10, true);
  const minCutFraction = checkNumber(
    'minCutFraction',
    request.minCutFraction ?? base?.minCutFraction ?? 0.25,
    0,
    1,
    true,
  );
  const noise = checkNumber('noise', request.noise ?? base?.noise ?? 0.1, 0, 1);
  const seed = checkInt('seed', request.seed ?? base?.seed ?? randomSeed(), 0, 2 ** 32 - 1);
  if (request.timeBudgetMs !== undefined)
    checkNumber('timeBudgetMs', request.timeBudgetMs, 0, Number.MAX_VALUE, true);

  const imagePrompts = request.imagePrompts ?? [];
  if (imagePrompts.length > limits.maxImagePrompts) {
    bad(
      'imagePrompts',
      `at most ${limits.maxImagePrompts} image prompts are allowed, got ${imagePrompts.length}`,
    );
  }
  const imagePromptWeights = imagePrompts.map((p, i) =>
    checkNumber(`imagePrompts.${i}.weight`, p.weight ?? 1, -100, 100),
  );

  const startStep = state?.step ?? 0;
  if (state) {
    const n = state.latent.data.length;
    if (state.adam.m.length !== n || state.adam.v.length !== n)
      bad('init', 'the saved optimiser state does not match its latent');
  }
  const steps = startStep + runSteps;
  let initWeight = base?.initWeight ?? 0;
  let initDecaySteps = base?.initDecaySteps ?? steps;
  if (init.kind === 'image') {
    initWeight = checkNumber('init.weight', init.weight ?? 0, 0, 100);
    initDecaySteps = checkInt('init.decaySteps', init.decaySteps ?? steps, 1, 1_000_000);
  }
  const params: GenerationParams = {
    prompts,
    imagePromptWeights,
    seed,
    steps,
    width,
    height,
    cutouts,
    lr,
    lrDecay,
    cutPow,
    minCutFraction,
    noise,
    init: init.kind === 'state' ? (base?.init ?? 'latent') : init.kind,
    initWeight,
    initDecaySteps,
    preset,
  };
  return {
    params,
    ...(init.kind === 'image' && { initImage: init.image }),
    ...(init.kind === 'latent' && { latent: init.latent }),
    ...(state && { state }),
  };
}
