// The imagine job: validate -> fetch init image (or saved state) and image prompts -> the loop, reporting
// {step, steps, loss, etaSeconds, previewBlob, previewStep} after every step -> final PNG, timelapse and
// saved state as blobs, and the safety check of the final image -> the generation's row in the database.
// Previews overwrite one blob per job, deleted when the run ends, so a running job holds O(1) blob
// memory however long it runs. Callable without BullMQ (the CLI).
import { createHash, randomUUID } from 'node:crypto';
import type { Database } from '../../shared/db/index.js';
import { asCodedError, BadInputError, InternalError } from '../../shared/errors.js';
import {
  checkJob,
  type ImagineJob,
  type ImagineProgress,
  type ImagineResult,
  imagineJobSchema,
  type Safety,
} from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { type GenerateInit, type GenerateRequest, type GenerateResult, generate } from '../generate/loop.js';
import { randomSeed } from '../generate/rng.js';
import { decodeState, encodeState } from '../generate/state.js';
import type { WorkerModels } from '../runtime/models.js';
import { type Blobs, readBlob } from './blobs.js';
import type { RunContext } from './context.js';
import { runDalleImagine } from './imagine-dalle.js';

export interface ImagineContext extends RunContext {
  /** Called after every step (and again when a preview is stored); awaited, so keep it quick. */
  onProgress?: (progress: ImagineProgress) => void | Promise<void>;
  /** Records the run in the generations table when given. */
  db?: Database;
  /**
   * The job's id, `imagine:<uuid>`: keys the generation row (a re-run updates it) and picks the
   * seed when the job has none, so a job re-run after a crash paints the same image.
   */
  jobId?: string;
  /** Wall-clock budget; the run stops early with a full result when it is spent. @defaultValue none */
  timeBudgetMs?: number;
  /**
   * TTL of the job's preview blob, renewed by every preview: it only outlives the run when the worker
   * dies without deleting it. @defaultValue 3600
   */
  previewTtlSeconds?: number;
  /** A preview every this many steps. @defaultValue 10 */
  previewEvery?: number;
  /** A preview at least this often. @defaultValue 5000 */
  previewIntervalMs?: number;
  logger?: Logger;
}

export const DefaultImagineContext = {
  previewTtlSeconds: 3600,
  previewEvery: 10,
  previewIntervalMs: 5000,
} as const satisfies Partial<ImagineContext>;

/** A seed from the job id: stable across re-runs of one job, different between jobs. */
export function seedForJob(jobId: string): number {
  return createHash('sha256').update(jobId).digest().readUInt32LE(0);
}

/** With `images` and `safety`, the final image is checked (result.safety); without, it is not. */
export type ImagineModels = Pick<WorkerModels, 'generation' | 'stepCache' | 'device' | 'sessionOptions'> &
  Partial<Pick<WorkerModels, 'imageLimits' | 'images' | 'safety' | 'dalle'>>;

export async function runImagine(
  models: ImagineModels,
  data: unknown,
  ctx: ImagineContext,
): Promise<ImagineResult> {
  const o = { ...DefaultImagineContext, ...ctx };
  const logger = ctx.logger ?? silentLogger;
  const job = checkJob(imagineJobSchema, data);
  ctx.signal?.throwIfAborted();
  if (job.drawer === 'dalle') return runDalle(models, job, ctx, o.previewTtlSeconds, logger);
  if (job.candidates !== undefined) {
    throw new BadInputError('candidates are for the dalle drawer', { field: 'candidates' });
  }
  const init = await readInit(ctx.blobs, job);
  // A continue keeps its state's seed, so that its cutouts and noise go on as one uninterrupted run's
  // would; the job's seed (the bot always sets one) picks a variation's.
  const seed =
    init?.kind === 'state'
      ? init.state.params.seed
      : (job.seed ?? (ctx.jobId === undefined ? randomSeed() : seedForJob(ctx.jobId)));
  const imagePrompts = await Promise.all((job.imagePrompts ?? []).map((key) => readBlob(ctx.blobs, key)));
  const generationId = await recordStart(ctx.db, ctx.jobId, job, seed);

  const request: GenerateRequest = {
    prompt: job.prompt,
    seed,
    ...(job.preset === undefined ? {} : { preset: job.preset }),
    ...(job.steps === undefined ? {} : { steps: job.steps }),
    ...(job.size === undefined ? {} : { width: job.size.width, height: job.size.height }),
    ...(job.cutouts === undefined ? {} : { cutouts: job.cutouts }),
    ...(job.lr === undefined ? {} : { lr: job.lr }),
    ...(init === undefined ? {} : { init }),
    ...(imagePrompts.length === 0 ? {} : { imagePrompts: imagePrompts.map((image) => ({ image })) }),
    ...(ctx.timeBudgetMs === undefined ? {} : { timeBudgetMs: ctx.timeBudgetMs }),
  };
  // One name for every preview of this run: each preview replaces the last one.
  const previewName = `preview:${(ctx.jobId ?? randomUUID()).replace(/[^A-Za-z0-9_:.-]/g, '_')}`;
  let previewBlob: string | undefined;
  try {
    let previewStep: number | undefined;
    let last: ImagineProgress | undefined;
    let result: GenerateResult | undefined;
    const events = generate(request, models.generation, {
      ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
      cache: models.stepCache,
      device: models.device,
      session: models.sessionOptions,
      previewEvery: o.previewEvery,
      previewIntervalMs: o.previewIntervalMs,
      ...(models.imageLimits === undefined ? {} : { decodeLimits: models.imageLimits }),
    });
    for await (const event of events) {
      if (event.type === 'step') {
        last = {
          step: event.step,
          steps: event.steps,
          loss: event.loss,
          etaSeconds: Math.round(Math.max(0, event.etaMs) / 100) / 10,
          ...(previewBlob === undefined || previewStep === undefined ? {} : { previewBlob, previewStep }),
        };
        await ctx.onProgress?.(last);
      } else if (event.type === 'preview') {
        previewBlob = await ctx.blobs.put(event.image.bytes, {
          contentType: `image/${event.image.format}`,
          ttlSeconds: o.previewTtlSeconds,
          name: previewName,
        });
        // The key stays the same: the step tells readers that the image behind it changed.
        previewStep = event.step;
        if (last) {
          last = { ...last, previewBlob, previewStep };
          await ctx.onProgress?.(last);
        }
      } else {
        result = event.result;
      }
    }
    if (!result) throw new InternalError('the generation ended without a result');
    const stored = performance.now();
    const checking = checkSafety(models, result.image.bytes, ctx.signal);
    checking.catch(() => {}); // awaited below; a blob write may fail first
    const [finalBlob, timelapseBlob, latentBlob] = await Promise.all([
      ctx.blobs.put(result.image.bytes, { contentType: `image/${result.image.format}` }),
      result.timelapse
        ? ctx.blobs.put(result.timelapse.bytes, { contentType: `image/${result.timelapse.format}` })
        : undefined,
      // The state Continue starts from: latent, optimiser and parameters, exact to the bit.
      ctx.blobs.put(encodeState(result.state), { contentType: 'application/x-vqclip-state' }),
    ]);
    const storeMs = performance.now() - stored;
    const checked = await checking;
    const t = result.timings;
    const timings = {
      setup: round(t.setupMs),
      steps: round(t.stepsMs),
      finish: round(t.finishMs),
      store: round(storeMs),
      ...(checked === undefined ? {} : { safety: round(checked.ms) }),
      total: round(t.totalMs + performance.now() - stored),
    };
    const out: ImagineResult = {
      finalBlob,
      ...(timelapseBlob === undefined ? {} : { timelapseBlob }),
      latentBlob,
      seed: result.seed,
      steps: result.state.step,
      params: {
        width: result.params.width,
        height: result.params.height,
        cutouts: result.params.cutouts,
        lr: result.params.lr,
        preset: result.params.preset ?? 'normal',
      },
      lossFirst: result.lossFirst,
      lossLast: result.lossLast,
      timings,
      ...(checked === undefined ? {} : { safety: checked.safety }),
    };
    if (result.stoppedBy === 'time') {
      logger.info({ jobId: ctx.jobId, steps: result.state.step }, 'time budget spent: stopped early');
    }
    if (ctx.db && generationId !== undefined) {
      await ctx.db.updateGeneration(generationId, {
        status: 'completed',
        seed: result.seed,
        params: { ...out.params, steps: out.steps, stoppedBy: result.stoppedBy },
        timings,
        resultLink: finalBlob,
        finished: true,
      });
    }
    return out;
  } catch (error) {
    await recordFailure(ctx, generationId, error, logger);
    throw error;
  } finally {
    // Done, failed, cancelled or handed back: the final image (or a re-run's previews) replaces it.
    if (previewBlob !== undefined) {
      await ctx.blobs
        .delete(previewBlob)
        .catch((e: unknown) => logger.warn({ err: e, jobId: ctx.jobId }, 'could not delete the preview'));
    }
  }
}

/** The DALL-E drawer's run, recorded and safety-checked as a VQGAN+CLIP run is. */
async function runDalle(
  models: ImagineModels,
  job: ImagineJob,
  ctx: ImagineContext,
  previewTtlSeconds: number,
  logger: Logger,
): Promise<ImagineResult> {
  const seed = job.seed ?? (ctx.jobId === undefined ? randomSeed() : seedForJob(ctx.jobId));
  const generationId = await recordStart(ctx.db, ctx.jobId, job, seed);
  try {
    const out = await runDalleImagine(models, job, seed, ctx, {
      previewTtlSeconds,
      checkSafety: (png) => checkSafety(models, png, ctx.signal),
    });
    if (ctx.db && generationId !== undefined) {
      await ctx.db.updateGeneration(generationId, {
        status: 'completed',
        seed,
        params: { ...out.params, drawer: 'dalle', candidates: out.candidates },
        timings: out.timings,
        resultLink: out.finalBlob,
        finished: true,
      });
    }
    return out;
  } catch (error) {
    await recordFailure(ctx, generationId, error, logger);
    throw error;
  }
}

async function recordFailure(
  ctx: ImagineContext,
  generationId: string | undefined,
  error: unknown,
  logger: Logger,
): Promise<void> {
  if (!ctx.db || generationId === undefined) return;
  const coded = asCodedError(error);
  await ctx.db
    .updateGeneration(generationId, {
      status: coded.code === 'cancelled' ? 'cancelled' : 'failed',
      errorCode: coded.code,
      finished: true,
    })
    .catch((e: unknown) => logger.warn({ err: e, jobId: ctx.jobId }, 'could not record the failure'));
}

/**
 * Where the latent starts: an init image, or an earlier result's saved state (`from`, its latentBlob).
 * Continue resumes the state (latent, optimiser, step count, parameters); a variation takes only its
 * latent, with a fresh optimiser. A missing or expired blob is `blob_missing`, a corrupt one `bad_input`.
 */
async function readInit(blobs: Blobs, job: ImagineJob): Promise<GenerateInit | undefined> {
  if (job.from !== undefined && job.initImage !== undefined) {
    throw new BadInputError('a run starts from an init image or a saved state, not both', { field: 'from' });
  }
  if (job.initImage !== undefined) return { kind: 'image', image: await readBlob(blobs, job.initImage) };
  if (job.from === undefined) return undefined;
  const state = decodeState(await readBlob(blobs, job.from.state));
  return job.from.mode === 'continue' ? { kind: 'state', state } : { kind: 'latent', latent: state.latent };
}

/**
 * The final image through CLIP's image tower once more (the classifier's, micro-batched with
 * classify and embed-image jobs: the embedding indexing these bytes would give, so a result and
 * its indexed copy get the same verdict) and the safety prompts.
 */
async function checkSafety(
  models: ImagineModels,
  png: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<{ safety: Safety; ms: number } | undefined> {
  if (!models.images || !models.safety) return undefined;
  const started = performance.now();
  const embedding = await models.images.embed(png, signal);
  const safety = await models.safety.check(embedding, signal);
  return { safety, ms: performance.now() - started };
}

async function recordStart(
  db: Database | undefined,
  jobId: string | undefined,
  job: ImagineJob,
  seed: number,
): Promise<string | undefined> {
  if (!db) return undefined;
  const { origin } = job;
  const id = await db.insertGeneration({
    ...(jobId === undefined ? {} : { jobId }),
    platform: origin.platform,
    ...(origin.workspace === undefined ? {} : { workspace: origin.workspace }),
    ...(origin.channel === undefined ? {} : { channel: origin.channel }),
    userId: origin.user,
    prompt: job.prompt,
    params: requestedParams(job),
    seed,
    status: 'running',
  });
  // A re-run (retry, stalled job) finds the row of its earlier attempt: mark it running again.
  await db.updateGeneration(id, { status: 'running', seed });
  return id;
}

function requestedParams(job: ImagineJob): Record<string, unknown> {
  const { prompt: _prompt, origin: _origin, seed: _seed, ...rest } = job;
  return rest;
}

const round = (ms: number) => Math.round(ms * 10) / 10;
