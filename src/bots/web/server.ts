// The local playground: one page (Imagine with live previews over server-sent events, What is this,
// a searchable image Library) and the JSON API behind it, plus the bull-board dashboard at /admin.
// Like the chat adapters it is thin: validate (zod), enqueue through the JobClient, follow, render.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { BlobStore } from '../../shared/blobs.js';
import { asCodedError, BadInputError, NotFoundError, UnavailableError } from '../../shared/errors.js';
import {
  type ImagineResult,
  type JobData,
  type JobKind,
  type JobResult,
  jobLimits,
  type Origin,
  presets,
} from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import type { JobClient, JobRef, JobStatus } from '../core/job-client.js';
import { parseJobRef } from '../core/job-status.js';
import {
  formatPercent,
  httpStatusFor,
  localTexts,
  type PromptCut,
  renderChannelRule,
  renderEmptyChannel,
  renderPromptCut,
  renderScoreNote,
  renderSearchSummary,
  renderSizeRule,
  renderStaleNote,
} from '../core/render.js';
import { JobRunner, type ReplySurface } from '../core/reply.js';
import { imagineRequest, searchRequest, whatisRequest } from '../core/requests.js';
import { type JobView, viewOf } from '../core/view.js';
import { type AdminBoard, createAdminBoard } from './admin.js';
import { assertPlaygroundExposure, passwordGuard } from './auth.js';
import { errorBody, readBody, readJson, readQuery } from './http.js';
import {
  channelFromName,
  type Library,
  type LibraryEntry,
  libraryScope,
  UPLOAD_MAX_BYTES,
} from './library.js';

/** The parts of a prompt that CLIP reads only in part (built from the models' tokenizer). */
export type PromptTokens = (prompt: string) => PromptCut[];

export interface PlaygroundOptions {
  /** Submits the user's jobs (imagine, classify, search); give it the quota the deployment wants. */
  jobs: JobClient;
  /**
   * Submits library indexing (embed-image, delete-image). Chat images are indexed without counting against a
   * user's quota, so the playground library is too. @defaultValue `jobs`
   */
  indexJobs?: JobClient;
  /** Uploads go to the blob store (Redis or S3); previews and finals are read back from it. */
  blobs: BlobStore;
  /**
   * Answer image requests with a redirect to a presigned URL of the store when it has them (S3), so
   * that browsers fetch the bytes straight from it; the store must then be reachable from them
   * (config.blobs.s3.presignedUrls). @defaultValue false: bytes pass through this process
   */
  presignedImages?: boolean;
  library: Library;
  /** Mounts bull-board at /admin over these queues; false leaves it out. */
  admin?: { connection: Redis; prefix: string } | false;
  /** Quota identity of the person at the keyboard. @defaultValue 'web:local' */
  userId?: string;
  /** Largest upload (what-is, library). @defaultValue UPLOAD_MAX_BYTES (10 MiB, the CLI's too) */
  maxUploadBytes?: number;
  /** Largest JSON body. @defaultValue 65536 */
  maxJsonBytes?: number;
  /** Least time between two progress events of one stream. @defaultValue 250 */
  followThrottleMs?: number;
  /** How long what-is, search and indexing requests wait for their job. @defaultValue 120000 */
  waitTimeoutMs?: number;
  /** Uploads only need to live until their job has read them. @defaultValue 3600 */
  uploadTtlSeconds?: number;
  /** Keeps idle proxies from closing event streams. @defaultValue 15000 */
  heartbeatMs?: number;
  /** Shown on the page: whether the models are random weights (the offline demo). @defaultValue false */
  randomWeights?: boolean;
  /** Says when CLIP will not read a whole prompt; absent: no such notes. */
  promptTokens?: PromptTokens | undefined;
  /**
   * Asked for on every route, /admin included (config.playgroundPassword; auth.ts). startPlayground
   * refuses a host other than loopback without one. @defaultValue none (open)
   */
  password?: string | undefined;
  logger?: Logger;
}

export const DefaultPlaygroundOptions = {
  userId: 'web:local',
  maxUploadBytes: UPLOAD_MAX_BYTES,
  maxJsonBytes: 64 * 1024,
  followThrottleMs: 250,
  waitTimeoutMs: 120_000,
  uploadTtlSeconds: 3600,
  heartbeatMs: 15_000,
  randomWeights: false,
  presignedImages: false,
} as const satisfies Partial<PlaygroundOptions>;

/** How long a presigned image URL handed to a browser works (it fetches it at once). */
const PRESIGNED_IMAGE_SECONDS = 600;

export interface Playground {
  readonly app: Hono;
  /** Ends open event streams and closes the dashboard's queues (not the JobClients or connections). */
  close(): Promise<void>;
}

// The API's own checks speak the playground's words (render.ts), not zod's: each schema names its
// problem; the job schema checks the values again behind them.
const unknownFields = (issue: { code: string; keys?: readonly string[] }) =>
  issue.code === 'unrecognized_keys' && issue.keys
    ? `there is no ${issue.keys.map((k) => `"${k}"`).join(', ')} here`
    : undefined;
const text = (what: string) => z.string({ error: `${what} must be text` });
const wholeNumber = z.number({ error: 'must be a whole number' });

const imagineBodySchema = z.strictObject(
  {
    prompt: text('the prompt'),
    preset: text('the preset').optional(),
    steps: wholeNumber.optional(),
    width: wholeNumber.optional(),
    height: wholeNumber.optional(),
    seed: wholeNumber.optional(),
    drawer: text('the drawer').optional(),
    candidates: wholeNumber.optional(),
  },
  { error: unknownFields },
);

const whatisQuerySchema = z.strictObject(
  {
    labels: z
      .string()
      .max(jobLimits.labels * (jobLimits.labelChars + 1), {
        error: `at most ${jobLimits.labels} labels of ${jobLimits.labelChars} characters`,
      })
      .optional(),
    topK: z.coerce
      .number({ error: 'must be a whole number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: `must be 1 to ${jobLimits.maxTopK}` })
      .max(jobLimits.maxTopK, { error: `must be 1 to ${jobLimits.maxTopK}` })
      .optional(),
  },
  { error: unknownFields },
);

const uploadQuerySchema = z.strictObject(
  { name: z.string().max(200, { error: 'a file name has at most 200 characters' }).optional() },
  { error: unknownFields },
);

const searchQuerySchema = z.strictObject(
  {
    q: z
      .string({ error: 'type some words to search for' })
      .trim()
      .min(1, { error: 'type some words to search for' })
      .max(jobLimits.queryChars, { error: `at most ${jobLimits.queryChars} characters` }),
    k: z.coerce
      .number({ error: 'must be a whole number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: `must be 1 to ${jobLimits.maxSearchK}` })
      .max(jobLimits.maxSearchK, { error: `must be 1 to ${jobLimits.maxSearchK}` })
      .default(8),
  },
  { error: unknownFields },
);

/**
 * The problems of a size, said as one rule (the job schema's own words are zod's). A single side
 * stands for a square, as the core reads it.
 */
function sideIssues(body: { width?: number | undefined; height?: number | undefined }) {
  const sides = { width: body.width ?? body.height, height: body.height ?? body.width };
  return (['width', 'height'] as const).flatMap((side) => {
    const v = sides[side];
    if (v === undefined) return [];
    const ok = Number.isInteger(v) && v >= jobLimits.minSide && v <= jobLimits.maxSide && v % 16 === 0;
    return ok ? [] : [{ path: `size.${side}`, message: renderSizeRule(jobLimits) }];
  });
}

const staticFiles: Readonly<Record<string, string>> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

function loadStatic(): { index: string; files: Map<string, string> } {
  const dir = new URL('./static/', import.meta.url);
  const files = new Map<string, string>();
  for (const name of Object.keys(staticFiles)) files.set(name, readFileSync(new URL(name, dir), 'utf8'));
  return { index: readFileSync(new URL('index.html', dir), 'utf8'), files };
}

/** Library images in flight at once while re-indexing (the worker micro-batches them). */
const REINDEX_CONCURRENCY = 4;

export function blobUrl(key: string): string {
  return `/api/blobs/${encodeURIComponent(key)}`;
}

function fileUrl(channel: string, file: string): string {
  return `/api/library/${channel}/files/${file}`;
}

/** The error a playground whose port is taken reports (also asked before start-up, src/app/port.ts). */
export function portInUseError(port: number, host: string, cause?: unknown): UnavailableError {
  return new UnavailableError(`port ${port} on ${host} is in use: set PORT to a free port`, { cause });
}

// The page's API names states as BullMQ does (waiting, active, completed, failed); the view model's
// names are the surfaces' (queued, running, done, failed).
const apiStates = { queued: 'waiting', running: 'active', done: 'completed', failed: 'failed' } as const;

/** What the page receives for a job (the same object over SSE and GET /api/jobs/:id), from the core's view. */
export function viewPayload(view: JobView): Record<string, unknown> {
  const state = view.state === 'running' && view.retrying ? 'retrying' : apiStates[view.state];
  switch (view.state) {
    case 'queued':
      return { state, text: view.text, position: view.position, etaSeconds: view.etaSeconds };
    case 'running': {
      const { state: _s, jobId: _j, retrying: _r, ...progress } = view;
      return {
        state,
        ...progress,
        // One key for every preview of a job: the step makes each preview's URL its own.
        ...(view.previewBlob
          ? { previewUrl: `${blobUrl(view.previewBlob)}?step=${view.previewStep ?? 0}` }
          : {}),
      };
    }
    case 'done': {
      const r = view.result as Partial<ImagineResult>;
      return {
        state,
        text: view.text,
        result: {
          ...view.result,
          ...(r.finalBlob ? { finalUrl: blobUrl(r.finalBlob) } : {}),
          ...(r.timelapseBlob ? { timelapseUrl: blobUrl(r.timelapseBlob) } : {}),
        },
      };
    }
    case 'failed':
      return { state, text: view.text, code: view.code };
  }
}

/** The payload of a status read from Redis. */
export function statusPayload(jobId: JobRef, status: JobStatus): Record<string, unknown> {
  return viewPayload(viewOf(jobId, status));
}

function jobRefParam(c: Context): JobRef {
  const raw = c.req.param('jobId') ?? '';
  parseJobRef(raw); // throws not_found for anything that is not `kind:id`
  return raw as JobRef;
}

/** The channel a path names, display names included (`Holiday Photos` -> holiday-photos). */
function channelParam(c: Context): string {
  const channel = channelFromName(c.req.param('channel') ?? '');
  if (channel === undefined) {
    throw new BadInputError('bad channel name', {
      reason: 'bad_channel',
      issues: [{ path: 'channel', message: renderChannelRule() }],
    });
  }
  return channel;
}

export function createPlayground(options: PlaygroundOptions): Playground {
  const o = { ...DefaultPlaygroundOptions, ...options };
  const logger = o.logger ?? silentLogger;
  const jobs = o.jobs;
  const indexJobs = o.indexJobs ?? jobs;
  // A reloaded page shows a result again: no posted markers, no in-flight index.
  const runner = new JobRunner({ jobs, throttleMs: o.followThrottleMs, logger });
  // The person at the keyboard: userId is their quota identity already (`web:local`).
  const origin: Origin = { platform: 'web', user: o.userId };
  const userId = o.userId;
  const { blobs, library } = o;
  const page = loadStatic();
  const streams = new Set<() => void>();
  let admin: AdminBoard | undefined;

  const app = new Hono();
  // First, so that no route (the page, the API, /admin) answers without it.
  if (o.password) app.use('*', passwordGuard(o.password));

  app.onError((error, c) => {
    const coded = asCodedError(error);
    if (coded.code === 'internal') logger.error({ err: error, path: c.req.path }, 'request failed');
    const status = httpStatusFor(coded.code);
    const retryAfter = coded.details.retryAfterSeconds;
    if (typeof retryAfter === 'number') c.header('Retry-After', String(retryAfter));
    return c.json(errorBody(coded), status as 400);
  });

  app.notFound((c) =>
    c.req.path.startsWith('/api/')
      ? c.json(errorBody(new NotFoundError('no such endpoint')), 404)
      : c.text('Not found', 404),
  );

  // A page on another site must not drive this API through the visitor's browser: requests that
  // change something must come from this origin (browsers always send Origin on those).
  app.use('/api/*', async (c, next) => {
    const origin = c.req.header('origin');
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && origin !== undefined) {
      const host = c.req.header('host');
      let sameHost = false;
      try {
        sameHost = new URL(origin).host === host;
      } catch {
        sameHost = false;
      }
      if (!sameHost)
        return c.json(errorBody(new BadInputError('cross-origin requests are not accepted')), 403);
    }
    await next();
  });

  app.get('/', (c) => c.html(page.index));
  app.get('/favicon.ico', (c) =>
    c.body(page.files.get('favicon.svg')!, 200, {
      'Content-Type': 'image/svg+xml',
      'Cache-Control': 'public, max-age=86400',
    }),
  );
  app.get('/static/:name', (c) => {
    const name = c.req.param('name');
    const body = page.files.get(name);
    const type = staticFiles[name];
    if (body === undefined || type === undefined) return c.text('Not found', 404);
    return c.body(body, 200, { 'Content-Type': type, 'Cache-Control': 'no-cache' });
  });

  app.get('/api/info', (c) =>
    c.json({
      randomWeights: o.randomWeights,
      presets,
      limits: {
        promptChars: jobLimits.promptChars,
        minSide: jobLimits.minSide,
        maxSide: jobLimits.maxSide,
        maxSteps: jobLimits.maxSteps,
        maxUploadBytes: o.maxUploadBytes,
        sizeRule: renderSizeRule(jobLimits),
      },
      // Sentences the page shows on its own (connection lost, cancelling): render.ts's, as everywhere.
      texts: localTexts,
    }),
  );

  // --- imagine -------------------------------------------------------------------------------------

  app.post('/api/imagine', async (c) => {
    const body = await readJson(c, imagineBodySchema, o.maxJsonBytes);
    if (body.prompt.trim() === '') throw new BadInputError('the prompt is empty', { reason: 'empty' });
    const sizeProblems = sideIssues(body);
    const build = () =>
      // The seed is drawn by the core when absent, so the page can show it and re-roll.
      imagineRequest(
        {
          prompt: body.prompt,
          seed: body.seed,
          steps: body.steps,
          preset: body.preset,
          drawer: body.drawer,
          candidates: body.candidates,
          ...(sizeProblems.length > 0 ? {} : { size: { width: body.width, height: body.height } }),
        },
        origin,
      );
    let data: ReturnType<typeof build>;
    try {
      data = build();
    } catch (error) {
      // Every problem in one answer: the size's with the core's.
      const issues = (error as { code?: string; details?: { issues?: unknown } }).details?.issues;
      if (
        sizeProblems.length === 0 ||
        (error as { code?: string }).code !== 'bad_input' ||
        !Array.isArray(issues)
      )
        throw error;
      throw new BadInputError('invalid request', { issues: [...sizeProblems, ...issues] });
    }
    if (sizeProblems.length > 0) throw new BadInputError('invalid size', { issues: sizeProblems });
    const note = renderPromptCut(o.promptTokens?.(data.prompt) ?? []);
    const { jobId, position } = await jobs.submit('imagine', data, { userId });
    return c.json(
      {
        jobId,
        position,
        seed: data.seed,
        eventsUrl: `/api/jobs/${encodeURIComponent(jobId)}/events`,
        ...(note === undefined ? {} : { note }),
      },
      202,
    );
  });

  app.get('/api/jobs/:jobId', async (c) => {
    const jobId = jobRefParam(c);
    const status = await jobs.status(jobId);
    const missing = status.state === 'failed' && status.error.code === 'not_found';
    return c.json(statusPayload(jobId, status), missing ? 404 : 200);
  });

  app.post('/api/jobs/:jobId/cancel', async (c) => {
    const outcome = await jobs.cancel(jobRefParam(c));
    // A running job stops at its next step; until its stream says Cancelled the page says this.
    return c.json({ outcome, ...(outcome === 'signalled' ? { text: localTexts.cancelling } : {}) });
  });

  // The event stream is a ReplySurface of the core's run loop.
  app.get('/api/jobs/:jobId/events', (c) => {
    const jobId = jobRefParam(c);
    return streamSSE(c, async (stream) => {
      let end!: () => void;
      const ended = new Promise<void>((resolve) => {
        end = resolve;
      });
      let seq = 0;
      const send = (event: string, view: JobView) =>
        stream.writeSSE({ event, id: String(++seq), data: JSON.stringify(viewPayload(view)) });
      const surface: ReplySurface = {
        ack: (view) => send('status', view),
        progress: (view) => send('status', view),
        final: (view) => send('done', view),
        fail: (view) => send('failed', view),
      };
      const run = runner.follow(jobId, surface, { exactlyOnce: false });
      const heartbeat = setInterval(() => void stream.write(': ping\n\n').catch(() => {}), o.heartbeatMs);
      streams.add(end);
      stream.onAbort(end);
      try {
        await Promise.race([run.done, ended]);
      } finally {
        clearInterval(heartbeat);
        run.stop();
        streams.delete(end);
      }
    });
  });

  app.get('/api/blobs/:key', async (c) => {
    const key = c.req.param('key');
    if (!blobs.owns(key)) throw new NotFoundError('no such image');
    if (o.presignedImages) {
      // Straight from the store; a store without such URLs (Redis) or a missing blob falls through.
      const url = await blobs.presignedUrl(key, PRESIGNED_IMAGE_SECONDS);
      if (url !== undefined) {
        c.header('Cache-Control', 'no-store');
        return c.redirect(url, 302);
      }
    }
    const blob = await blobs.get(key);
    if (!blob) throw new NotFoundError('the image has expired');
    // Keys are never reused, so a fetched blob never changes, except a job's preview, whose key each
    // preview overwrites: its URLs carry ?step= and it is only ever newer than the step asked for.
    return c.body(new Uint8Array(blob.bytes), 200, {
      'Content-Type': blob.contentType,
      'Cache-Control': 'private, max-age=86400, immutable',
    });
  });

  // --- what is this ----------------------------------------------------------------------------------

  /** Runs one job on an uploaded image and waits for it; the upload blob is removed afterwards. */
  async function withUpload<T>(c: Context, fn: (key: string, bytes: Uint8Array) => Promise<T>): Promise<T> {
    const bytes = await readBody(c, o.maxUploadBytes, 'image');
    if (bytes.byteLength === 0)
      throw new BadInputError('no image in the request body', { reason: 'empty_body' });
    const contentType = c.req.header('content-type') ?? 'application/octet-stream';
    const key = await blobs.put(bytes, { contentType, ttlSeconds: o.uploadTtlSeconds });
    try {
      return await fn(key, bytes);
    } finally {
      await blobs.delete(key).catch(() => {});
    }
  }

  async function run<K extends JobKind>(client: JobClient, kind: K, data: JobData<K>): Promise<JobResult<K>> {
    return client.run(kind, data, { userId, timeoutMs: o.waitTimeoutMs });
  }

  app.post('/api/whatis', async (c) => {
    const query = readQuery(c, whatisQuerySchema);
    if (query.labels !== undefined && query.labels.replaceAll(',', '').trim() === '') {
      // An empty list is a mistake, not a request for the default vocabulary: leave labels out for that.
      throw new BadInputError('no labels', {
        issues: [
          { path: 'labels', message: 'give at least one label, or leave labels out for everyday objects' },
        ],
      });
    }
    const result = await withUpload(c, (image) =>
      run(jobs, 'classify', whatisRequest({ image, labels: query.labels, topK: query.topK }, origin)),
    );
    return c.json({ labels: result.labels.map((l) => ({ ...l, percent: formatPercent(l.prob) })) });
  });

  // --- library ---------------------------------------------------------------------------------------

  const entryPayload = (channel: string, e: LibraryEntry) => ({ ...e, url: fileUrl(channel, e.file) });

  app.get('/api/library', async (c) => c.json({ channels: await library.channels() }));

  app.get('/api/library/:channel', async (c) => {
    const channel = channelParam(c);
    const entries = await library.list(channel);
    return c.json({
      channel,
      images: entries.map((e) => entryPayload(channel, e)),
      ...(entries.length === 0 ? { emptyText: renderEmptyChannel(channel) } : {}),
    });
  });

  app.post('/api/library/:channel/images', async (c) => {
    const channel = channelParam(c);
    const { name } = readQuery(c, uploadQuerySchema);
    const contentType = c.req.header('content-type') ?? '';
    let stored: { file: string; hash: string } | undefined;
    let size = 0;
    try {
      const result = await withUpload(c, async (image, bytes) => {
        size = bytes.byteLength;
        stored = await library.store(channel, bytes, contentType);
        return run(indexJobs, 'embed-image', {
          image,
          ...libraryScope(channel),
          message: stored.hash,
          file: stored.file,
        });
      });
      const entry: LibraryEntry = {
        imageId: result.imageId,
        file: stored!.file,
        name: name ?? stored!.file,
        bytes: size,
        addedAt: new Date().toISOString(),
      };
      await library.record(channel, entry);
      return c.json({ channel, image: entryPayload(channel, entry), duplicate: result.duplicate }, 201);
    } catch (error) {
      if (stored) await library.discard(channel, stored.file).catch(() => {});
      throw error;
    }
  });

  app.get('/api/library/:channel/search', async (c) => {
    const channel = channelParam(c);
    const query = readQuery(c, searchQuerySchema);
    const result = await run(
      jobs,
      'search',
      searchRequest({ query: query.q, k: query.k }, libraryScope(channel), origin),
    );
    // The manifest is what the page can show: an index row without a file (deleted while the index
    // lagged) is left out.
    const entries = new Map((await library.list(channel)).map((e) => [e.imageId, e]));
    const hits = result.hits.flatMap((h) => {
      const entry = entries.get(h.imageId);
      return entry ? [{ ...entryPayload(channel, entry), score: h.score }] : [];
    });
    // Images another model embedded (e.g. before `models pull` replaced the random weights): the
    // page offers to re-index them.
    const staleImages = result.staleImages ?? 0;
    return c.json({
      channel,
      query: query.q,
      hits,
      scoreText: renderScoreNote(o.randomWeights),
      staleImages,
      summary: renderSearchSummary({
        hits,
        ...(result.lowConfidence === undefined ? {} : { lowConfidence: result.lowConfidence }),
      }),
      ...(staleImages > 0 ? { staleText: renderStaleNote(staleImages) } : {}),
    });
  });

  // The library keeps its files, so it can be embedded again by the worker's current model: each
  // file goes through embed-image once more, which re-embeds a row of another model in place (same
  // id) and leaves a current one alone. Every file is sent, since the page cannot tell which rows
  // are stale; a few at a time, so that the worker can micro-batch them.
  app.post('/api/library/:channel/reindex', async (c) => {
    const channel = channelParam(c);
    const entries = await library.list(channel);
    const pending = [...entries];
    const counts = { images: entries.length, reindexed: 0, unchanged: 0, failed: 0 };
    const next = async (): Promise<void> => {
      for (let entry = pending.shift(); entry; entry = pending.shift()) {
        try {
          const { bytes, contentType } = await library.readFile(channel, entry.file);
          const image = await blobs.put(new Uint8Array(bytes), {
            contentType,
            ttlSeconds: o.uploadTtlSeconds,
          });
          try {
            const result = await run(indexJobs, 'embed-image', {
              image,
              ...libraryScope(channel),
              message: entry.file.split('.')[0]!,
              file: entry.file,
            });
            // A row gone from the index meanwhile was added afresh, under a new id.
            if (result.imageId !== entry.imageId)
              await library.record(channel, { ...entry, imageId: result.imageId });
            if (result.reindexed === true || result.imageId !== entry.imageId) counts.reindexed++;
            else counts.unchanged++;
          } finally {
            await blobs.delete(image).catch(() => {});
          }
        } catch (error) {
          counts.failed++;
          logger.warn({ err: error, channel, file: entry.file }, 're-indexing a library image failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(REINDEX_CONCURRENCY, entries.length) }, next));
    return c.json(counts);
  });

  app.delete('/api/library/:channel/images/:imageId', async (c) => {
    const channel = channelParam(c);
    const imageId = c.req.param('imageId');
    const entry = (await library.list(channel)).find((e) => e.imageId === imageId);
    if (!entry) throw new NotFoundError('no such image in this library', { imageId });
    // Index first: if that fails the image stays visible and the user can retry (deleting is
    // idempotent, so a retry after a lost reply is fine).
    await indexJobs.deleteImage(
      { imageId, ...libraryScope(channel), origin },
      { userId, timeoutMs: o.waitTimeoutMs },
    );
    await library.remove(channel, imageId);
    return c.json({ deleted: imageId });
  });

  app.get('/api/library/:channel/files/:file', async (c) => {
    const channel = channelParam(c);
    const { bytes, contentType } = await library.readFile(channel, c.req.param('file'));
    return c.body(new Uint8Array(bytes), 200, {
      'Content-Type': contentType,
      'Cache-Control': 'private, max-age=3600',
    });
  });

  if (o.admin) {
    admin = createAdminBoard({ connection: o.admin.connection, prefix: o.admin.prefix });
    app.route(admin.basePath, admin.app);
  }

  return {
    app,
    async close() {
      for (const end of [...streams]) end();
      await admin?.close();
    },
  };
}

export interface RunningPlayground {
  /** `http://host:port` as bound (the port is the real one when 0 was asked for). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves a playground on host:port (port 0: any free port). */
export async function startPlayground(
  options: PlaygroundOptions & { port: number; host: string },
): Promise<RunningPlayground> {
  assertPlaygroundExposure(options.host, options.password);
  const playground = createPlayground(options);
  const server = serve({ fetch: playground.app.fetch, port: options.port, hostname: options.host });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  } catch (error) {
    await playground.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw portInUseError(options.port, options.host, error);
    }
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    port,
    async close() {
      await playground.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Event streams and keep-alive sockets would hold close() open for minutes.
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closed;
    },
  };
}
