// The buttons on a finished image (Re-roll, Variations, Continue, Remix, Timelapse; Refine on a DALL-E
// image) and Cancel while it runs. A button carries only its action and the job reference, so it works after restarts and
// days later while the job is kept in Redis; the new job is built here from the parent's data and
// result, the same way on every platform. When the parent or its saved state has expired, the
// error says so in words.
import { BlobMissingError, NotFoundError } from '../../shared/errors.js';
import type { ImagineJob, ImagineResult, Origin } from '../../shared/jobs.js';
import type { JobClient } from './job-client.js';
import { type JobRef, parseJobRef } from './job-status.js';
import { imagineRequest } from './requests.js';

export const imagineActions = [
  'reroll',
  'variations',
  'continue',
  'remix',
  'timelapse',
  'cancel',
  'refine',
] as const;
export type ImagineAction = (typeof imagineActions)[number];

/** Every surface's button words; a surface may add a detail (Discord adds the steps). */
export const actionLabels: Readonly<Record<ImagineAction, string>> = {
  reroll: 'Re-roll',
  variations: 'Variations',
  continue: 'Continue',
  remix: 'Remix',
  timelapse: 'Timelapse',
  cancel: 'Cancel',
  refine: 'Refine',
};

/** The follow-up that adds VQGAN+CLIP steps to a finished image: Refine on a DALL-E one, else Continue. */
export const stepsAction = (drawer: string | undefined): 'continue' | 'refine' =>
  drawer === 'dalle' ? 'refine' : 'continue';

// A version tag: ids already posted keep parsing when the format changes.
const ACTION_PREFIX = 'vq1';

/** `vq1:reroll:imagine:<uuid>`: 56 characters, inside Discord's 100 and Slack's 255 for ids and values. */
export function actionId(action: ImagineAction, jobId: JobRef): string {
  return `${ACTION_PREFIX}:${action}:${jobId}`;
}

export function parseActionId(id: string): { action: ImagineAction; jobId: JobRef<'imagine'> } | undefined {
  const [prefix, action, ...rest] = id.split(':');
  if (prefix !== ACTION_PREFIX || !(imagineActions as readonly string[]).includes(action ?? ''))
    return undefined;
  const ref = rest.join(':');
  try {
    const { kind } = parseJobRef(ref);
    if (kind !== 'imagine') return undefined;
  } catch {
    return undefined;
  }
  return { action: action as ImagineAction, jobId: ref as JobRef<'imagine'> };
}

/** Steps a Continue adds when the person does not say. */
/**
 * A button (or command) this version does not know: one registered by an older or newer version of
 * the bot, or an id nobody of ours made. render.ts words it.
 */
export function unknownButtonError(): NotFoundError {
  return new NotFoundError('this button is from an older version of the bot', { reason: 'unknown_button' });
}

export const CONTINUE_STEPS = 50;

export interface FollowUpInput {
  /** Remix: the edited prompt. */
  prompt?: string;
  /** Continue: steps to add. @defaultValue CONTINUE_STEPS */
  steps?: number;
}

/** Reads what a follow-up needs of its parent, or says in words that it has expired. */
export async function parentOf(
  jobs: JobClient,
  jobId: JobRef<'imagine'>,
): Promise<{ data: ImagineJob; result?: ImagineResult }> {
  const data = await jobs.data(jobId);
  if (!data) {
    throw new NotFoundError('the job has expired', { jobId, reason: 'expired' });
  }
  const status = await jobs.status(jobId);
  return status.state === 'completed' ? { data, result: status.result } : { data };
}

/**
 * The job a button asks for. `exists` checks a blob is still stored (Variations, Continue and Remix
 * start from the parent's saved state, kept for the blob TTL).
 */
export async function followUpJob(
  parent: { data: ImagineJob; result?: ImagineResult },
  action: Exclude<ImagineAction, 'cancel' | 'timelapse'>,
  origin: Origin,
  parentId: JobRef<'imagine'>,
  exists: (blob: string) => Promise<boolean>,
  input: FollowUpInput = {},
  drawSeed?: () => number,
): Promise<ImagineJob> {
  const { data } = parent;
  const base = {
    prompt: data.prompt,
    ...(data.preset === undefined ? {} : { preset: data.preset }),
    ...(data.size === undefined ? {} : { size: data.size }),
    ...(data.cutouts === undefined ? {} : { cutouts: data.cutouts }),
    ...(data.imagePrompts === undefined ? {} : { imagePrompts: data.imagePrompts }),
  };
  if (action === 'reroll') {
    // Same options, a new seed; the init image too, when it is still stored. A DALL-E image re-rolls
    // with DALL-E and as many candidates.
    const init =
      data.initImage !== undefined && (await exists(data.initImage)) ? { initImage: data.initImage } : {};
    const drawer =
      data.drawer === 'dalle'
        ? { drawer: data.drawer, ...(data.candidates === undefined ? {} : { candidates: data.candidates }) }
        : {};
    return imagineRequest(
      { ...base, ...(data.steps === undefined ? {} : { steps: data.steps }), ...init, ...drawer },
      origin,
      {},
      drawSeed,
    );
  }
  const state = parent.result?.latentBlob;
  if (!parent.result || state === undefined) {
    throw new NotFoundError('the job has no finished image yet', { jobId: parentId, reason: 'not_finished' });
  }
  if (!(await exists(state))) throw new BlobMissingError(state);
  // Refine: a DALL-E image's saved state is its tokens' codebook rows with no steps taken, so
  // continuing it runs VQGAN+CLIP steps from exactly the image DALL-E drew.
  if (action === 'continue' || action === 'refine') {
    return imagineRequest(
      {
        prompt: data.prompt,
        seed: parent.result.seed,
        steps: input.steps ?? CONTINUE_STEPS,
        from: { state, mode: 'continue', job: parentId },
      },
      origin,
    );
  }
  // Variations: the same prompt; Remix: the person's new prompt. Both from this image's latent.
  return imagineRequest(
    {
      ...base,
      prompt: action === 'remix' && input.prompt !== undefined ? input.prompt : data.prompt,
      ...(data.steps === undefined ? {} : { steps: data.steps }),
      from: { state, mode: 'variation', job: parentId },
    },
    origin,
    {},
    drawSeed,
  );
}
