// The run loop every adapter shares: submit a job, follow it (throttled, latest wins), deliver the
// final result or the failure exactly once across processes (the posted marker: claimed before
// posting, given back when posting fails so a retry posts), and re-attach after a restart to the
// jobs a bot was following (kept in Redis by InflightIndex). Adapters implement a ReplySurface.
import { ForbiddenError, NotFoundError } from '../../shared/errors.js';
import { type JobData, type JobKind, type Origin, type Platform, quotaUserId } from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import type { InflightEntry, InflightIndex } from './inflight.js';
import type { CancelOutcome, JobClient } from './job-client.js';
import type { JobRef, JobStatus } from './job-status.js';
import { renderStatus } from './render.js';
import {
  type DoneView,
  type FailedView,
  failedView,
  type QueuedView,
  type RunningView,
  viewOf,
} from './view.js';

/** What an adapter draws a job on: its platform's message, edited as the job goes. */
export interface ReplySurface {
  /** The job was accepted (queued, with its position), or refused before that: see fail. */
  ack(view: QueuedView | RunningView): void | Promise<void>;
  /** A newer state while it waits or runs (throttled; a slow or failing call only delays the next). */
  progress(view: QueuedView | RunningView): void | Promise<void>;
  /** The result, called once for a job across processes; throwing gives the claim back for a retry. */
  final(view: DoneView): void | Promise<void>;
  /** The failure (or a refusal at submit: quota, bad option), once, like final. */
  fail(view: FailedView): void | Promise<void>;
}

export type RunOutcome =
  | { state: 'done'; jobId: JobRef }
  | { state: 'failed'; jobId: JobRef; code: string }
  /** Refused at submit (no job exists): the surface got fail(). */
  | { state: 'rejected'; code: string }
  /** Another process (or an earlier run of this one) delivered it. */
  | { state: 'already_posted'; jobId: JobRef }
  /** Every attempt to post failed; the in-flight entry stays, so a restart tries again. */
  | { state: 'undelivered'; jobId: JobRef }
  | { state: 'stopped'; jobId: JobRef };

export interface Run {
  /** Absent when the job was refused at submit. */
  readonly jobId?: JobRef;
  readonly position?: number;
  readonly done: Promise<RunOutcome>;
  /** Stops following (the job goes on; a restart or another process may re-attach). */
  stop(): void;
}

export interface JobRunnerOptions {
  jobs: JobClient;
  /** Where followed jobs are recorded for re-attaching; absent: no re-attach (the playground). */
  inflight?: InflightIndex;
  /** Least time between two progress deliveries. @defaultValue 3000 */
  throttleMs?: number;
  /** Attempts to deliver a final result or failure before giving up. @defaultValue 3 */
  finalAttempts?: number;
  /** Wait before the second attempt; doubles each time. @defaultValue 1000 */
  finalRetryMs?: number;
  logger?: Logger;
}

export const DefaultJobRunnerOptions = {
  throttleMs: 3000,
  finalAttempts: 3,
  finalRetryMs: 1000,
} as const satisfies Partial<JobRunnerOptions>;

export interface SubmitRunOptions {
  /** Saved with the in-flight entry: the adapter's address of the reply, for re-attaching. */
  reply?: Record<string, unknown>;
  priority?: number;
  /**
   * Claims the posted marker before final/fail so that a result is delivered once across processes.
   * Off for surfaces that may show a result again (a reloaded web page). @defaultValue true
   */
  exactlyOnce?: boolean;
  /** Overrides the runner's throttle for this job. */
  throttleMs?: number;
}

export type FollowRunOptions = Pick<SubmitRunOptions, 'exactlyOnce' | 'throttleMs'> & { platform?: Platform };

export interface Actor {
  platform: Platform;
  user: string;
  /** May act on other people's jobs (Discord Manage Messages, a Slack admin). */
  moderator?: boolean;
}

/** What a re-attaching adapter answers for an in-flight job that another of its processes follows. */
export const OTHER_PROCESS: unique symbol = Symbol('followed by another process');

/** A re-attaching adapter's answer for one in-flight job (JobRunner.reattach). */
export type SurfaceFor = ReplySurface | undefined | typeof OTHER_PROCESS;

export class JobRunner {
  readonly jobs: JobClient;
  readonly #inflight: InflightIndex | undefined;
  readonly #o: { [Key in keyof typeof DefaultJobRunnerOptions]: number };
  readonly #logger: Logger;
  readonly #runs = new Set<Run>();

  constructor(options: JobRunnerOptions) {
    this.jobs = options.jobs;
    this.#inflight = options.inflight;
    this.#o = {
      throttleMs: options.throttleMs ?? DefaultJobRunnerOptions.throttleMs,
      finalAttempts: options.finalAttempts ?? DefaultJobRunnerOptions.finalAttempts,
      finalRetryMs: options.finalRetryMs ?? DefaultJobRunnerOptions.finalRetryMs,
    };
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Submits a job and follows it on the surface. A refusal (bad input, quota, Redis unreachable) is
   * drawn with fail() and resolves `rejected`; nothing throws.
   */
  async submit<K extends JobKind>(
    kind: K,
    data: JobData<K>,
    surface: ReplySurface,
    options: SubmitRunOptions = {},
  ): Promise<Run> {
    const origin = (data as { origin?: Origin }).origin;
    let submitted: { jobId: JobRef<K>; position: number };
    try {
      submitted = await this.jobs.submit(kind, data, {
        userId: origin ? quotaUserId(origin) : 'anonymous',
        ...(options.priority === undefined ? {} : { priority: options.priority }),
      });
    } catch (error) {
      return this.refuse(error, surface);
    }
    const { jobId, position } = submitted;
    if (origin && this.#inflight) {
      await this.#inflight
        .add({ jobId, origin, reply: options.reply ?? {}, startedAt: Date.now() })
        .catch((error: unknown) =>
          this.#logger.warn({ err: error, jobId }, 'could not record the job for re-attach'),
        );
    }
    await this.#safely('ack', () =>
      surface.ack({ state: 'queued', jobId, position, text: queuedText(position) }),
    );
    const run = this.follow(jobId, surface, { ...options, ...(origin ? { platform: origin.platform } : {}) });
    return { jobId, position, done: run.done, stop: run.stop };
  }

  /**
   * Draws a refusal (bad input, quota, an attachment that could not be read: anything before a job
   * exists) with fail() and returns a run that is already `rejected`. Never throws.
   */
  async refuse(error: unknown, surface: ReplySurface): Promise<Run> {
    const view = failedView(error);
    await this.#safely('fail', () => surface.fail(view));
    return { done: Promise.resolve({ state: 'rejected', code: view.code }), stop: () => {} };
  }

  /**
   * Follows a job that exists already (re-attach, a second viewer) until its end is delivered.
   * `platform` names the in-flight entry to drop once delivered.
   */
  follow(jobId: JobRef, surface: ReplySurface, options: FollowRunOptions = {}): Run {
    const exactlyOnce = options.exactlyOnce ?? true;
    let stopped = false;
    const following = this.jobs.follow(
      jobId,
      async (status: JobStatus) => {
        if (stopped || status.state === 'completed' || status.state === 'failed') return;
        const view = viewOf(jobId, status);
        if (view.state === 'queued' || view.state === 'running') await surface.progress(view);
      },
      { throttleMs: options.throttleMs ?? this.#o.throttleMs },
    );
    let resolveStopped!: (outcome: RunOutcome) => void;
    const stoppedOutcome = new Promise<RunOutcome>((resolve) => {
      resolveStopped = resolve;
    });
    const run: Run = {
      jobId,
      done: Promise.race([
        following.done.then((status) =>
          stopped
            ? ({ state: 'stopped', jobId } as const)
            : this.#deliver(jobId, status, surface, exactlyOnce, options.platform),
        ),
        stoppedOutcome,
      ]).finally(() => this.#runs.delete(run)),
      stop: () => {
        stopped = true;
        following.stop();
        resolveStopped({ state: 'stopped', jobId });
      },
    };
    this.#runs.add(run);
    return run;
  }

  /**
   * Re-attaches to every in-flight job of a platform recorded in Redis (a bot restarted mid-job).
   * `surfaceFor` rebuilds the adapter's surface from the entry's reply address; returning undefined
   * drops the entry (its reply cannot be reached any more), OTHER_PROCESS leaves it alone (another
   * process follows it, e.g. the Discord shard of its guild).
   */
  async reattach(
    platform: Platform,
    surfaceFor: (entry: InflightEntry) => SurfaceFor | Promise<SurfaceFor>,
  ): Promise<Run[]> {
    if (!this.#inflight) return [];
    const entries = await this.#inflight.list(platform);
    const runs: Run[] = [];
    for (const entry of entries) {
      const surface = await surfaceFor(entry);
      if (surface === OTHER_PROCESS) continue;
      if (!surface) {
        await this.#inflight.remove(platform, entry.jobId);
        continue;
      }
      runs.push(this.follow(entry.jobId, surface, { platform }));
    }
    if (runs.length > 0) this.#logger.info({ platform, jobs: runs.length }, 're-attached to jobs in flight');
    return runs;
  }

  /** The in-flight jobs of one person (for `/queue` and the Slack App Home). */
  async inflightOf(platform: Platform, user: string, workspace?: string): Promise<InflightEntry[]> {
    if (!this.#inflight) return [];
    return this.#inflight.list(platform, { user, ...(workspace === undefined ? {} : { workspace }) });
  }

  /**
   * Saves a job's new reply address: it moved (e.g. from an expiring interaction to a channel
   * message), or its message id became known.
   */
  async moveReply(platform: Platform, jobId: JobRef, reply: Record<string, unknown>): Promise<void> {
    await this.#inflight?.updateReply(platform, jobId, reply);
  }

  /**
   * Cancels a job for someone: its requester, or a moderator. Throws ForbiddenError('not_your_job')
   * for anyone else and NotFoundError when the job is gone.
   */
  async cancel(jobId: JobRef, actor: Actor): Promise<CancelOutcome> {
    const data = await this.jobs.data(jobId);
    if (!data) throw new NotFoundError('the job does not exist or has expired', { jobId });
    const origin = (data as { origin?: Origin }).origin;
    const own = origin !== undefined && origin.platform === actor.platform && origin.user === actor.user;
    if (!own && !actor.moderator) throw new ForbiddenError('not_your_job', { jobId });
    return this.jobs.cancel(jobId);
  }

  /** Stops following everything (jobs go on; their in-flight entries stay for the next process). */
  close(): void {
    for (const run of [...this.#runs]) run.stop();
  }

  async #deliver(
    jobId: JobRef,
    status: JobStatus,
    surface: ReplySurface,
    exactlyOnce: boolean,
    platform: Platform | undefined,
  ): Promise<RunOutcome> {
    const view = viewOf(jobId, status);
    if (view.state !== 'done' && view.state !== 'failed') return { state: 'stopped', jobId };
    for (let attempt = 1; attempt <= this.#o.finalAttempts; attempt++) {
      let claimed = true;
      try {
        if (exactlyOnce) claimed = await this.jobs.markPosted(jobId);
      } catch (error) {
        this.#logger.warn({ err: error, jobId, attempt }, 'could not claim the result; trying again');
        await sleep(this.#o.finalRetryMs * 2 ** (attempt - 1));
        continue;
      }
      if (!claimed) {
        await this.#forget(platform, jobId);
        return { state: 'already_posted', jobId };
      }
      try {
        if (view.state === 'done') await surface.final(view);
        else await surface.fail(view);
        await this.#forget(platform, jobId);
        return view.state === 'done' ? { state: 'done', jobId } : { state: 'failed', jobId, code: view.code };
      } catch (error) {
        this.#logger.warn({ err: error, jobId, attempt }, 'posting the result failed; giving the claim back');
        if (exactlyOnce) await this.jobs.unmarkPosted(jobId).catch(() => {});
        if (attempt < this.#o.finalAttempts) await sleep(this.#o.finalRetryMs * 2 ** (attempt - 1));
      }
    }
    this.#logger.error({ jobId }, 'could not post the result; a restart will try again');
    return { state: 'undelivered', jobId };
  }

  async #forget(platform: Platform | undefined, jobId: JobRef): Promise<void> {
    if (!this.#inflight || platform === undefined) return;
    // A few tries over a Redis restart (~1-2 s): a leftover entry shows as running in /queue
    // until a restarted bot re-attaches to it and finds it posted.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#inflight.remove(platform, jobId);
        return;
      } catch (error) {
        if (attempt >= FORGET_ATTEMPTS) {
          this.#logger.warn({ err: error, jobId }, 'could not drop the in-flight entry');
          return;
        }
        await sleep(this.#o.finalRetryMs * 2 ** (attempt - 1));
      }
    }
  }

  async #safely(what: string, call: () => void | Promise<void>): Promise<void> {
    try {
      await call();
    } catch (error) {
      this.#logger.warn({ err: error, what }, 'reply surface call failed');
    }
  }
}

const FORGET_ATTEMPTS = 4;

function queuedText(position: number): string {
  return renderStatus({ state: 'waiting', position });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
