// The job view model: one description of a job's state for every surface (Discord, Slack, the
// playground, the CLI). Pure: status in, view out. Adapters only draw it; every sentence comes
// from render.ts, so all surfaces say the same thing.
import { asCodedError } from '../../shared/errors.js';
import type { ImagineResult, JobKind, JobResult, Safety } from '../../shared/jobs.js';
import type { JobRef, JobStatus } from './job-status.js';
import { renderError, renderImagineResult, renderStatus } from './render.js';

export interface QueuedView {
  state: 'queued';
  jobId: JobRef;
  /** Jobs ahead (0: next). */
  position: number;
  etaSeconds?: number;
  text: string;
}

export interface RunningView {
  state: 'running';
  jobId: JobRef;
  /** Imagine only: the step reached, of `steps`. */
  step?: number;
  steps?: number;
  loss?: number;
  etaSeconds?: number;
  /** The latest preview image (a blob key, the same for every preview of a job), when the worker has stored one. */
  previewBlob?: string;
  /** The step that preview shows: the key stays, so this is what tells a surface to fetch it again. */
  previewStep?: number;
  /** Set while an attempt failed and a retry waits. */
  retrying?: boolean;
  text: string;
}

export interface ImagineDone {
  finalBlob: string;
  timelapseBlob?: string;
  /** The saved state Variations, Continue and Remix start from. */
  latentBlob?: string;
  seed: number;
  steps: number;
  width: number;
  height: number;
  preset: string;
  /** Wall-clock seconds of the run, when the worker reported them. */
  seconds?: number;
  safety?: Safety;
  /** Set for a DALL-E image (Refine is offered instead of Continue). */
  drawer?: 'dalle';
}

export interface DoneView<K extends JobKind = JobKind> {
  state: 'done';
  jobId: JobRef<K>;
  kind: K;
  /** The caption: seed, steps, size, loss and time for imagine; a plain "Done." otherwise. */
  text: string;
  result: JobResult<K>;
  /** Present for imagine jobs. */
  imagine?: ImagineDone;
}

export interface FailedView {
  state: 'failed';
  /** Absent when the job was never created (refused at submit: quota, bad option). */
  jobId?: JobRef;
  code: string;
  text: string;
  cancelled: boolean;
  /** When trying again makes sense (quota), in seconds. */
  retryAfterSeconds?: number;
}

export type JobView = QueuedView | RunningView | DoneView | FailedView;

/** The view of a status read from Redis. */
export function viewOf<K extends JobKind>(jobId: JobRef<K>, status: JobStatus<K>): JobView {
  switch (status.state) {
    case 'waiting':
      return {
        state: 'queued',
        jobId,
        position: status.position,
        ...(status.etaSeconds === undefined ? {} : { etaSeconds: status.etaSeconds }),
        text: renderStatus(status),
      };
    case 'retrying':
      return { state: 'running', jobId, retrying: true, text: renderStatus(status) };
    case 'active': {
      const p = status.progress as
        | {
            step?: number;
            steps?: number;
            loss?: number;
            etaSeconds?: number;
            previewBlob?: string;
            previewStep?: number;
          }
        | undefined;
      const view: RunningView = { state: 'running', jobId, text: renderStatus(status) };
      if (p && typeof p === 'object' && typeof p.step === 'number') {
        view.step = p.step;
        if (typeof p.steps === 'number') view.steps = p.steps;
        if (typeof p.loss === 'number') view.loss = p.loss;
        if (typeof p.etaSeconds === 'number') view.etaSeconds = p.etaSeconds;
        if (typeof p.previewBlob === 'string') view.previewBlob = p.previewBlob;
        if (typeof p.previewStep === 'number') view.previewStep = p.previewStep;
      }
      return view;
    }
    case 'completed':
      return doneView(jobId, status.result);
    case 'failed':
      return failedView(status.error, jobId);
  }
}

export function doneView<K extends JobKind>(jobId: JobRef<K>, result: JobResult<K>): DoneView<K> {
  const kind = jobId.slice(0, jobId.lastIndexOf(':')) as K;
  if (kind !== 'imagine') return { state: 'done', jobId, kind, text: 'Done.', result };
  const r = result as ImagineResult;
  const total = r.timings.total;
  const imagine: ImagineDone = {
    finalBlob: r.finalBlob,
    ...(r.timelapseBlob === undefined ? {} : { timelapseBlob: r.timelapseBlob }),
    ...(r.latentBlob === undefined ? {} : { latentBlob: r.latentBlob }),
    seed: r.seed,
    steps: r.steps,
    width: r.params.width,
    height: r.params.height,
    preset: r.params.preset,
    ...(typeof total === 'number' && Number.isFinite(total) ? { seconds: total / 1000 } : {}),
    ...(r.safety === undefined ? {} : { safety: r.safety }),
    ...(r.drawer === 'dalle' ? { drawer: 'dalle' as const } : {}),
  };
  return { state: 'done', jobId, kind, text: renderImagineResult(r), result, imagine };
}

/** The view of an error: a job's failure, or a refusal before any job existed (jobId absent). */
export function failedView(error: unknown, jobId?: JobRef): FailedView {
  const coded = asCodedError(error);
  const retry = coded.details.retryAfterSeconds;
  return {
    state: 'failed',
    ...(jobId === undefined ? {} : { jobId }),
    code: coded.code,
    text: renderError(coded),
    cancelled: coded.code === 'cancelled',
    ...(typeof retry === 'number' && Number.isFinite(retry) ? { retryAfterSeconds: retry } : {}),
  };
}

/** How a surface shows a finished image under a safety mode (SAFETY_MODE, or a guild's setting). */
export type SafetyMode = 'off' | 'spoiler' | 'block';
export type SafetyPresentation = 'show' | 'spoiler' | 'withhold';

/**
 * `show` unless the image was flagged; then `spoiler` (blurred until clicked) or `withhold` (not
 * posted, a note instead) per the mode. A place that allows such images (an age-restricted channel
 * whose guild opted in) shows them as spoilers at most.
 */
export function safetyPresentation(
  safety: Safety | undefined,
  mode: SafetyMode,
  place: { allowsFlagged?: boolean } = {},
): SafetyPresentation {
  if (!safety?.flagged || mode === 'off') return 'show';
  if (place.allowsFlagged) return 'spoiler';
  return mode === 'block' ? 'withhold' : 'spoiler';
}

/** The note shown in place of, or beside, a flagged image. */
export function safetyNote(presentation: SafetyPresentation): string | undefined {
  if (presentation === 'withhold')
    return 'The safety check flagged this image, so it is not shown here. An admin can change this in the settings.';
  if (presentation === 'spoiler')
    return 'The safety check flagged this image: it is hidden behind a spoiler.';
  return undefined;
}
