// Following one job until it ends: QueueEvents say when to look, the job state read from Redis says
// what is true, and a poll covers missed events. Reads are throttled (an imagine job reports every
// step: reading on every event would cost Redis more than the job's progress is worth), updates are
// delivered latest-wins, and the terminal status is always delivered, once.
import type { QueueEvents, QueueEventsListener } from 'bullmq';
import type { JobKind } from '../../shared/jobs.js';
import type { Logger } from '../../shared/logger.js';
import { isTerminal, type JobRef, type JobStatus } from './job-status.js';
import { LatestWins } from './latest-wins.js';

export interface Following<K extends JobKind = JobKind> {
  /** Resolves with the terminal status after it has been delivered (never rejects). */
  readonly done: Promise<JobStatus<K>>;
  /** Stops following; `done` then never resolves unless it already has. */
  stop(): void;
}

export interface FollowerDeps<K extends JobKind> {
  jobId: JobRef<K>;
  /** The BullMQ id inside the queue (events name jobs by it). */
  id: string;
  status(jobId: JobRef<K>): Promise<JobStatus<K>>;
  events: Promise<QueueEvents>;
  onUpdate(status: JobStatus<K>): void | Promise<void>;
  /** Least time between two deliveries, and between two reads prompted by this job's progress. */
  throttleMs: number;
  /** A read at least this often, events or not. */
  pollMs: number;
  logger: Logger;
  /** Called once when following ends (stopped or terminal). */
  onEnd(): void;
}

// Other jobs starting or ending move a waiting job up the queue; on a busy queue those events come by
// thousands, so they trigger at most one read per OTHER_EVENTS_MS.
const OTHER_EVENTS_MS = 250;

const EVENT_NAMES = [
  'active',
  'progress',
  'completed',
  'failed',
  'waiting',
  'delayed',
  'removed',
  'stalled',
] as const satisfies readonly (keyof QueueEventsListener)[];
// Events after which the next read may find the job finished: read at once, not after the throttle.
const URGENT = new Set<string>(['completed', 'failed', 'removed', 'active']);

export class JobFollower<K extends JobKind> implements Following<K> {
  readonly done: Promise<JobStatus<K>>;
  readonly #d: FollowerDeps<K>;
  readonly #throttle: LatestWins<JobStatus<K>>;
  #resolveDone!: (status: JobStatus<K>) => void;
  #stopped = false;
  #lastKey = '';
  #reading = false;
  #again = false;
  #waiting = true;
  #lastRead = Number.NEGATIVE_INFINITY;
  #readTimer: NodeJS.Timeout | undefined;
  #otherTimer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout;
  #events: QueueEvents | undefined;
  readonly #listeners = new Map<(typeof EVENT_NAMES)[number], (args: { jobId: string }) => void>();
  /** Reads of the job state so far (tests count them). */
  reads = 0;

  constructor(deps: FollowerDeps<K>) {
    this.#d = deps;
    this.done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    this.#throttle = new LatestWins<JobStatus<K>>(
      deps.throttleMs,
      async (status) => {
        if (!this.#stopped || isTerminal(status)) await deps.onUpdate(status);
      },
      deps.logger,
    );
    this.#poll = setInterval(() => void this.#read(), deps.pollMs);
    deps.events
      .then((qe) => {
        if (this.#stopped) return;
        this.#events = qe;
        for (const name of EVENT_NAMES) {
          const listener = (args: { jobId: string }) => this.#onEvent(name, args.jobId);
          this.#listeners.set(name, listener);
          qe.on(name, listener);
        }
      })
      .catch((error) => deps.logger.warn({ err: error }, 'no queue events; following by polling only'))
      // The first read comes after subscribing, so no change between the two can be missed.
      .finally(() => void this.#read());
  }

  stop(): void {
    this.#finish();
    this.#throttle.cancel();
  }

  #onEvent(name: string, jobId: string): void {
    if (jobId === this.#d.id) {
      if (URGENT.has(name)) void this.#read();
      else this.#readSoon();
    } else if (this.#waiting && !this.#otherTimer) {
      this.#otherTimer = setTimeout(() => {
        this.#otherTimer = undefined;
        void this.#read();
      }, OTHER_EVENTS_MS);
    }
  }

  /** A read now if none happened within throttleMs, else one when it has passed. */
  #readSoon(): void {
    if (this.#readTimer) return;
    const wait = this.#lastRead + this.#d.throttleMs - Date.now();
    if (wait <= 0) {
      void this.#read();
      return;
    }
    this.#readTimer = setTimeout(() => {
      this.#readTimer = undefined;
      void this.#read();
    }, wait);
  }

  async #read(): Promise<void> {
    if (this.#stopped) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    try {
      do {
        this.#again = false;
        let status: JobStatus<K>;
        this.#lastRead = Date.now();
        this.reads++;
        try {
          status = await this.#d.status(this.#d.jobId);
        } catch (error) {
          this.#d.logger.warn(
            { err: error, jobId: this.#d.jobId },
            'reading job status failed; retrying at the next poll',
          );
          return;
        }
        this.#waiting = status.state === 'waiting' || status.state === 'retrying';
        const key = JSON.stringify(status);
        if (key !== this.#lastKey) {
          this.#lastKey = key;
          this.#throttle.push(status);
        }
        if (isTerminal(status)) {
          this.#finish();
          await this.#throttle.flush();
          this.#resolveDone(status);
          return;
        }
      } while (this.#again && !this.#stopped);
    } finally {
      this.#reading = false;
    }
  }

  #finish(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#poll);
    clearTimeout(this.#otherTimer);
    clearTimeout(this.#readTimer);
    for (const [name, listener] of this.#listeners) this.#events?.off(name, listener);
    this.#listeners.clear();
    this.#d.onEnd();
  }
}
