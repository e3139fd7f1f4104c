// A job as the bot side sees it: its public reference (`imagine:<uuid>`, short enough for button ids)
// and its status as read from Redis. Shared by the JobClient, follow() and the view model.
import { type CodedError, NotFoundError } from '../../shared/errors.js';
import { type ImagineProgress, isJobKind, type JobKind, type JobResult } from '../../shared/jobs.js';

/** A job's public id: its queue and BullMQ id, `imagine:1f0c...`. Short enough for button ids. */
export type JobRef<K extends JobKind = JobKind> = `${K}:${string}`;

export function parseJobRef(ref: string): { kind: JobKind; id: string } {
  const split = ref.lastIndexOf(':');
  const kind = ref.slice(0, split);
  const id = ref.slice(split + 1);
  if (split < 1 || !isJobKind(kind) || id.length === 0)
    throw new NotFoundError(`not a job id: ${ref}`, { ref });
  return { kind, id };
}

export type ProgressOf<K extends JobKind> = K extends 'imagine' ? ImagineProgress : unknown;

/** A job as the user sees it. Terminal states: completed and failed (cancelled is a failure code). */
export type JobStatus<K extends JobKind = JobKind> =
  | {
      state: 'waiting';
      /** Jobs ahead of this one in its queue (0: next to start). */
      position: number;
      /** Rough seconds until it finishes, from recent job durations; absent without history. */
      etaSeconds?: number;
    }
  /** Failed an attempt and waits for its retry (backoff). */
  | { state: 'retrying'; attemptsMade: number }
  | { state: 'active'; progress?: ProgressOf<K>; attemptsMade: number }
  | { state: 'completed'; result: JobResult<K> }
  | { state: 'failed'; error: CodedError };

export function isTerminal(
  status: JobStatus,
): status is Extract<JobStatus, { state: 'completed' | 'failed' }> {
  return status.state === 'completed' || status.state === 'failed';
}
