// The imagine job with `drawer: 'dalle'`: the prompt through minDALL-E (dalle/drawer.ts), the same
// progress, preview blob and result shape as the VQGAN+CLIP run (processors/imagine.ts), and a saved
// state whose latent is the kept image in the worker's VQGAN (its tokens' codebook rows when the two
// VQGANs are one), so that Continue / Refine go on from it with VQGAN+CLIP steps
// (`from: { state: latentBlob, mode: 'continue' }`).
import { randomUUID } from 'node:crypto';
import { BadInputError, InternalError, ModelMissingError } from '../../shared/errors.js';
import type { ImagineJob, ImagineProgress, ImagineResult, Safety } from '../../shared/jobs.js';
import { parsePrompt } from '../../shared/prompt.js';
import type { DrawResult } from '../dalle/drawer.js';
import type { LazyDalleDrawer } from '../dalle/lazy-drawer.js';
import { adamInit } from '../generate/adam.js';
import { encodeLatent, type Latent } from '../generate/latent.js';
import { DefaultGenerateLimits, resolveRequest } from '../generate/request.js';
import { encodeState, type GenerationState } from '../generate/state.js';
import type { ImagineContext, ImagineModels } from './imagine.js';

/** Candidates when the job names none: minDALL-E's own demo samples far more, at GPU speed. */
export const DEFAULT_CANDIDATES = 4;

/** Options of imagine that mean something to VQGAN+CLIP only. */
const VQGAN_ONLY = ['steps', 'cutouts', 'lr', 'initImage', 'imagePrompts', 'from'] as const;

/**
 * What the transformer reads: the prompt's positive parts, in order. Negative weights push
 * VQGAN+CLIP away from a text; a token stream cannot be pushed away, so they are left out.
 */
export function dalleText(prompt: string): string {
  const parts = parsePrompt(prompt).filter((p) => p.weight > 0);
  if (parts.length === 0)
    throw new BadInputError('the DALL-E drawer needs a prompt with a positive weight', { field: 'prompt' });
  return parts.map((p) => p.text).join(', ');
}

/** VQGAN+CLIP's loss for a cosine: the spherical distance 2 arcsin(|u - v| / 2)^2 of unit vectors. */
export const sphericalDistance = (cos: number): number =>
  2 * Math.asin(Math.min(1, Math.sqrt(Math.max(0, 2 - 2 * cos)) / 2)) ** 2;

export async function runDalleImagine(
  models: ImagineModels & { readonly dalle?: LazyDalleDrawer },
  job: ImagineJob,
  seed: number,
  ctx: ImagineContext,
  options: {
    readonly previewTtlSeconds: number;
    readonly previewEveryRows?: number;
    /** The safety check of the final PNG (imagine.ts's); undefined: not checked. */
    readonly checkSafety?: (png: Uint8Array) => Promise<{ safety: Safety; ms: number } | undefined>;
  },
): Promise<ImagineResult> {
  for (const field of VQGAN_ONLY) {
    if (job[field] !== undefined) {
      throw new BadInputError(
        `${field} is for the vqgan-clip drawer; the DALL-E drawer takes a prompt and candidates`,
        {
          field,
        },
      );
    }
  }
  if (!models.dalle) throw new ModelMissingError('dalle', 'MODELS_DIR');
  const drawer = await models.dalle.get();
  if (job.size !== undefined && (job.size.width !== drawer.width || job.size.height !== drawer.width)) {
    throw new BadInputError(`the DALL-E drawer paints ${drawer.width}x${drawer.width} only`, {
      field: 'size',
    });
  }
  const text = dalleText(job.prompt);
  const candidates = job.candidates ?? DEFAULT_CANDIDATES;
  const previewName = `preview:${(ctx.jobId ?? randomUUID()).replace(/[^A-Za-z0-9_:.-]/g, '_')}`;
  let previewBlob: string | undefined;
  let previewStep: number | undefined;
  let result: DrawResult | undefined;
  try {
    const events = drawer.draw(
      { prompt: text, seed, candidates },
      {
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
        ...(options.previewEveryRows === undefined ? {} : { previewEveryRows: options.previewEveryRows }),
      },
    );
    let last: ImagineProgress | undefined;
    for await (const e of events) {
      if (e.type === 'tokens') {
        last = {
          step: e.tokens,
          steps: e.total,
          // No loss until CLIP has seen the images: 0 keeps the field's meaning (lower is closer).
          loss: 0,
          etaSeconds: Math.round(Math.max(0, e.etaMs) / 100) / 10,
          tokensPerSecond: Math.round(e.tokensPerSecond * 10) / 10,
          ...(previewBlob === undefined || previewStep === undefined ? {} : { previewBlob, previewStep }),
        };
        await ctx.onProgress?.(last);
      } else if (e.type === 'preview') {
        previewBlob = await ctx.blobs.put(e.image.bytes, {
          contentType: `image/${e.image.format}`,
          ttlSeconds: options.previewTtlSeconds,
          name: previewName,
        });
        previewStep = e.tokens;
        if (last) {
          last = { ...last, previewBlob, previewStep };
          await ctx.onProgress?.(last);
        }
      } else {
        result = e.result;
      }
    }
  } finally {
    if (previewBlob !== undefined) await ctx.blobs.delete(previewBlob).catch(() => {});
  }
  if (!result) throw new InternalError('the DALL-E run ended without a result');
  const best = result.images[0]!;
  // Refine runs VQGAN+CLIP with the worker's VQGAN. When the drawer decodes with that one (random
  // models), the tokens' codebook rows are the image exactly; a real minDALL-E has its own stage 1,
  // whose codes mean nothing to the worker's, so the image is encoded by the worker's VQGAN instead.
  const latent: Latent =
    drawer.vqgan === models.generation.vqgan
      ? drawer.latent(best.tokens)
      : await encodeLatent(
          models.generation.vqgan,
          best.pixels,
          result.width,
          result.height,
          models.sessionOptions,
        );
  // The state Continue (Refine) starts VQGAN+CLIP from: parameters as a run from this latent would
  // resolve them, no steps taken, a fresh optimiser.
  const plan = resolveRequest(
    {
      prompt: job.prompt,
      seed,
      init: { kind: 'latent', latent },
      ...(job.preset ? { preset: job.preset } : {}),
    },
    models.generation,
    models.device,
    DefaultGenerateLimits,
  );
  const state: GenerationState = {
    version: 1,
    params: { ...plan.params, steps: 0 },
    step: 0,
    latent,
    adam: adamInit(latent.data.length),
  };
  const [finalBlob, latentBlob, checked] = await Promise.all([
    ctx.blobs.put(best.image.bytes, { contentType: 'image/png' }),
    ctx.blobs.put(encodeState(state), { contentType: 'application/x-vqclip-state' }),
    options.checkSafety?.(best.image.bytes),
  ]);
  const loss = sphericalDistance(best.score);
  const t = result.timings;
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return {
    finalBlob,
    latentBlob,
    seed,
    steps: 0,
    params: {
      width: result.width,
      height: result.height,
      cutouts: plan.params.cutouts,
      lr: plan.params.lr,
      preset: plan.params.preset ?? 'normal',
    },
    lossFirst: loss,
    lossLast: loss,
    timings: {
      prefill: round(t.prefillMs),
      decode: round(t.decodeMs),
      pixels: round(t.pixelsMs),
      rerank: round(t.rerankMs),
      ...(checked === undefined ? {} : { safety: round(checked.ms) }),
      total: round(t.totalMs),
    },
    ...(checked === undefined ? {} : { safety: checked.safety }),
    drawer: 'dalle',
    candidates,
    clipScore: best.score,
    ...(result.truncated ? { promptTruncated: true } : {}),
  };
}
