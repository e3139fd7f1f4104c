// What chat adapters and the playground use to run jobs, with BullMQ hidden behind it: submit
// (validated, quota-checked), follow (throttled updates, latest wins), result, cancel (reaches the
// worker in another process) and an idempotent "posted" marker for at-least-once delivery.
// Truth is the job state read from Redis; QueueEvents only tell us when to read it again.
import { randomUUID } from 'node:crypto';
import { type Job, type JobsOptions, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { isCancelRequested, requestCancel } from '../../shared/cancel.js';
import {
  asCodedError,
  CancelledError,
  InternalError,
  NotFoundError,
  parseSerializedError,
  QuotaExceededError,
  TimeoutError,
  UnavailableError,
} from '../../shared/errors.js';
import {
  checkJob,
  type DeleteImageJob,
  type DeleteImageResult,
  imagineProgressSchema,
  type JobData,
  type JobKind,
  type JobResult,
  jobSchemas,
} from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { defaultJobOptions, keys } from '../../shared/queues.js';
import type { QuotaLimiter } from '../../shared/quota.js';
import { type Following, JobFollower } from './follow.js';
import { type JobRef, type JobStatus, type ProgressOf, parseJobRef } from './job-status.js';

export type { Following } from './follow.js';
export { isTerminal, type JobRef, type JobStatus, type ProgressOf, parseJobRef } from './job-status.js';
export { LatestWins } from './latest-wins.js';

export interface JobClientOptions {
  /** A producer connection (createConnection(url, 'producer')), shared by the queues; caller-owned. */
  connection: Redis;
  /** config.queuePrefix */
  prefix: string;
  /** Per-user limits; absent: none. */
  quota?: QuotaLimiter;
  /** Asked before every enqueue; throws to refuse (MemoryGuard: Redis memory). Absent: none. */
  admission?: { check(): Promise<void> };
  /**
   * Minimum time between two updates delivered by follow() (chat edits are rate limited).
   * @defaultValue 1000
   */
  throttleMs?: number;
  /**
   * How often follow() reads the job state even without events (events can be missed).
   * @defaultValue 2000
   */
  pollMs?: number;
  /** @defaultValue 1800000 (30 min) */
  resultTimeoutMs?: number;
  /** How long a posted marker is kept: longer than any retry of a job. @defaultValue 604800 (7 days) */
  postedTtlSeconds?: number;
  /** @defaultValue 86400 */
  cancelTtlSeconds?: number;
  /** Overrides of defaultJobOptions per queue. */
  jobOptions?: Partial<Record<JobKind, JobsOptions>>;
  /**
   * BullMQ priority per queue (1 is highest; absent is ahead of every prioritized job), e.g. to let
   * short jobs pass long ones when several kinds share a worker.
   */
  priorities?: Partial<Record<JobKind, number>>;
  logger?: Logger;
}

export const DefaultJobClientOptions = {
  throttleMs: 1000,
  pollMs: 2000,
  resultTimeoutMs: 30 * 60_000,
  postedTtlSeconds: 7 * 86_400,
  cancelTtlSeconds: 86_400,
} as const satisfies Partial<JobClientOptions>;

export interface SubmitOptions {
  /** Platform-qualified user id (`discord:1234`) for quotas. */
  userId: string;
  /** Overrides the queue's priority for this job. */
  priority?: number;
}

export type CancelOutcome = 'removed' | 'signalled' | 'finished' | 'not_found';

// Jobs ahead of one job: the wait list is consumed from its tail, prioritized jobs only after it.
// KEYS: wait, prioritized, active. ARGV: job id. Returns {position or -1, active count}.
const positionScript = `
local len = redis.call('LLEN', KEYS[1])
local active = redis.call('LLEN', KEYS[3])
local index = redis.call('LPOS', KEYS[1], ARGV[1])
if index then return {len - 1 - index, active} end
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if rank then return {len + rank, active} end
return {-1, active}
`;

const DURATION_SAMPLES = 20;
const DURATION_CACHE_MS = 30_000;

export class JobClient {
  readonly #connection: Redis;
  readonly #prefix: string;
  readonly #quota: QuotaLimiter | undefined;
  readonly #admission: { check(): Promise<void> } | undefined;
  readonly #opts: { [K in keyof typeof DefaultJobClientOptions]: number };
  readonly #jobOptions: Partial<Record<JobKind, JobsOptions>>;
  readonly #priorities: Partial<Record<JobKind, number>>;
  readonly #logger: Logger;
  readonly #queues = new Map<JobKind, Queue>();
  readonly #events = new Map<JobKind, Promise<QueueEvents>>();
  readonly #durations = new Map<JobKind, { at: number; ms: number | undefined }>();
  readonly #following = new Set<() => void>();
  #closed = false;

  constructor(options: JobClientOptions) {
    this.#connection = options.connection;
    this.#prefix = options.prefix;
    this.#quota = options.quota;
    this.#admission = options.admission;
    this.#opts = {
      throttleMs: options.throttleMs ?? DefaultJobClientOptions.throttleMs,
      pollMs: options.pollMs ?? DefaultJobClientOptions.pollMs,
      resultTimeoutMs: options.resultTimeoutMs ?? DefaultJobClientOptions.resultTimeoutMs,
      postedTtlSeconds: options.postedTtlSeconds ?? DefaultJobClientOptions.postedTtlSeconds,
      cancelTtlSeconds: options.cancelTtlSeconds ?? DefaultJobClientOptions.cancelTtlSeconds,
    };
    if (!(this.#opts.throttleMs >= 0) || !(this.#opts.pollMs >= 10)) {
      throw new RangeError('throttleMs must be >= 0 and pollMs >= 10');
    }
    this.#jobOptions = options.jobOptions ?? {};
    this.#priorities = options.priorities ?? {};
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Validates, checks the user's quota, and enqueues. Throws a CodedError: `bad_input` /
   * `prompt_too_long` for invalid data, `quota_exceeded` (details say when to retry), `unavailable`
   * when Redis cannot take the job.
   */
  async submit<K extends JobKind>(
    kind: K,
    data: JobData<K>,
    options: SubmitOptions,
  ): Promise<{ jobId: JobRef<K>; position: number }> {
    const payload = checkJob(jobSchemas[kind].data, data);
    const id = randomUUID();
    const quotaJob = { queue: kind, jobId: id };
    // Before the quota: a refusal for memory must not spend the person's budget.
    await this.#admission?.check();
    if (this.#quota) {
      // Redis down (a restart, a network cut): the same refusal as a failed add, not an internal error.
      const decision = await this.#quota.acquire(options.userId, quotaJob).catch((error: unknown) => {
        throw new UnavailableError('the job queue is not reachable', { cause: error });
      });
      if (!decision.allowed) {
        const { allowed: _, ...details } = decision;
        throw new QuotaExceededError(details);
      }
    }
    const priority = options.priority ?? this.#priorities[kind];
    try {
      await this.#queue(kind).add(kind, payload, {
        ...defaultJobOptions[kind],
        ...this.#jobOptions[kind],
        jobId: id,
        ...(priority === undefined ? {} : { priority }),
      });
    } catch (error) {
      await this.#quota?.release(options.userId, quotaJob, { refund: true }).catch(() => {});
      throw new UnavailableError('the job queue is not reachable', { cause: error });
    }
    const jobId: JobRef<K> = `${kind}:${id}`;
    // Just added, so waiting (or already taken: position 0). One script call, not a full status read.
    // The job exists now: if Redis went away since the add, it is still accepted (refusing it would
    // tell the person it failed while it runs); its position comes with the next status read.
    const status = await this.#waiting(kind, id).catch((error: unknown) => {
      this.#logger.warn({ err: error, jobId }, 'could not read the queue position of a new job');
      return { state: 'waiting', position: 0 } as const;
    });
    return { jobId, position: status.state === 'waiting' ? status.position : 0 };
  }

  /**
   * The data a job was submitted with (validated again: Redis is a trust boundary), or undefined when
   * the job is gone (trimmed after its retention) or its data no longer parses. Buttons that act on
   * an earlier job (Re-roll, Variations, Cancel's ownership check) read it.
   */
  async data<K extends JobKind>(jobId: JobRef<K>): Promise<JobData<K> | undefined> {
    const { kind, id } = parseJobRef(jobId);
    const job = (await this.#queue(kind).getJob(id)) as Job | undefined;
    if (!job) return undefined;
    const parsed = jobSchemas[kind].data.safeParse(job.data);
    return parsed.success ? (parsed.data as JobData<K>) : undefined;
  }

  /** The job's current status, read from Redis. */
  async status<K extends JobKind>(jobId: JobRef<K>): Promise<JobStatus<K>> {
    const { kind: parsedKind, id } = parseJobRef(jobId);
    const kind = parsedKind as K;
    const queue = this.#queue(kind);
    // A job read while active can finish before its state is read: read it again then.
    for (let attempt = 0; attempt < 3; attempt++) {
      const job = (await queue.getJob(id)) as Job | undefined;
      if (!job) return this.#missing(kind, id);
      const state = await job.getState();
      if ((state === 'completed' || state === 'failed') && job.finishedOn === undefined) continue;
      switch (state) {
        case 'completed':
          return this.#completed(kind, job);
        case 'failed':
          return { state: 'failed', error: parseSerializedError(job.failedReason) };
        case 'active':
          return { state: 'active', attemptsMade: job.attemptsMade, ...this.#progress(kind, job.progress) };
        case 'delayed':
          return { state: 'retrying', attemptsMade: job.attemptsMade };
        case 'unknown':
          return this.#missing(kind, id);
        default:
          return this.#waiting(kind, id);
      }
    }
    return { state: 'failed', error: new InternalError('job state kept changing while read') };
  }

  /**
   * Calls onUpdate with the job's status whenever it changes, at most once per throttleMs (the
   * latest status wins; intermediate ones are dropped), until a terminal status has been delivered.
   * Events from Redis trigger reads; a poll every pollMs covers missed events.
   */
  follow<K extends JobKind>(
    jobId: JobRef<K>,
    onUpdate: (status: JobStatus<K>) => void | Promise<void>,
    options: { throttleMs?: number } = {},
  ): Following<K> {
    const { kind, id } = parseJobRef(jobId);
    const follower: JobFollower<K> = new JobFollower<K>({
      jobId,
      id,
      status: (ref) => this.status(ref),
      events: this.#queueEvents(kind),
      onUpdate,
      throttleMs: options.throttleMs ?? this.#opts.throttleMs,
      pollMs: this.#opts.pollMs,
      logger: this.#logger,
      onEnd: () => this.#following.delete(stop),
    });
    const stop = () => follower.stop();
    this.#following.add(stop);
    return follower;
  }

  /**
   * Waits for the job to finish and returns its result, or throws its CodedError (`cancelled`,
   * `not_found` for a job that expired, or what the worker failed with); `timeout` after timeoutMs,
   * leaving the job running.
   */
  async result<K extends JobKind>(
    jobId: JobRef<K>,
    options: { timeoutMs?: number } = {},
  ): Promise<JobResult<K>> {
    const timeoutMs = options.timeoutMs ?? this.#opts.resultTimeoutMs;
    const following = this.follow(jobId, () => {}, { throttleMs: 0 });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TimeoutError(`job ${jobId} did not finish within ${timeoutMs} ms`, { jobId, timeoutMs }),
          ),
        timeoutMs,
      );
    });
    try {
      const final = await Promise.race([following.done, timeout]);
      if (final.state === 'completed') return final.result;
      if (final.state === 'failed') throw final.error;
      throw new InternalError(`unexpected final state ${final.state}`);
    } finally {
      clearTimeout(timer);
      following.stop();
    }
  }

  /**
   * Removes an indexed image of one channel: a delete-image job, served by a worker that holds the
   * database (adapters never open it). Resolves `{ deleted: false }` when that channel holds no such
   * image, so deleting twice is fine; throws the job's CodedError otherwise.
   */
  async deleteImage(
    image: DeleteImageJob,
    options: SubmitOptions & { timeoutMs?: number },
  ): Promise<DeleteImageResult> {
    return this.run('delete-image', image, options);
  }

  /**
   * Submits a job and waits for its result: for the short jobs a reply waits on (classify, search,
   * indexing, settings). Throws what submit() or result() throw.
   */
  async run<K extends JobKind>(
    kind: K,
    data: JobData<K>,
    options: SubmitOptions & { timeoutMs?: number },
  ): Promise<JobResult<K>> {
    const { timeoutMs, ...submit } = options;
    const { jobId } = await this.submit(kind, data, submit);
    return this.result(jobId, timeoutMs === undefined ? {} : { timeoutMs });
  }

  /**
   * Cancels a job from any process: a waiting job is removed, a running one is signalled through
   * the cancel channel (its worker aborts within a step and fails it with `cancelled`).
   */
  async cancel(jobId: JobRef): Promise<CancelOutcome> {
    const { kind, id } = parseJobRef(jobId);
    const job = (await this.#queue(kind).getJob(id)) as Job | undefined;
    if (!job) return 'not_found';
    let state = await job.getState();
    if (state === 'completed' || state === 'failed') return 'finished';
    // Marker first: a worker taking the job between here and the removal sees it when it starts.
    await requestCancel(
      this.#connection,
      this.#prefix,
      { queue: kind, jobId: id },
      this.#opts.cancelTtlSeconds,
    );
    if (state === 'waiting' || state === 'prioritized' || state === 'delayed') {
      try {
        await job.remove();
        return 'removed';
      } catch {
        // Locked: a worker took it meanwhile. The marker reaches it.
        state = await job.getState();
      }
    }
    if (state === 'completed' || state === 'failed') {
      await this.#connection.del(keys.cancel(this.#prefix, kind, id));
      return 'finished';
    }
    return 'signalled';
  }

  /**
   * Claims the right to post a job's final result: true only for the first caller, across
   * processes and re-runs of the job, so a job retried after a crash is never posted twice.
   */
  async markPosted(jobId: JobRef): Promise<boolean> {
    const reply = await this.#connection.set(
      keys.posted(this.#prefix, jobId),
      String(Date.now()),
      'EX',
      this.#opts.postedTtlSeconds,
      'NX',
    );
    return reply === 'OK';
  }

  /** Gives the claim back when posting failed, so that another attempt may post. */
  async unmarkPosted(jobId: JobRef): Promise<void> {
    await this.#connection.del(keys.posted(this.#prefix, jobId));
  }

  /** Stops every follow and closes queues and event streams (not the connection, which the caller owns). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const stop of [...this.#following]) stop();
    const events = await Promise.allSettled([...this.#events.values()]);
    await Promise.allSettled(events.map((e) => (e.status === 'fulfilled' ? e.value.close() : undefined)));
    await Promise.allSettled([...this.#queues.values()].map((q) => q.close()));
  }

  #queue(kind: JobKind): Queue {
    if (this.#closed) throw new UnavailableError('JobClient is closed');
    let queue = this.#queues.get(kind);
    if (!queue) {
      queue = new Queue(kind, { connection: this.#connection, prefix: this.#prefix });
      queue.on('error', (error) => this.#logger.warn({ err: error, queue: kind }, 'queue error'));
      this.#queues.set(kind, queue);
    }
    return queue;
  }

  #queueEvents(kind: JobKind): Promise<QueueEvents> {
    if (this.#closed) return Promise.reject(new UnavailableError('JobClient is closed'));
    let events = this.#events.get(kind);
    if (!events) {
      const qe = new QueueEvents(kind, { connection: this.#connection, prefix: this.#prefix });
      qe.on('error', (error) => this.#logger.warn({ err: error, queue: kind }, 'queue events error'));
      // Every follow()/result() in flight listens on this one QueueEvents: many is normal, not a leak.
      qe.setMaxListeners(0);
      events = qe.waitUntilReady().then(() => qe);
      this.#events.set(kind, events);
    }
    return events;
  }

  async #missing<K extends JobKind>(kind: K, id: string): Promise<JobStatus<K>> {
    if (await isCancelRequested(this.#connection, this.#prefix, { queue: kind, jobId: id })) {
      return { state: 'failed', error: new CancelledError() };
    }
    return {
      state: 'failed',
      error: new NotFoundError('the job does not exist or has expired', { jobId: `${kind}:${id}` }),
    };
  }

  #completed<K extends JobKind>(kind: K, job: Job): JobStatus<K> {
    // Results cross a process boundary too: a worker of another version must not crash the renderer.
    const parsed = jobSchemas[kind].result.safeParse(job.returnvalue);
    if (!parsed.success) {
      this.#logger.error(
        { jobId: job.id, queue: kind, issues: parsed.error.issues },
        'worker returned an invalid result',
      );
      return { state: 'failed', error: new InternalError('the worker returned an invalid result') };
    }
    return { state: 'completed', result: parsed.data as JobResult<K> };
  }

  #progress<K extends JobKind>(kind: K, progress: unknown): { progress?: ProgressOf<K> } {
    if (progress === undefined || progress === null || progress === 0) return {};
    if (kind !== 'imagine') return { progress: progress as ProgressOf<K> };
    const parsed = imagineProgressSchema.safeParse(progress);
    return parsed.success ? { progress: parsed.data as ProgressOf<K> } : {};
  }

  async #waiting<K extends JobKind>(kind: K, id: string): Promise<JobStatus<K>> {
    const [position, active] = (await this.#connection.eval(
      positionScript,
      3,
      keys.bullList(this.#prefix, kind, 'wait'),
      keys.bullList(this.#prefix, kind, 'prioritized'),
      keys.bullList(this.#prefix, kind, 'active'),
      id,
    )) as [number, number];
    // -1: it left the lists between the two reads; report it as next.
    const ahead = Math.max(0, position);
    const averageMs = await this.#averageDurationMs(kind);
    if (averageMs === undefined) return { state: 'waiting', position: ahead };
    const startsInMs = await this.#startsInMs(kind, ahead, active, averageMs);
    return { state: 'waiting', position: ahead, etaSeconds: Math.round((startsInMs + averageMs) / 1000) };
  }

  /**
   * When a job with `ahead` jobs before it starts: the running jobs free their slots when their
   * average duration is up (counted from when each started, so a job about to finish frees its slot
   * soon), then every slot takes the next job for an average duration. Without that, a job next in
   * line behind one about to finish was told two full durations.
   */
  async #startsInMs(kind: JobKind, ahead: number, active: number, averageMs: number): Promise<number> {
    // Nothing running: one slot, free now (a worker may be down; this is the best guess).
    let slots: number[] = [];
    if (active > 0) {
      try {
        const now = Date.now();
        const running = await this.#queue(kind).getActive(0, Math.min(active, 100) - 1);
        slots = running.map((j) => Math.max(0, averageMs - (now - (j.processedOn ?? now))));
      } catch {
        slots = Array.from({ length: active }, () => averageMs);
      }
    }
    if (slots.length === 0) slots = [0];
    // Past a few hundred jobs the rounds are even: skip them whole instead of one by one.
    const parallel = slots.length;
    const wholeRounds = Math.max(0, Math.floor((ahead - parallel) / parallel));
    let left = ahead - wholeRounds * parallel;
    slots = slots.map((t) => t + wholeRounds * averageMs).sort((a, b) => a - b);
    while (left > 0) {
      const next = slots.shift()!;
      slots.push(next + averageMs);
      slots.sort((a, b) => a - b);
      left--;
    }
    return slots[0]!;
  }

  async #averageDurationMs(kind: JobKind): Promise<number | undefined> {
    const cached = this.#durations.get(kind);
    if (cached && Date.now() - cached.at < DURATION_CACHE_MS) return cached.ms;
    let ms: number | undefined;
    try {
      const jobs = await this.#queue(kind).getCompleted(0, DURATION_SAMPLES - 1);
      const durations = jobs
        .map((j) => (j.finishedOn ?? 0) - (j.processedOn ?? 0))
        .filter((d) => d > 0 && Number.isFinite(d));
      ms = durations.length === 0 ? undefined : durations.reduce((a, b) => a + b, 0) / durations.length;
    } catch (error) {
      this.#logger.warn({ err: asCodedError(error).message, queue: kind }, 'could not read job durations');
    }
    this.#durations.set(kind, { at: Date.now(), ms });
    return ms;
  }
}
