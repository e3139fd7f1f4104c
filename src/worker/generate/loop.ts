// The generation loop behind /imagine: resolves a request (request.ts), embeds its prompts, starts
// a latent (seed, init image, saved latent or saved state), then runs the cached step graph and Adam
// step by step as an async iterator of progress, previews and, last, the result (final PNG,
// timelapse, and the state that Continue and Variations start from).
import { CancelledError, CodedError, InternalError } from '../../shared/errors.js';
import type { CoverLimits } from '../../shared/image/cover.js';
import type { SessionOptions } from '../onnx/session.js';
import { type AdamState, adamClone, adamInit, adamStep } from './adam.js';
import { makeCutouts } from './cutouts.js';
import { decodeImage8, type EncodedImage, encodeImage, type ImageFormat, unitFloats } from './image.js';
import { encodeLatent, type Latent, randomLatent } from './latent.js';
import type { Device } from './presets.js';
import {
  DefaultGenerateLimits,
  type GenerateLimits,
  type GenerateRequest,
  resolveRequest,
} from './request.js';
import { Rng } from './rng.js';
import type { GenerationParams, GenerationState } from './state.js';
import { type GenerationModels, type StepFeeds, StepGraphCache } from './step-graph.js';
import { type Timelapse, type TimelapseOptions, TimelapseRecorder } from './timelapse.js';

// The request types are part of generate()'s signature: its callers find them here too.
export type { GenerateInit, GenerateLimits, GenerateRequest, ImagePromptInput } from './request.js';

/** The models and the prompt embedders (ClipEmbedder in embed.ts, or anything equivalent). */
export interface GenerateDeps extends GenerationModels {
  /** Unit (or any-length: they are normalised again) CLIP embeddings [D] of each text. */
  embedTexts(texts: readonly string[]): Promise<Float32Array[]>;
  /** Embeddings [D] of planar [3, S, S] images in [0, 1]; needed only for image prompts. */
  embedImages?(pixels: readonly Float32Array[]): Promise<Float32Array[]>;
}

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
