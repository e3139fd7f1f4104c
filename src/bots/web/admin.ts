// The bull-board dashboard at /admin: every job queue of this deployment, for operators. It is the
// one place on the bot side that sees BullMQ directly (JobClient hides it from everything else),
// because showing raw queues is its whole purpose. Two things are adjusted for a local, offline
// dashboard: the page's web fonts (fetched from Google, which fails offline and tells Google who
// looks) are left out, and a cancelled job, which BullMQ can only keep as failed, reads as
// cancelled without a stack trace, so it does not look like something broke, and is never run
// again by the board's Retry or Retry all (the user asked for it to stop).
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { serveStatic } from '@hono/node-server/serve-static';
import { type Job, Queue } from 'bullmq';
import { Hono } from 'hono';
import type { Redis } from 'ioredis';
import { parseSerializedError } from '../../shared/errors.js';
import { jobKinds } from '../../shared/jobs.js';
import { renderError } from '../core/render.js';

export interface AdminBoard {
  /** Mount with `app.route(basePath, board.app)`. */
  readonly app: Hono;
  readonly basePath: string;
  close(): Promise<void>;
}

/** Stylesheets from other origins in bull-board's page (its Google Fonts link). */
const REMOTE_STYLESHEET = /<link\b[^>]*href="https?:\/\/[^"]*"[^>]*rel="stylesheet"[^>]*>\s*/gi;

/** bull-board's HTML without links to other origins: the page uses its fallback fonts. */
export function offlinePage(html: string): string {
  return html.replace(REMOTE_STYLESHEET, '');
}

type JobJson = ReturnType<Job['toJSON']>;

/**
 * What the dashboard shows of a failed job: our failedReason is a serialized CodedError, shown as
 * its code and sentence; a cancelled one has no stack trace worth showing.
 */
export function presentFailure(json: JobJson): JobJson {
  if (!json.failedReason) return json;
  const error = parseSerializedError(json.failedReason);
  if (error.code === 'internal' && error.message === json.failedReason) return json; // not ours
  if (error.code === 'cancelled') {
    return {
      ...json,
      name: `${json.name} (cancelled)`,
      failedReason: 'cancelled by the user',
      stacktrace: [],
    };
  }
  return { ...json, failedReason: `${error.code}: ${renderError(error)} (${error.message})` };
}

/** A queue adapter whose jobs go through presentFailure on their way to the page. */
class PresentingAdapter extends BullMQAdapter {
  override async getJob(id: string) {
    const job = await super.getJob(id);
    return job ? present(job) : job;
  }

  override async getJobs(...args: Parameters<BullMQAdapter['getJobs']>) {
    return (await super.getJobs(...args)).map(present);
  }
}

/** Whether a job ended because its user cancelled it (BullMQ keeps it as failed). */
function wasCancelled(job: Job | undefined): boolean {
  return job?.failedReason !== undefined && parseSerializedError(job.failedReason).code === 'cancelled';
}

/** The board's error body (its client shows `key` where it has no translation of it). */
const NOT_RETRIED = { error: { key: 'Cancelled jobs are not retried, ask for the image again' } };

/** How many failed jobs one round of Retry all reads and retries at once. */
const RETRY_PAGE = 100;

/**
 * Retry all of one queue's failed jobs except the cancelled ones. bull-board's own handler retries
 * every failed job, and it re-reads the head of the failed list each round, which a cancelled job
 * never leaves; so this reads the ids once and goes through them in pages.
 */
async function retryFailed(queue: Queue): Promise<{ retried: number; skipped: number }> {
  const ids = await queue.getRanges(['failed'], 0, -1);
  let retried = 0;
  let skipped = 0;
  for (let i = 0; i < ids.length; i += RETRY_PAGE) {
    const jobs = await Promise.all(ids.slice(i, i + RETRY_PAGE).map((id) => queue.getJob(id)));
    await Promise.all(
      jobs.map(async (job) => {
        if (job === undefined) return; // removed meanwhile
        if (wasCancelled(job)) {
          skipped++;
          return;
        }
        await job.retry('failed');
        retried++;
      }),
    );
  }
  return { retried, skipped };
}

function present<T extends { toJSON(): unknown }>(job: T): T {
  const toJSON = job.toJSON.bind(job);
  // Only the copy the board serialises changes; the job in Redis is untouched.
  return Object.assign(Object.create(job) as T, { toJSON: () => presentFailure(toJSON() as JobJson) });
}

/** Builds the dashboard for the queues under `prefix`; the caller owns `connection`. */
export function createAdminBoard(options: {
  connection: Redis;
  prefix: string;
  basePath?: string;
}): AdminBoard {
  const basePath = options.basePath ?? '/admin';
  const queues = jobKinds.map(
    (kind) => new Queue(kind, { connection: options.connection, prefix: options.prefix }),
  );
  const serverAdapter = new HonoAdapter(serveStatic).setBasePath(basePath);
  createBullBoard({
    queues: queues.map((q) => new PresentingAdapter(q)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'vqclip jobs' } },
  });
  const app = new Hono();
  const byName = new Map(queues.map((q) => [q.name, q]));
  // In front of bull-board's own retry routes: a cancelled job stays cancelled.
  app.put('/api/queues/:queueName/retry/failed', async (c, next) => {
    const queue = byName.get(c.req.param('queueName'));
    if (queue === undefined) return next();
    return c.json(await retryFailed(queue));
  });
  app.put('/api/queues/:queueName/:jobId/retry', async (c, next) => {
    const job = await byName.get(c.req.param('queueName'))?.getJob(c.req.param('jobId'));
    if (!wasCancelled(job)) return next();
    return c.json(NOT_RETRIED, 400);
  });
  app.use('*', async (c, next) => {
    await next();
    if (!c.res.headers.get('content-type')?.includes('text/html')) return;
    const html = offlinePage(await c.res.text());
    const headers = new Headers(c.res.headers);
    headers.delete('content-length');
    c.res = new Response(html, { status: c.res.status, headers });
  });
  app.route('/', serverAdapter.registerPlugin());
  return {
    app,
    basePath,
    async close() {
      await Promise.allSettled(queues.map((q) => q.close()));
    },
  };
}
