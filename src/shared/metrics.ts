// What operators (and `npm run soak`) read off a running bot or worker: Prometheus metrics through
// prom-client, one Registry per process part, served by metrics-server.ts at /metrics. The names
// below are a contract (dashboards, alerts and the soak script read them): add, never rename.
//
//   vqclip_queue_jobs{kind,state}                   gauge      jobs in Redis now (waiting, active, delayed, failed)
//   vqclip_job_wait_seconds{kind}                   histogram  enqueue -> a worker starts it (first attempts)
//   vqclip_job_duration_seconds{kind,outcome}       histogram  one attempt on a worker (completed, failed, handed_back)
//   vqclip_job_failures_total{kind,code}            counter    failed attempts by error code (retried ones included)
//   vqclip_worker_busy_seconds_total{kind}          counter    job-seconds of work, running jobs included up to now
//   vqclip_worker_active_jobs{kind}                 gauge      jobs running in this process
//   vqclip_worker_concurrency{kind}                 gauge      jobs this process runs at once at most
//   vqclip_chat_api_requests_total{platform,status} counter    HTTP responses of Discord's and Slack's APIs
//   vqclip_chat_api_rate_limited_total{platform}    counter    of those, 429s
// plus prom-client's process and Node.js metrics (process_cpu_seconds_total, nodejs_heap_size_used_bytes...).
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { JobKind } from './jobs.js';

/** The chat platforms whose API calls are counted. */
export type ChatPlatform = 'discord' | 'slack';

/** How one attempt of a job ended on a worker. */
export type JobOutcome = 'completed' | 'failed' | 'handed_back';

/** The fields of a BullMQ job the wait time is read from. */
export interface JobTimes {
  /** When it was added (ms since the epoch). */
  timestamp: number;
  /** When this attempt became active. */
  processedOn?: number | undefined;
  /** Attempts started so far, this one included (BullMQ's own count). */
  attemptsStarted?: number | undefined;
  /** Delay it was added with (ms). */
  delay?: number | undefined;
}

/** The states of vqclip_queue_jobs; `waiting` includes prioritized jobs. */
export const queueStates = ['waiting', 'active', 'delayed', 'failed'] as const;

// Seconds. Light jobs take tens of milliseconds, an imagine minutes: one set of buckets spans both.
const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200];
const WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export interface MetricsOptions {
  /** Add prom-client's process and Node.js metrics. @defaultValue true */
  processMetrics?: boolean;
}

/**
 * The metrics of one process. Created by a main (or a test), passed to what it measures; nothing
 * here is global, so a test's bot and worker keep their own counts.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #queueSources: {
    connection: Redis;
    prefix: string;
    kinds: readonly JobKind[];
    queues: Queue[];
  }[] = [];
  /** Finished job-seconds per kind, and the start times of running jobs. */
  readonly #busy = new Map<JobKind, number>();
  readonly #running = new Map<JobKind, Map<symbol, number>>();

  readonly queueJobs: Gauge<'kind' | 'state'>;
  readonly jobWait: Histogram<'kind'>;
  readonly jobDuration: Histogram<'kind' | 'outcome'>;
  readonly jobFailures: Counter<'kind' | 'code'>;
  readonly workerBusy: Counter<'kind'>;
  readonly workerActive: Gauge<'kind'>;
  readonly workerConcurrency: Gauge<'kind'>;
  readonly chatApiRequests: Counter<'platform' | 'status'>;
  readonly chatApiRateLimited: Counter<'platform'>;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    const sources = this.#queueSources;
    this.queueJobs = new Gauge({
      name: 'vqclip_queue_jobs',
      help: 'Jobs in each queue by state, read from Redis at scrape time',
      labelNames: ['kind', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const source of sources) {
          const counts = await Promise.all(
            source.queues.map((q) => q.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'failed')),
          );
          source.kinds.forEach((kind, i) => {
            const c = counts[i] ?? {};
            const n = (k: string) => c[k] ?? 0;
            this.set({ kind, state: 'waiting' }, n('wait') + n('prioritized'));
            this.set({ kind, state: 'active' }, n('active'));
            this.set({ kind, state: 'delayed' }, n('delayed'));
            this.set({ kind, state: 'failed' }, n('failed'));
          });
        }
      },
    });
    this.jobWait = new Histogram({
      name: 'vqclip_job_wait_seconds',
      help: 'Time from enqueue (or the end of its delay) to a worker starting the job, first attempts only',
      labelNames: ['kind'],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.jobDuration = new Histogram({
      name: 'vqclip_job_duration_seconds',
      help: 'Time one attempt of a job ran on a worker, by outcome',
      labelNames: ['kind', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.jobFailures = new Counter({
      name: 'vqclip_job_failures_total',
      help: 'Failed job attempts by error code (attempts that are retried included)',
      labelNames: ['kind', 'code'],
      registers,
    });
    const busy = this.#busy;
    const running = this.#running;
    this.workerBusy = new Counter({
      name: 'vqclip_worker_busy_seconds_total',
      help: 'Job-seconds this worker spent running jobs (running ones counted up to the scrape)',
      labelNames: ['kind'],
      registers,
      collect() {
        const now = performance.now();
        this.reset();
        for (const kind of new Set([...busy.keys(), ...running.keys()])) {
          let total = busy.get(kind) ?? 0;
          for (const started of running.get(kind)?.values() ?? []) total += (now - started) / 1000;
          this.inc({ kind }, total);
        }
      },
    });
    this.workerActive = new Gauge({
      name: 'vqclip_worker_active_jobs',
      help: 'Jobs running in this worker process',
      labelNames: ['kind'],
      registers,
    });
    this.workerConcurrency = new Gauge({
      name: 'vqclip_worker_concurrency',
      help: 'Jobs this worker process runs at once at most, per queue',
      labelNames: ['kind'],
      registers,
    });
    this.chatApiRequests = new Counter({
      name: 'vqclip_chat_api_requests_total',
      help: "Responses of the chat platforms' HTTP APIs by status code",
      labelNames: ['platform', 'status'],
      registers,
    });
    this.chatApiRateLimited = new Counter({
      name: 'vqclip_chat_api_rate_limited_total',
      help: "429 responses of the chat platforms' HTTP APIs",
      labelNames: ['platform'],
      registers,
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Reports the depth of these queues in vqclip_queue_jobs (read at each scrape). The connection is
   * the caller's and stays open; close() closes the Queue objects made here.
   */
  watchQueues(connection: Redis, prefix: string, kinds: readonly JobKind[]): void {
    const queues = kinds.map((kind) => new Queue(kind, { connection, prefix }));
    for (const q of queues) q.on('error', () => {});
    this.#queueSources.push({ connection, prefix, kinds, queues });
  }

  /** Sets vqclip_worker_concurrency for the queues a worker serves. */
  setConcurrency(concurrency: Partial<Record<JobKind, number>>): void {
    for (const [kind, n] of Object.entries(concurrency)) this.workerConcurrency.set({ kind }, n ?? 0);
  }

  /**
   * Marks a job attempt as started on this worker (its wait is observed now, on a first attempt);
   * the returned function ends it with its outcome and, for failures, the error code.
   */
  jobStarted(kind: JobKind, job: JobTimes): (outcome: JobOutcome, code?: string) => void {
    const started = performance.now();
    if ((job.attemptsStarted ?? 1) <= 1 && job.processedOn !== undefined) {
      const waited = (job.processedOn - job.timestamp - (job.delay ?? 0)) / 1000;
      this.jobWait.observe({ kind }, Math.max(0, waited));
    }
    let running = this.#running.get(kind);
    if (!running) {
      running = new Map();
      this.#running.set(kind, running);
    }
    const key = Symbol(kind);
    running.set(key, started);
    this.workerActive.inc({ kind });
    let ended = false;
    return (outcome, code) => {
      if (ended) return;
      ended = true;
      const seconds = (performance.now() - started) / 1000;
      running.delete(key);
      this.#busy.set(kind, (this.#busy.get(kind) ?? 0) + seconds);
      this.workerActive.dec({ kind });
      this.jobDuration.observe({ kind, outcome }, seconds);
      if (outcome === 'failed') this.jobFailures.inc({ kind, code: code ?? 'internal' });
    };
  }

  /** Counts one HTTP response of a chat platform's API (status 0: no response, a network error). */
  chatApiResponse(platform: ChatPlatform, status: number): void {
    this.chatApiRequests.inc({ platform, status: String(status) });
    if (status === 429) this.chatApiRateLimited.inc({ platform });
  }

  /**
   * A fetch that counts every response (and network failure) as a call of `platform`'s API: Slack's
   * WebClient takes one as `clientOptions.fetch`, so every Web API call Bolt makes is counted.
   */
  countingFetch(platform: ChatPlatform, inner: typeof fetch = globalThis.fetch): typeof fetch {
    return async (input, init) => {
      try {
        const response = await inner(input, init);
        this.chatApiResponse(platform, response.status);
        return response;
      } catch (error) {
        this.chatApiResponse(platform, 0);
        throw error;
      }
    };
  }

  /** The Prometheus text exposition of everything above. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Closes the Queue objects of watchQueues (not their connections). */
  async close(): Promise<void> {
    const queues = this.#queueSources.splice(0).flatMap((s) => s.queues);
    await Promise.all(queues.map((q) => q.close().catch(() => {})));
  }
}
