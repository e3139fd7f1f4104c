// The contract between adapters and workers: zod schemas (and their inferred types) for the data,
// results and progress of each queue. Adapters validate before enqueueing (checkJob); workers
// validate again on receipt (parseJob), because Redis is a trust boundary too.
import { UnrecoverableError } from 'bullmq';
import { z } from 'zod';
import {
  asCodedError,
  BadInputError,
  type CodedError,
  PromptTooLongError,
  serializeError,
} from './errors.js';

export const jobKinds = [
  'imagine',
  'classify',
  'embed-image',
  'search',
  'delete-image',
  'channel-state',
] as const;
export type JobKind = (typeof jobKinds)[number];

export function isJobKind(value: unknown): value is JobKind {
  return typeof value === 'string' && (jobKinds as readonly string[]).includes(value);
}

/** Limits shared by the schemas and by messages that quote them. */
export const jobLimits = {
  promptChars: 1000,
  queryChars: 500,
  labels: 200,
  labelChars: 100,
  templates: 100,
  imagePrompts: 8,
  minSide: 64,
  maxSide: 1024,
  maxSteps: 1000,
  maxCutouts: 128,
  maxTopK: 50,
  maxSearchK: 50,
  /** Samples a DALL-E run decodes together (CLIP keeps the best). */
  maxCandidates: 16,
} as const;

export const platforms = ['discord', 'slack', 'web', 'cli'] as const;
export type Platform = (typeof platforms)[number];

const id = (max = 200) => z.string().min(1).max(max);

/**
 * A blob reference (see blobs.ts). Only the shape is checked here; BlobStore refuses keys outside its
 * own namespace, so job data cannot be used to read arbitrary Redis keys.
 */
export const blobKeySchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9_:.-]+$/, 'not a blob key');

const side = z
  .number()
  .int()
  .min(jobLimits.minSide)
  .max(jobLimits.maxSide)
  .refine((v) => v % 16 === 0, 'must be a multiple of 16');

/**
 * Who asked and where: on every job kind (the bot core fills it in). The quota identity derives from
 * it (quotaUserId), history rows record it, and a restarted bot finds its in-flight jobs by it.
 */
export const originSchema = z.strictObject({
  platform: z.enum(platforms),
  /** Discord guild, Slack team; absent in DMs. */
  workspace: id().optional(),
  channel: id().optional(),
  user: id(),
  /** The platform message the request came from (a message id, a Slack ts), when there is one. */
  message: id().optional(),
  /**
   * Where the reply lives, in the adapter's own words (a channel and message id, an interaction
   * token id, a Slack ts): what a restarted bot needs to go on editing it.
   */
  messageRef: id(500).optional(),
});
export type Origin = z.infer<typeof originSchema>;

/** The quota identity of a person: platform-qualified, and per workspace where the platform has them. */
export function quotaUserId(origin: Pick<Origin, 'platform' | 'workspace' | 'user'>): string {
  return origin.workspace === undefined
    ? `${origin.platform}:${origin.user}`
    : `${origin.platform}:${origin.workspace}:${origin.user}`;
}

/**
 * The origin of work nobody asked for: indexing, unindexing and settings reads of a channel. Its
 * user is `system`; those jobs go through the JobClient without a quota.
 */
export function systemOrigin(scope: { platform: Platform; workspace: string; channel: string }): Origin {
  return { platform: scope.platform, workspace: scope.workspace, channel: scope.channel, user: 'system' };
}

/**
 * One channel of one workspace of one platform: the scope of indexed images and of searches. The
 * same shape in every job that names a channel.
 */
export const channelScopeSchema = z.strictObject({
  platform: z.enum(platforms),
  workspace: id(),
  channel: id(),
});
export type ChannelScope = z.infer<typeof channelScopeSchema>;
const channelScope = channelScopeSchema.shape;

export const presets = ['draft', 'normal', 'better'] as const;
export type Preset = (typeof presets)[number];

/** How imagine draws: VQGAN+CLIP optimisation, or minDALL-E's transformer writing image tokens. */
export const drawers = ['vqgan-clip', 'dalle'] as const;
export type Drawer = (typeof drawers)[number];

export const imagineJobSchema = z.strictObject({
  /** Weighted prompt syntax (`text:weight | text`), negative weights included; parsed by the worker. */
  prompt: z.string().trim().min(1).max(jobLimits.promptChars),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  steps: z.number().int().min(1).max(jobLimits.maxSteps).optional(),
  size: z.strictObject({ width: side, height: side }).optional(),
  cutouts: z.number().int().min(1).max(jobLimits.maxCutouts).optional(),
  lr: z.number().positive().max(10).optional(),
  preset: z.enum(presets).optional(),
  /** @defaultValue 'vqgan-clip' */
  drawer: z.enum(drawers).optional(),
  /** DALL-E only: samples decoded together, CLIP keeps the best. @defaultValue 4 */
  candidates: z.number().int().min(1).max(jobLimits.maxCandidates).optional(),
  initImage: blobKeySchema.optional(),
  imagePrompts: z.array(blobKeySchema).max(jobLimits.imagePrompts).optional(),
  /**
   * Start from an earlier result's saved state (its latentBlob): `continue` resumes it (optimiser,
   * step count and parameters; steps are added), `variation` starts a fresh optimiser from its latent
   * (usually with a new seed). `job` names the parent, for history and replies.
   */
  from: z
    .strictObject({
      state: blobKeySchema,
      mode: z.enum(['continue', 'variation']),
      job: id().optional(),
    })
    .optional(),
  origin: originSchema,
});
export type ImagineJob = z.infer<typeof imagineJobSchema>;

export const classifyJobSchema = z.strictObject({
  image: blobKeySchema,
  /** Absent: the default vocabulary. */
  labels: z.array(z.string().trim().min(1).max(jobLimits.labelChars)).min(1).max(jobLimits.labels).optional(),
  /** Prompt templates with `{}` where the label goes; absent: CLIP's ensemble. */
  templates: z
    .array(
      z
        .string()
        .min(2)
        .max(200)
        .refine((t) => t.includes('{}'), "must contain '{}' where the label goes"),
    )
    .min(1)
    .max(jobLimits.templates)
    .optional(),
  topK: z.number().int().min(1).max(jobLimits.maxTopK).optional(),
  origin: originSchema.optional(),
});
export type ClassifyJob = z.infer<typeof classifyJobSchema>;

export const embedImageJobSchema = z.strictObject({
  image: blobKeySchema,
  ...channelScope,
  message: id(),
  file: id(),
  link: z.url().max(2000).optional(),
  origin: originSchema.optional(),
});
export type EmbedImageJob = z.infer<typeof embedImageJobSchema>;

/** By text (`query`) or by example (`image`, a blob): exactly one of the two. */
export const searchJobSchema = z
  .strictObject({
    query: z.string().trim().min(1).max(jobLimits.queryChars).optional(),
    image: blobKeySchema.optional(),
    ...channelScope,
    k: z.number().int().min(1).max(jobLimits.maxSearchK),
    /** Images the safety check flagged are left out unless this is true. @defaultValue false */
    includeFlagged: z.boolean().optional(),
    origin: originSchema.optional(),
  })
  .refine((s) => (s.query === undefined) !== (s.image === undefined), {
    message: 'give either a query or an image',
    path: ['query'],
  });
export type SearchJob = z.infer<typeof searchJobSchema>;

/**
 * Removes one indexed image. The channel is part of the job, and the worker deletes only when the
 * image belongs to it: one channel cannot delete another's image by guessing its id.
 */
export const deleteImageJobSchema = z
  .strictObject({
    /** The id embed-image returned (a Postgres uuid). */
    imageId: z.guid().optional(),
    /**
     * A platform message: every image indexed from it goes (chat platforms report a deleted message,
     * not our image id). With `file` too, only that attachment of it (an edit removed one file).
     */
    message: id().optional(),
    file: id().optional(),
    ...channelScope,
    origin: originSchema.optional(),
  })
  .refine((d) => (d.imageId === undefined) !== (d.message === undefined), {
    message: 'name either an image id or a message',
    path: ['imageId'],
  })
  .refine((d) => d.file === undefined || d.message !== undefined, {
    message: 'a file is named within a message',
    path: ['file'],
  });
export type DeleteImageJob = z.infer<typeof deleteImageJobSchema>;

/**
 * Reads, and optionally changes, a channel's indexing state in the database (adapters never open it):
 * whether its images are indexed for search (opt-in on Discord) and where a history backfill got to.
 */
export const channelStateJobSchema = z.strictObject({
  ...channelScope,
  set: z
    .strictObject({
      indexing: z.boolean().optional(),
      /** Opaque to the worker: the platform's own cursor (a message id, a Slack ts or cursor). */
      backfillCursor: z.string().max(500).nullable().optional(),
      backfillDone: z.boolean().optional(),
    })
    .optional(),
  origin: originSchema.optional(),
});
export type ChannelStateJob = z.infer<typeof channelStateJobSchema>;

const finite = z.number().refine(Number.isFinite, 'must be finite');

export const imagineParamsSchema = z.object({
  width: z.number().int(),
  height: z.number().int(),
  cutouts: z.number().int(),
  lr: z.number(),
  preset: z.enum(presets),
});
export type ImagineParams = z.infer<typeof imagineParamsSchema>;

/**
 * The CLIP zero-shot safety check of an image (the worker's, from the image's embedding against the
 * safety prompts): the best-scoring unsafe category, its score, and whether it passed the threshold.
 */
export const safetySchema = z.strictObject({
  flagged: z.boolean(),
  /** Probability mass on the unsafe prompts, 0..1. */
  score: z.number().min(0).max(1),
  /** The unsafe category that scored highest (`nudity`, `gore`, `violence`, ...). */
  category: z.string().max(100).optional(),
});
export type Safety = z.infer<typeof safetySchema>;

export const imagineResultSchema = z.strictObject({
  finalBlob: blobKeySchema,
  timelapseBlob: blobKeySchema.optional(),
  latentBlob: blobKeySchema.optional(),
  seed: z.number().int(),
  steps: z.number().int(),
  params: imagineParamsSchema,
  lossFirst: finite,
  lossLast: finite,
  /** Milliseconds per phase (e.g. load, steps, encode, total). */
  timings: z.record(z.string(), z.number()),
  /** Absent: the worker runs no safety check. */
  safety: safetySchema.optional(),
  /** Absent: vqgan-clip. */
  drawer: z.enum(drawers).optional(),
  /** DALL-E: candidates sampled, the kept one's CLIP score (cosine), and whether the prompt was cut. */
  candidates: z.number().int().min(1).optional(),
  clipScore: finite.optional(),
  promptTruncated: z.boolean().optional(),
});
export type ImagineResult = z.infer<typeof imagineResultSchema>;

export const imagineProgressSchema = z.strictObject({
  step: z.number().int().min(0),
  steps: z.number().int().min(1),
  loss: z.number(),
  etaSeconds: z.number().min(0),
  /** One key per job, overwritten by each preview and deleted when the job ends (see previewStep). */
  previewBlob: blobKeySchema.optional(),
  /** The step the image under previewBlob shows: a change means a new image under the same key. */
  previewStep: z.number().int().min(0).optional(),
  /** DALL-E: step and steps count image tokens; how many it writes a second, all candidates together. */
  tokensPerSecond: z.number().min(0).optional(),
});
export type ImagineProgress = z.infer<typeof imagineProgressSchema>;

export const classifyResultSchema = z.strictObject({
  labels: z.array(z.strictObject({ label: z.string(), prob: z.number().min(0).max(1) })),
});
export type ClassifyResult = z.infer<typeof classifyResultSchema>;

export const embedImageResultSchema = z.strictObject({
  imageId: z.string(),
  duplicate: z.boolean(),
  /** The channel held these bytes embedded by another model: that row now has this model's embedding. */
  reindexed: z.boolean().optional(),
  /** The safety check flagged the image (searches leave it out unless asked). */
  flagged: z.boolean().optional(),
});
export type EmbedImageResult = z.infer<typeof embedImageResultSchema>;

export const searchResultSchema = z.strictObject({
  hits: z.array(
    z.strictObject({
      imageId: z.string(),
      link: z.string().nullable(),
      score: z.number(),
      message: z.string(),
      file: z.string(),
      flagged: z.boolean().optional(),
      /** Near-duplicates of this hit folded into it (cosine >= the collapse threshold). */
      duplicates: z.number().int().min(0).optional(),
    }),
  ),
  /** Even the best match scored low: say so rather than present weak matches as answers. */
  lowConfidence: z.boolean().optional(),
  /**
   * Images of the channel left out because another (or an unknown) model embedded them: they need
   * re-indexing with the worker's current model.
   */
  staleImages: z.number().int().min(0).optional(),
});
export type SearchResult = z.infer<typeof searchResultSchema>;

export const deleteImageResultSchema = z.strictObject({
  /** False when the channel held no such image (already deleted, or never there): deleting is idempotent. */
  deleted: z.boolean(),
  /** How many rows went (a message can hold several images). */
  count: z.number().int().min(0).optional(),
});
export type DeleteImageResult = z.infer<typeof deleteImageResultSchema>;

export const channelStateResultSchema = z.strictObject({
  /** False for a channel never configured (no row yet): the platform's default applies. */
  known: z.boolean(),
  indexing: z.boolean(),
  backfillCursor: z.string().nullable(),
  backfillDone: z.boolean(),
});
export type ChannelStateResult = z.infer<typeof channelStateResultSchema>;

/** Schemas per queue, for code that is generic over the job kind. */
export const jobSchemas = {
  imagine: { data: imagineJobSchema, result: imagineResultSchema },
  classify: { data: classifyJobSchema, result: classifyResultSchema },
  'embed-image': { data: embedImageJobSchema, result: embedImageResultSchema },
  search: { data: searchJobSchema, result: searchResultSchema },
  'delete-image': { data: deleteImageJobSchema, result: deleteImageResultSchema },
  'channel-state': { data: channelStateJobSchema, result: channelStateResultSchema },
} as const;

export type JobData<K extends JobKind> = z.infer<(typeof jobSchemas)[K]['data']>;
export type JobResult<K extends JobKind> = z.infer<(typeof jobSchemas)[K]['result']>;

/** At most this many issues are quoted in an error: a hostile payload could produce thousands. */
const MAX_ISSUES = 10;

/**
 * Validates job data and returns it typed, or throws a CodedError: `prompt_too_long` when that is the
 * problem (users get a specific sentence for it), else `bad_input` with the issues summarised as
 * `{path, message}` in details.
 */
export function checkJob<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  throw badInputFromIssues(parsed.error.issues, data);
}

/**
 * Worker-side validation: like checkJob, but the error is BullMQ's UnrecoverableError (a bad payload
 * will not fix itself on retry) whose message is the serialized CodedError, so the job's
 * failedReason can be read back with parseSerializedError. The CodedError is the `cause`.
 */
export function parseJob<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  try {
    return checkJob(schema, data);
  } catch (error) {
    throw toJobError(error);
  }
}

/**
 * What a processor should throw for any failure: retryable codes become a plain Error (BullMQ retries
 * with backoff), the rest an UnrecoverableError. Both carry the serialized CodedError as message.
 */
export function toJobError(error: unknown): Error {
  const coded = asCodedError(error);
  const message = serializeError(coded);
  const out = coded.retryable ? new Error(message, { cause: coded }) : new UnrecoverableError(message);
  if (!coded.retryable) Object.defineProperty(out, 'cause', { value: coded, enumerable: false });
  return out;
}

function badInputFromIssues(issues: readonly z.core.$ZodIssue[], data: unknown): CodedError {
  const prompt = (data as { prompt?: unknown } | null)?.prompt;
  const promptTooLong = issues.some(
    (i) => i.code === 'too_big' && i.path.length === 1 && i.path[0] === 'prompt',
  );
  if (promptTooLong && typeof prompt === 'string') {
    return new PromptTooLongError(prompt.trim().length, jobLimits.promptChars);
  }
  const summary = issues.slice(0, MAX_ISSUES).map((i) => ({
    path: i.path.map(String).join('.') || '(root)',
    message: i.message,
  }));
  const text = summary.map((s) => `${s.path}: ${s.message}`).join('; ');
  return new BadInputError(`invalid job data: ${text}`, {
    issues: summary,
    ...(issues.length > MAX_ISSUES ? { more: issues.length - MAX_ISSUES } : {}),
  });
}
