// What a generation is asked for and what it resolves to: a GenerateRequest (prompt, optional preset,
// sizes, optimiser settings, where the latent starts) is checked against the limits and the models,
// then every parameter is filled in (request, then saved state, then preset, then defaults), before
// the loop (loop.ts) does any work. Pure: no sessions, no I/O.
import { BadInputError } from '../../shared/errors.js';
import { presets } from '../../shared/jobs.js';
import { parsePrompt, type WeightedPrompt } from '../../shared/prompt.js';
import { vqganFactor } from '../models/vqgan.js';
import type { Latent } from './latent.js';
import { type Device, type Preset, presetSettings } from './presets.js';
import { randomSeed } from './rng.js';
import type { GenerationParams, GenerationState } from './state.js';
import type { GenerationModels } from './step-graph.js';

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
  // Typed, but requests also come from plain JavaScript (the CLI, tests).
  if (!(presets as readonly string[]).includes(preset)) bad('preset', `unknown preset "${preset}"`);
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
