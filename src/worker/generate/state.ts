// What a finished (or stopped) generation leaves behind so that Continue and Variations work: the
// resolved parameters and seed, the step count, the latent and Adam's moments, and the init image
// while its loss term is still active. Encoded as one binary blob (JSON header + float32 arrays),
// exact to the bit, so a continued run matches one uninterrupted run.
import { z } from 'zod';
import { BadInputError } from '../../shared/errors.js';
import { type Preset, presets } from '../../shared/jobs.js';
import type { AdamState } from './adam.js';
import type { Latent } from './latent.js';

/** Everything that decided a run's images, as resolved from the request, preset and defaults. */
export interface GenerationParams {
  readonly prompts: readonly { readonly text: string; readonly weight: number }[];
  /** Weights of the image prompts (their embeddings are not kept). */
  readonly imagePromptWeights: readonly number[];
  readonly seed: number;
  /** Total steps, counted from the first run of this latent. */
  readonly steps: number;
  readonly width: number;
  readonly height: number;
  readonly cutouts: number;
  readonly lr: number;
  readonly lrDecay: number;
  readonly cutPow: number;
  readonly minCutFraction: number;
  readonly noise: number;
  readonly init: 'random' | 'image' | 'latent';
  readonly initWeight: number;
  /** Steps over which the init-image weight falls linearly to zero. */
  readonly initDecaySteps: number;
  readonly preset?: Preset | undefined;
}

export interface GenerationState {
  readonly version: 1;
  readonly params: GenerationParams;
  /** Steps taken so far. */
  readonly step: number;
  readonly latent: Latent;
  readonly adam: AdamState;
  /** Planar 8-bit RGB [3, H, W] of the init image, while its loss term still has weight. */
  readonly initPixels?: Uint8Array;
}

const MAGIC = 'VQCS';

const paramsSchema = z.object({
  prompts: z.array(z.object({ text: z.string(), weight: z.number() })),
  imagePromptWeights: z.array(z.number()),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
  steps: z.number().int().min(0),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  cutouts: z.number().int().positive(),
  lr: z.number().positive(),
  lrDecay: z.number().positive(),
  cutPow: z.number().positive(),
  minCutFraction: z.number().positive().max(1),
  noise: z.number().min(0),
  init: z.enum(['random', 'image', 'latent']),
  initWeight: z.number().min(0),
  initDecaySteps: z.number().int().min(0),
  preset: z.enum(presets).optional(),
});

const headerSchema = z.object({
  version: z.literal(1),
  params: paramsSchema,
  step: z.number().int().min(0),
  adamT: z.number().int().min(0),
  latentDims: z.tuple([
    z.literal(1),
    z.number().int().positive(),
    z.number().int().positive(),
    z.number().int().positive(),
  ]),
  initPixels: z.number().int().min(0),
});

export function encodeState(state: GenerationState): Uint8Array {
  const n = state.latent.data.length;
  if (state.adam.m.length !== n || state.adam.v.length !== n) {
    throw new RangeError(
      `state: Adam moments (${state.adam.m.length}, ${state.adam.v.length}) do not match the latent (${n})`,
    );
  }
  const header = new TextEncoder().encode(
    JSON.stringify({
      version: 1,
      params: state.params,
      step: state.step,
      adamT: state.adam.t,
      latentDims: state.latent.dims,
      initPixels: state.initPixels?.length ?? 0,
    }),
  );
  // Floats start on a 4-byte boundary so they can be read in place.
  const headerEnd = 8 + header.length;
  const floatsAt = Math.ceil(headerEnd / 4) * 4;
  const total = floatsAt + 3 * n * 4 + (state.initPixels?.length ?? 0);
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(4, header.length, true);
  out.set(header, 8);
  const floats = new Float32Array(out.buffer, floatsAt, 3 * n);
  floats.set(state.latent.data, 0);
  floats.set(state.adam.m, n);
  floats.set(state.adam.v, 2 * n);
  if (state.initPixels) out.set(state.initPixels, floatsAt + 3 * n * 4);
  return out;
}

/** Reads a blob written by encodeState; BadInputError when it is not one. */
export function decodeState(bytes: Uint8Array): GenerationState {
  const bad = (why: string): never => {
    throw new BadInputError(`saved generation state is unreadable: ${why}`, { reason: 'bad_state' });
  };
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) bad('not a state blob');
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + headerLength > bytes.length) bad('truncated header');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    bad('header is not JSON');
  }
  const parsed = headerSchema.safeParse(json);
  if (!parsed.success)
    return bad(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const h = parsed.data;
  const n = h.latentDims.reduce((a, b) => a * b, 1);
  const floatsAt = Math.ceil((8 + headerLength) / 4) * 4;
  if (floatsAt + 3 * n * 4 + h.initPixels !== bytes.length) bad('size does not match the header');
  // Copy out: the blob's buffer may be shared or unaligned. Not with bytes.slice: a Node Buffer's
  // slice is a view, and its .buffer the whole (pooled) allocation.
  const floats = new Float32Array(3 * n);
  new Uint8Array(floats.buffer).set(bytes.subarray(floatsAt, floatsAt + 3 * n * 4));
  const { preset, ...rest } = h.params;
  return {
    version: 1,
    params: preset === undefined ? rest : { ...rest, preset },
    step: h.step,
    latent: { data: floats.slice(0, n), dims: h.latentDims },
    adam: { m: floats.slice(n, 2 * n), v: floats.slice(2 * n, 3 * n), t: h.adamT },
    ...(h.initPixels > 0 && { initPixels: Uint8Array.from(bytes.subarray(floatsAt + 3 * n * 4)) }),
  };
}
