// The playground's HTTP API against a real Redis and real BullMQ queues. The jobs are served by small
// fake processors here (the real worker is exercised by the browser and app tests), so each test
// controls exactly what the worker reports and when.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { Library } from '../../../src/bots/web/library.js';
import {
  createPlayground,
  type Playground,
  type PlaygroundOptions,
  startPlayground,
} from '../../../src/bots/web/server.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import {
  CancelledError,
  InternalError,
  NotAnImageError,
  serializeError,
} from '../../../src/shared/errors.js';
import {
  type ClassifyJob,
  type DeleteImageJob,
  type EmbedImageJob,
  type ImagineJob,
  type ImagineResult,
  jobKinds,
  type SearchJob,
  toJobError,
} from '../../../src/shared/jobs.js';
import { openConnection } from '../../../src/shared/queues.js';
import { QuotaLimiter } from '../../../src/shared/quota.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';

const redis = useRedis();
let producer: Redis;
let consumer: Redis;
let prefix: string;
let blobs: RedisBlobStore;
let libraryDir: string;
let playground: Playground;
const clients: JobClient[] = [];
const workers: Worker[] = [];

const MAX_UPLOAD = 4096;

beforeAll(async () => {
  producer = await openConnection(redis.url);
  consumer = await openConnection(redis.url, 'worker');
});
afterAll(async () => {
  await producer.quit();
  await consumer.quit();
});

beforeEach(async () => {
  prefix = testPrefix();
  blobs = new RedisBlobStore({ connection: producer, prefix, ttlSeconds: 600 });
  libraryDir = await mkdtemp(join(tmpdir(), 'vqclip-lib-'));
});

afterEach(async () => {
  await playground?.close();
  await Promise.all(workers.splice(0).map((w) => w.close(true)));
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const kind of jobKinds) {
    const queue = new Queue(kind, { connection: producer, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  await deletePrefix(producer, prefix);
  await rm(libraryDir, { recursive: true, force: true });
});

interface Setup {
  quota?: QuotaLimiter;
  admin?: boolean;
  promptTokens?: PlaygroundOptions['promptTokens'];
}

function setup(options: Setup = {}): Playground {
  const jobs = new JobClient({
    connection: producer,
    prefix,
    throttleMs: 0,
    pollMs: 50,
    ...(options.quota ? { quota: options.quota } : {}),
  });
  const indexJobs = new JobClient({ connection: producer, prefix, throttleMs: 0, pollMs: 50 });
  clients.push(jobs, indexJobs);
  playground = createPlayground({
    jobs,
    indexJobs,
    blobs,
    library: new Library(libraryDir),
    maxUploadBytes: MAX_UPLOAD,
    maxJsonBytes: 2048,
    followThrottleMs: 0,
    waitTimeoutMs: 20_000,
    admin: options.admin ? { connection: producer, prefix } : false,
    ...(options.promptTokens ? { promptTokens: options.promptTokens } : {}),
  });
  return playground;
}

function serveJobs<D, R>(kind: string, processor: (job: Job<D, R>) => Promise<R>): Worker<D, R> {
  const worker = new Worker<D, R>(kind, processor, { connection: consumer, prefix, stalledInterval: 5000 });
  worker.on('error', () => {});
  workers.push(worker as unknown as Worker);
  return worker;
}

const request = (path: string, init?: RequestInit) => playground.app.request(path, init);

const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

async function tinyPng(r: number, g: number, b: number): Promise<Uint8Array> {
  const data = Buffer.alloc(8 * 8 * 3);
  for (let i = 0; i < 64; i++) data.set([r, g, b], i * 3);
  return new Uint8Array(
    await sharp(data, { raw: { width: 8, height: 8, channels: 3 } })
      .png()
      .toBuffer(),
  );
}

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads server-sent events from a streaming response, calling onEvent for each, until the stream ends. */
async function readEvents(res: Response, onEvent: (e: SseEvent) => void): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    let split = buffer.indexOf('\n\n');
    while (split >= 0) {
      const block = buffer.slice(0, split);
      buffer = buffer.slice(split + 2);
      split = buffer.indexOf('\n\n');
      const lines = block.split('\n');
      const event = lines
        .find((l) => l.startsWith('event:'))
        ?.slice(6)
        .trim();
      const data = lines
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n');
      if (!event) continue; // heartbeat comments
      const parsed = { event, data: JSON.parse(data) as Record<string, unknown> };
      events.push(parsed);
      onEvent(parsed);
    }
  }
  return events;
}

describe('page', () => {
  it('serves the page with its three panels and the script', async () => {
    setup();
    const page = await request('/');
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const id of ['id="imagine"', 'id="whatis"', 'id="library"']) {
      expect(html).toContain(id);
    }
    expect(html).toContain('<code>:weight</code>');
    const script = await request('/static/app.js');
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect(await script.text()).toContain('EventSource');
    expect((await request('/static/../server.ts')).status).toBe(404);
  });

  it('mounts the bull-board dashboard at /admin', async () => {
    setup({ admin: true });
    const res = await request('/admin');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('vqclip jobs');
    const queues = await request('/admin/api/queues');
    expect(queues.status).toBe(200);
    const body = (await queues.json()) as { queues: { name: string }[] };
    expect(body.queues.map((q) => q.name).sort()).toEqual([...jobKinds].sort());
  });
});

describe('validation', () => {
  it('refuses a body that is not JSON', async () => {
    setup();
    const res = await postJson('/api/imagine', '{"prompt": "a cat",');
    expect(res.status).toBe(400);
    const body = (await res.json()) as {
      error: { code: string; message: string; details: { reason: string } };
    };
    expect(body.error.code).toBe('bad_input');
    expect(body.error.details.reason).toBe('bad_json');
    expect(body.error.message).toBe('That request is not valid: the request body is not valid JSON.');
  });

  it('refuses unknown fields and out-of-range values, naming them', async () => {
    setup();
    const unknown = await postJson('/api/imagine', { prompt: 'a cat', colour: 'red' });
    expect(unknown.status).toBe(400);
    const u = (await unknown.json()) as {
      error: { details: { issues: { path: string; message: string }[] } };
    };
    expect(u.error.details.issues[0]!.message).toMatch(/colour/);

    const range = await postJson('/api/imagine', { prompt: 'a cat', steps: 5000, width: 100 });
    expect(range.status).toBe(400);
    const r = (await range.json()) as { error: { message: string; details: { issues: { path: string }[] } } };
    expect(r.error.details.issues.map((i) => i.path).sort()).toEqual(['size.height', 'size.width', 'steps']);
    expect(r.error.message).toContain('steps');

    const long = await postJson('/api/imagine', { prompt: 'x'.repeat(1001) });
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { code: string } }).error.code).toBe('prompt_too_long');

    const syntax = await postJson('/api/imagine', { prompt: 'blurry:-1' });
    expect(syntax.status).toBe(400);
    expect(((await syntax.json()) as { error: { message: string } }).error.message).toMatch(
      /positive weight/,
    );
  });

  it('takes the DALL-E drawer with candidates, and names options it does not take', async () => {
    setup();
    const ok = await postJson('/api/imagine', {
      prompt: 'a fox',
      preset: 'normal',
      drawer: 'dalle',
      candidates: 3,
    });
    expect(ok.status).toBeLessThan(300);
    const { jobId } = (await ok.json()) as { jobId: string };
    const queue = new Queue('imagine', { connection: producer, prefix });
    const job = await queue.getJob(jobId.split(':')[1]!);
    await queue.close();
    expect(job?.data).toMatchObject({ prompt: 'a fox', drawer: 'dalle', candidates: 3 });
    const bad = await postJson('/api/imagine', {
      prompt: 'a fox',
      drawer: 'dalle',
      steps: 10,
      candidates: 40,
    });
    expect(bad.status).toBe(400);
    const b = (await bad.json()) as { error: { details: { issues: { path: string }[] } } };
    expect(b.error.details.issues.map((i) => i.path).sort()).toEqual(['candidates', 'steps']);
  });

  it('refuses an oversized JSON body before parsing it', async () => {
    setup();
    const res = await postJson('/api/imagine', { prompt: 'a'.repeat(3000) });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { details: { maxBytes: number } } };
    expect(body.error.details.maxBytes).toBe(2048);
  });

  it('refuses unknown query parameters', async () => {
    setup();
    const res = await request('/api/whatis?topk=3', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await tinyPng(1, 2, 3),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('topk');
  });

  it('refuses oversized uploads by Content-Length and while streaming, without enqueueing', async () => {
    setup();
    const seen: string[] = [];
    serveJobs<ClassifyJob, unknown>('classify', async (job) => {
      seen.push(job.id!);
      return { labels: [] };
    });
    const declared = await request('/api/whatis', {
      method: 'POST',
      headers: { 'content-type': 'image/png', 'content-length': String(2 * MAX_UPLOAD) },
      body: new Uint8Array(2 * MAX_UPLOAD),
    });
    expect(declared.status).toBe(413);
    const d = (await declared.json()) as { error: { code: string; message: string } };
    expect(d.error.code).toBe('image_too_large');
    expect(d.error.message).toBe('That image is 8 KiB; the limit is 4 KiB. Please send a smaller one.');

    // No Content-Length: chunks are counted as they arrive.
    let pulled = 0;
    const chunked = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        if (pulled > 100) controller.close();
        else controller.enqueue(new Uint8Array(1024));
      },
    });
    const streamed = await request('/api/whatis', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: chunked,
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as { error: { code: string } }).error.code).toBe('image_too_large');
    // Reading stopped at the first chunk over the cap, far from the 100 offered.
    expect(pulled).toBeLessThan(10);
    const queue = new Queue('classify', { connection: producer, prefix });
    expect(await queue.count()).toBe(0);
    await queue.close();
    expect(seen).toEqual([]);
  });

  it('refuses cross-origin writes', async () => {
    setup();
    const res = await postJson(
      '/api/imagine',
      { prompt: 'a cat' },
      { origin: 'http://evil.example', host: 'localhost' },
    );
    expect(res.status).toBe(403);
  });

  it('answers 404 for unknown jobs, endpoints and foreign blob keys', async () => {
    setup();
    expect((await request('/api/jobs/imagine%3Anope')).status).toBe(404);
    expect((await request('/api/jobs/bogus')).status).toBe(404);
    expect((await request('/api/nothing')).status).toBe(404);
    expect((await request(`/api/blobs/${encodeURIComponent('other:blob:x')}`)).status).toBe(404);
    expect((await request(`/api/blobs/${encodeURIComponent(`${prefix}:blob:gone`)}`)).status).toBe(404);
  });
});

describe('imagine', () => {
  it('streams queue position, progress with previews, then the final image', async () => {
    setup();
    // The fake worker advances one step each time the test has seen the previous one: deterministic.
    const seenStep: ((step: number) => void)[] = [];
    const waitSeen = (step: number) =>
      new Promise<void>((resolve) => {
        seenStep.push((s) => {
          if (s >= step) resolve();
        });
      });
    const finalPng = await tinyPng(200, 10, 10);
    let received: ImagineJob | undefined;
    serveJobs<ImagineJob, ImagineResult>('imagine', async (job) => {
      received = job.data;
      for (let step = 1; step <= 3; step++) {
        const previewBlob = await blobs.put(await tinyPng(step * 50, 0, 0), { contentType: 'image/png' });
        await job.updateProgress({ step, steps: 3, loss: 1 - step / 10, etaSeconds: 3 - step, previewBlob });
        await waitSeen(step);
      }
      return {
        finalBlob: await blobs.put(finalPng, { contentType: 'image/png' }),
        seed: job.data.seed ?? 0,
        steps: 3,
        params: { width: 64, height: 64, cutouts: 2, lr: 0.1, preset: 'draft' },
        lossFirst: 0.9,
        lossLast: 0.7,
        timings: { total: 12 },
      };
    });

    const submitted = await postJson('/api/imagine', {
      prompt: 'a red apple:1 | blurry:-0.5',
      preset: 'draft',
      width: 64,
    });
    expect(submitted.status).toBe(202);
    const s = (await submitted.json()) as { jobId: string; seed: number; eventsUrl: string };
    expect(s.jobId).toMatch(/^imagine:/);
    expect(Number.isInteger(s.seed)).toBe(true);

    const res = await request(s.eventsUrl);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await readEvents(res, (e) => {
      if (typeof e.data.step === 'number') for (const f of seenStep) f(e.data.step);
    });

    expect(received).toMatchObject({
      prompt: 'a red apple:1 | blurry:-0.5',
      preset: 'draft',
      seed: s.seed,
      size: { width: 64, height: 64 },
      origin: { platform: 'web', user: 'web:local' },
    });
    const steps = events.filter((e) => typeof e.data.step === 'number').map((e) => e.data.step);
    expect(steps).toEqual([1, 2, 3]);
    const step2 = events.find((e) => e.data.step === 2)!;
    expect(step2.event).toBe('status');
    expect(step2.data.text).toBe('Step 2/3 · loss 0.800 · about 1 s left');
    const last = events.at(-1)!;
    expect(last.event).toBe('done');
    const result = last.data.result as { finalUrl: string; seed: number; lossFirst: number };
    expect(result.seed).toBe(s.seed);
    expect(result.lossFirst).toBe(0.9);

    // Previews and the final image are served from the blob store, byte for byte.
    const preview = await request(step2.data.previewUrl as string);
    const pixel = await sharp(Buffer.from(await preview.arrayBuffer()))
      .raw()
      .toBuffer();
    expect([...pixel.subarray(0, 3)]).toEqual([100, 0, 0]);
    const final = await request(result.finalUrl);
    expect(final.headers.get('content-type')).toBe('image/png');
    expect(new Uint8Array(await final.arrayBuffer())).toEqual(finalPng);

    // The finished job reads the same through the plain status endpoint.
    const status = (await (await request(`/api/jobs/${encodeURIComponent(s.jobId)}`)).json()) as {
      state: string;
    };
    expect(status.state).toBe('completed');
  });

  it('reports a worker failure as the user sentence of its code', async () => {
    setup();
    serveJobs<ImagineJob, ImagineResult>('imagine', async () => {
      throw toJobError(new NotAnImageError());
    });
    const s = (await (await postJson('/api/imagine', { prompt: 'a cat' })).json()) as { eventsUrl: string };
    const events = await readEvents(await request(s.eventsUrl), () => {});
    const last = events.at(-1)!;
    expect(last.event).toBe('failed');
    expect(last.data).toMatchObject({ code: 'not_an_image', text: expect.stringMatching(/not an image/) });
  });

  it('cancels a waiting job and says so on its stream', async () => {
    setup();
    // No imagine worker: the job stays waiting until cancelled.
    const s = (await (await postJson('/api/imagine', { prompt: 'a cat', seed: 7 })).json()) as {
      jobId: string;
      seed: number;
      position: number;
      eventsUrl: string;
    };
    expect(s.seed).toBe(7);
    expect(s.position).toBe(0);
    let cancelled: Promise<Response> | Response | undefined;
    const events = await readEvents(await request(s.eventsUrl), () => {
      // Cancel once the stream has shown the job waiting.
      cancelled ??= request(`/api/jobs/${encodeURIComponent(s.jobId)}/cancel`, { method: 'POST' });
    });
    expect(await (await cancelled!).json()).toEqual({ outcome: 'removed' });
    expect(events[0]).toMatchObject({
      event: 'status',
      data: { state: 'waiting', text: 'Queued: next in line' },
    });
    expect(events.at(-1)).toMatchObject({ event: 'failed', data: { code: 'cancelled', text: 'Cancelled.' } });
  });

  it('refuses over quota with 429, a sentence and Retry-After', async () => {
    setup({
      quota: new QuotaLimiter({
        connection: producer,
        prefix,
        budgets: { imagine: { concurrent: 0, perWindow: 1 } },
      }),
    });
    expect((await postJson('/api/imagine', { prompt: 'a cat' })).status).toBe(202);
    const res = await postJson('/api/imagine', { prompt: 'a dog' });
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3500);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('quota_exceeded');
    expect(body.error.message).toBe('You have reached your limit of 1 jobs per hour. Try again in 1 h.');
  });
});

describe('what is this', () => {
  it('classifies an upload with the given labels and removes the upload blob afterwards', async () => {
    setup();
    const png = await tinyPng(0, 255, 0);
    let uploadKey = '';
    serveJobs<ClassifyJob, unknown>('classify', async (job) => {
      uploadKey = job.data.image;
      const blob = await blobs.get(job.data.image);
      // The worker sees the uploaded bytes and content type.
      expect(blob?.contentType).toBe('image/png');
      expect(new Uint8Array(blob!.bytes)).toEqual(png);
      return { labels: (job.data.labels ?? []).map((label, i) => ({ label, prob: i === 0 ? 0.75 : 0.25 })) };
    });
    const res = await request('/api/whatis?labels=grass,%20sky', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: png,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      labels: [
        { label: 'grass', prob: 0.75, percent: '75.0%' },
        { label: 'sky', prob: 0.25, percent: '25.0%' },
      ],
    });
    expect(await blobs.get(uploadKey)).toBeUndefined();
  });

  it('refuses an empty body', async () => {
    setup();
    const res = await request('/api/whatis', { method: 'POST', headers: { 'content-type': 'image/png' } });
    expect(res.status).toBe(400);
  });
});

describe('library', () => {
  it('uploads, lists, searches within the channel and deletes', async () => {
    const deleted: DeleteImageJob[] = [];
    setup();
    // A tiny fake index: red images score high for "red", the channel scope is respected.
    const index = new Map<string, { channel: string; file: string; message: string; red: number }>();
    serveJobs<EmbedImageJob, unknown>('embed-image', async (job) => {
      const blob = await blobs.get(job.data.image);
      const px = await sharp(blob!.bytes).raw().toBuffer();
      const imageId = `00000000-0000-0000-0000-00000000000${index.size + 1}`;
      index.set(imageId, {
        channel: job.data.channel,
        file: job.data.file,
        message: job.data.message,
        red: px[0]! / 255,
      });
      return { imageId, duplicate: false };
    });
    serveJobs<SearchJob, unknown>('search', async (job) => {
      const hits = [...index.entries()]
        .filter(([, v]) => v.channel === job.data.channel)
        .map(([imageId, v]) => ({
          imageId,
          link: null,
          message: v.message,
          file: v.file,
          score: job.data.query === 'red' ? v.red : 1 - v.red,
        }))
        .sort((a, b) => b.score - a.score)
        .slice(0, job.data.k);
      return { hits };
    });

    serveJobs<DeleteImageJob, unknown>('delete-image', async (job) => {
      deleted.push(job.data);
      return { deleted: true };
    });

    const upload = async (channel: string, name: string, png: Uint8Array) => {
      const res = await request(`/api/library/${channel}/images?name=${name}`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: png,
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { image: { imageId: string; url: string; name: string } }).image;
    };
    const red = await upload('holiday', 'red.png', await tinyPng(255, 0, 0));
    const blue = await upload('holiday', 'blue.png', await tinyPng(0, 0, 255));
    await upload('work', 'other-red.png', await tinyPng(250, 0, 0));
    expect(red.name).toBe('red.png');

    const list = (await (await request('/api/library/holiday')).json()) as { images: { name: string }[] };
    expect(list.images.map((i) => i.name)).toEqual(['red.png', 'blue.png']);
    const file = await request(red.url);
    expect(file.headers.get('content-type')).toBe('image/png');

    const search = (await (await request('/api/library/holiday/search?q=red&k=5')).json()) as {
      hits: { name: string; score: number }[];
      summary: string;
    };
    expect(search.hits.map((h) => h.name)).toEqual(['red.png', 'blue.png']);
    expect(search.summary).toBe('2 matches, best first.');
    expect(search.hits[0]!.score).toBe(1);

    const del = await request(`/api/library/holiday/images/${red.imageId}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(deleted).toEqual([
      {
        imageId: red.imageId,
        platform: 'web',
        workspace: 'local',
        channel: 'holiday',
        origin: { platform: 'web', user: 'web:local' },
      },
    ]);
    const after = (await (await request('/api/library/holiday')).json()) as { images: { name: string }[] };
    expect(after.images.map((i) => i.name)).toEqual(['blue.png']);
    expect((await request(red.url)).status).toBe(404);
    // The index still holds the red image here (the fake does not delete): the page never shows it.
    const again = (await (await request('/api/library/holiday/search?q=red')).json()) as {
      hits: { name: string }[];
    };
    expect(again.hits.map((h) => h.name)).toEqual(['blue.png']);
    expect(blue.imageId).not.toBe(red.imageId);
    expect((await request(`/api/library/holiday/images/${red.imageId}`, { method: 'DELETE' })).status).toBe(
      404,
    );
  });

  it('keeps an image whose index delete failed, so the user can retry', async () => {
    setup();
    serveJobs<EmbedImageJob, unknown>('embed-image', async () => ({
      imageId: '00000000-0000-4000-8000-000000000001',
      duplicate: false,
    }));
    let failDeletes = true;
    serveJobs<DeleteImageJob, unknown>('delete-image', async () => {
      // Unrecoverable, so the test need not wait for the retries an internal error gets.
      if (failDeletes) throw new UnrecoverableError(serializeError(new InternalError('database down')));
      return { deleted: true };
    });
    const res = await request('/api/library/trip/images?name=a.png', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await tinyPng(1, 2, 3),
    });
    const { image } = (await res.json()) as { image: { imageId: string; url: string } };
    const del = () => request(`/api/library/trip/images/${image.imageId}`, { method: 'DELETE' });
    const failed = await del();
    expect(failed.status).toBe(500);
    expect(((await failed.json()) as { error: { code: string } }).error.code).toBe('internal');
    const list = (await (await request('/api/library/trip')).json()) as { images: unknown[] };
    expect(list.images).toHaveLength(1);
    expect((await request(image.url)).status).toBe(200);
    failDeletes = false;
    expect((await del()).status).toBe(200);
    expect(((await (await request('/api/library/trip')).json()) as { images: unknown[] }).images).toEqual([]);
  });

  it('re-indexes a channel whose images another model embedded, and says how many searches left out', async () => {
    setup();
    // A fake index that stamps rows with the worker's model, as the database does.
    let model = 'random-weights';
    const rows = new Map<string, { imageId: string; channel: string; model: string }>();
    const embedded: EmbedImageJob[] = [];
    serveJobs<EmbedImageJob, unknown>('embed-image', async (job) => {
      embedded.push(job.data);
      const key = `${job.data.channel}/${job.data.file}`;
      const row = rows.get(key);
      if (row?.model === model) return { imageId: row.imageId, duplicate: true, reindexed: false };
      if (row) {
        row.model = model;
        return { imageId: row.imageId, duplicate: false, reindexed: true };
      }
      const imageId = `00000000-0000-4000-8000-00000000000${rows.size + 1}`;
      rows.set(key, { imageId, channel: job.data.channel, model });
      return { imageId, duplicate: false, reindexed: false };
    });
    serveJobs<SearchJob, unknown>('search', async (job) => {
      const inChannel = [...rows.values()].filter((r) => r.channel === job.data.channel);
      const hits = inChannel
        .filter((r) => r.model === model)
        .map((r) => ({ imageId: r.imageId, link: null, message: 'm', file: 'f', score: 0.5 }));
      const staleImages = inChannel.length - hits.length;
      return { hits, ...(staleImages > 0 ? { staleImages } : {}) };
    });
    for (const [name, png] of [
      ['a.png', await tinyPng(10, 0, 0)],
      ['b.png', await tinyPng(0, 10, 0)],
      ['c.png', await tinyPng(0, 0, 10)],
    ] as const) {
      const res = await request(`/api/library/pets/images?name=${name}`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: png,
      });
      expect(res.status).toBe(201);
    }
    const search = async () =>
      (await (await request('/api/library/pets/search?q=cat')).json()) as {
        hits: { name: string }[];
        staleImages: number;
      };
    expect(await search()).toMatchObject({ hits: [{}, {}, {}], staleImages: 0 });

    // `models pull` replaced the weights: the old rows are left out, and the page is told so.
    model = 'pulled-weights';
    expect(await search()).toMatchObject({ hits: [], staleImages: 3 });
    // One file lost from disk: it cannot be embedded again, and is counted as failed.
    const { images } = (await (await request('/api/library/pets')).json()) as { images: { file: string }[] };
    await rm(join(libraryDir, 'pets', images[2]!.file));
    const before = embedded.length;
    const reindex = await request('/api/library/pets/reindex', { method: 'POST' });
    expect(reindex.status).toBe(200);
    expect(await reindex.json()).toEqual({ images: 3, reindexed: 2, unchanged: 0, failed: 1 });
    // The files themselves went through embed-image again, to the same scope and names.
    const again = embedded.slice(before);
    expect(again.map((j) => j.file).sort()).toEqual([images[0]!.file, images[1]!.file].sort());
    expect(again[0]).toMatchObject({ platform: 'web', workspace: 'local', channel: 'pets' });
    expect(await search()).toMatchObject({ hits: [{}, {}], staleImages: 1 });
    // Nothing left to do for the current ones.
    const twice = await request('/api/library/pets/reindex', { method: 'POST' });
    expect(await twice.json()).toEqual({ images: 3, reindexed: 0, unchanged: 2, failed: 1 });
    // Upload blobs are not left behind.
    expect(await producer.keys(`${prefix}:blob:*`)).toEqual([]);
  });

  it('refuses bad channel names and non-image uploads, keeping no file', async () => {
    setup();
    serveJobs<EmbedImageJob, unknown>('embed-image', async () => {
      throw toJobError(new NotAnImageError());
    });
    const path = await request('/api/library/..%2Fetc');
    expect(path.status).toBe(400);
    expect(((await path.json()) as { error: { message: string } }).error.message).toContain('Holiday Photos');
    const text = await request('/api/library/notes/images', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(text.status).toBe(400);
    const fake = await request('/api/library/notes/images', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: 'not really a png',
    });
    expect(fake.status).toBe(400);
    expect(((await fake.json()) as { error: { code: string } }).error.code).toBe('not_an_image');
    const files = await readdir(join(libraryDir, 'notes')).catch(() => []);
    expect(files.filter((f) => !f.startsWith('.'))).toEqual([]);
  });
});

describe('startPlayground', () => {
  it('serves over TCP, ends open event streams on close, and names a taken port', async () => {
    const jobs = new JobClient({ connection: producer, prefix, throttleMs: 0, pollMs: 50 });
    clients.push(jobs);
    const options = { jobs, blobs, library: new Library(libraryDir), admin: false as const };
    const running = await startPlayground({ ...options, port: 0, host: '127.0.0.1' });
    expect(running.url).toBe(`http://127.0.0.1:${running.port}`);
    const submitted = await fetch(`${running.url}/api/imagine`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a cat' }),
    });
    const { eventsUrl } = (await submitted.json()) as { eventsUrl: string };
    // No worker: the stream stays open until the server closes it.
    const stream = await fetch(`${running.url}${eventsUrl}`);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('event: status');

    const taken = startPlayground({ ...options, port: running.port, host: '127.0.0.1' });
    await expect(taken).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/is in use/),
    });

    // close() returns although a stream was open (the test would time out otherwise), and the
    // client sees its stream end: cleanly, or as a closed socket.
    await running.close();
    const outcome = await (async () => {
      try {
        for (;;) if ((await reader.read()).done) return 'ended';
      } catch {
        return 'closed';
      }
    })();
    expect(['ended', 'closed']).toContain(outcome);
  });
});

// What a newcomer met on a first run (issue 15): each of these failed before its fix.
describe('first run', () => {
  const message = async (res: Response) =>
    ((await res.json()) as { error: { message: string } }).error.message;
  // zod's own wording, which users must never see.
  const ZOD = /Too small|Too big|Invalid option|Invalid input|expected (string|number)|Unrecognized key/;

  it("answers every refused form in its own words, never zod's", async () => {
    setup();
    const blank = await postJson('/api/imagine', { prompt: '   \n ' });
    expect(blank.status).toBe(400);
    expect(await message(blank)).toBe('The prompt is empty.');
    const cases: [unknown, RegExp][] = [
      [{ prompt: 'a cat', preset: 'huge' }, /preset: must be one of draft, normal, better/],
      [{ prompt: 'a cat', width: -64 }, /size\.width: must be 64 to 1024 pixels, a multiple of 16/],
      [{ prompt: 'a cat', width: 100, height: 64 }, /size\.width: must be 64 to 1024 pixels/],
      [{ prompt: 'a cat', steps: 1.5 }, /steps: must be a whole number from 1 to 1000/],
      [{ prompt: 7 }, /prompt: the prompt must be text/],
      [{ prompt: 'a cat', colour: 'red' }, /there is no "colour" here/],
    ];
    for (const [body, expected] of cases) {
      const res = await postJson('/api/imagine', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const text = await message(res);
      expect(text).toMatch(expected);
      expect(text).not.toMatch(ZOD);
    }
    const search = await request('/api/library/default/search?q=%20%20');
    expect(await message(search)).toBe('That request is not valid: q: type some words to search for.');
    const k = await request('/api/library/default/search?q=cat&k=0');
    expect(await message(k)).not.toMatch(ZOD);
    const labels = await request('/api/whatis?labels=%20,%20,', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await tinyPng(1, 2, 3),
    });
    expect(labels.status).toBe(400);
    expect(await message(labels)).toMatch(/labels: give at least one label/);
  });

  it('says how much of a long prompt CLIP reads', async () => {
    setup({
      promptTokens: (prompt) =>
        prompt.startsWith('long')
          ? [{ part: prompt, tokens: 90, used: 75, usedText: 'long words and more words up to here' }]
          : [],
    });
    const long = (await (await postJson('/api/imagine', { prompt: 'long words' })).json()) as {
      note?: string;
    };
    expect(long.note).toBe(
      'CLIP reads the first 75 of the 90 tokens of "long words", up to "…words up to here"; the rest is not used.',
    );
    const short = (await (await postJson('/api/imagine', { prompt: 'a cat' })).json()) as { note?: string };
    expect(short.note).toBeUndefined();
  });

  it('takes display names as library channels and says the rule for names it cannot use', async () => {
    setup();
    serveJobs<EmbedImageJob, unknown>('embed-image', async () => ({
      imageId: '00000000-0000-0000-0000-000000000001',
      duplicate: false,
    }));
    const empty = (await (await request('/api/library/Holiday%20Photos')).json()) as {
      channel: string;
      images: unknown[];
      emptyText?: string;
    };
    expect(empty).toEqual({
      channel: 'holiday-photos',
      images: [],
      emptyText: 'No images in holiday-photos yet: add some above.',
    });
    const added = await request('/api/library/Holiday%20Photos/images?name=beach.png', {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await tinyPng(10, 20, 200),
    });
    expect(added.status).toBe(201);
    expect(((await added.json()) as { channel: string }).channel).toBe('holiday-photos');
    const listed = (await (await request('/api/library/holiday-photos')).json()) as {
      images: { name: string }[];
      emptyText?: string;
    };
    expect(listed.images.map((i) => i.name)).toEqual(['beach.png']);
    expect(listed.emptyText).toBeUndefined();
    for (const bad of ['%E6%97%A5%E6%9C%AC', '%20', 'a%2Fb']) {
      const res = await request(`/api/library/${bad}`);
      expect(res.status).toBe(400);
      const text = await message(res);
      expect(text).toContain('"Holiday Photos" is the channel holiday-photos');
      expect(text).not.toMatch(/job does not exist/);
    }
  });

  it('explains search scores beside the hits', async () => {
    setup();
    serveJobs<SearchJob, unknown>('search', async () => ({ hits: [] }));
    const res = (await (await request('/api/library/default/search?q=cat')).json()) as { scoreText: string };
    expect(res.scoreText).toMatch(/^Scores are the cosine similarity .* only their order matters\.$/);
  });

  it('says Cancelling… for a running job until its stream says Cancelled', async () => {
    setup();
    // The job runs until the cancel has been answered (on a loaded machine a fixed delay could end
    // it first), then fails as a cancelled job does.
    let answered!: () => void;
    const cancelAnswered = new Promise<void>((r) => {
      answered = r;
    });
    serveJobs<ImagineJob, ImagineResult>('imagine', async (job) => {
      await job.updateProgress({ step: 1, steps: 100, loss: 1, etaSeconds: 60 });
      await Promise.race([cancelAnswered, new Promise((r) => setTimeout(r, 20_000))]);
      throw new UnrecoverableError(serializeError(new CancelledError()));
    });
    const s = (await (await postJson('/api/imagine', { prompt: 'a cat' })).json()) as { jobId: string };
    const queue = new Queue('imagine', { connection: producer, prefix });
    for (let i = 0; i < 100 && (await queue.getJob(s.jobId.split(':')[1]!))?.progress === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    await queue.close();
    const res = await request(`/api/jobs/${encodeURIComponent(s.jobId)}/cancel`, { method: 'POST' });
    answered();
    expect(await res.json()).toEqual({ outcome: 'signalled', text: 'Cancelling…' });
  });

  it('serves a favicon, and page sentences from render.ts through /api/info', async () => {
    setup();
    const icon = await request('/favicon.ico');
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toBe('image/svg+xml');
    expect((await request('/static/favicon.svg')).status).toBe(200);
    expect(await (await request('/')).text()).toContain('rel="icon"');
    const info = (await (await request('/api/info')).json()) as {
      limits: { maxUploadBytes: number; sizeRule: string };
      texts: Record<string, string>;
    };
    expect(info.limits.sizeRule).toBe('must be 64 to 1024 pixels, a multiple of 16');
    expect(info.texts.cancelling).toBe('Cancelling…');
    expect(info.texts.connectionLost).toMatch(/not answering/);
  });

  it('keeps /admin offline and shows a cancelled job as cancelled, without a stack trace', async () => {
    setup({ admin: true });
    const html = await (await request('/admin')).text();
    expect(html).toContain('vqclip jobs');
    expect(html).not.toMatch(/https?:\/\//);
    serveJobs<ImagineJob, ImagineResult>('imagine', async () => {
      throw new UnrecoverableError(serializeError(new CancelledError()));
    });
    const { jobId } = (await (await postJson('/api/imagine', { prompt: 'a cat' })).json()) as {
      jobId: string;
    };
    const queue = new Queue('imagine', { connection: producer, prefix });
    const id = jobId.split(':')[1]!;
    for (let i = 0; i < 200 && (await queue.getJob(id).then((j) => j?.getState())) !== 'failed'; i++)
      await new Promise((r) => setTimeout(r, 25));
    await queue.close();
    const board = (await (await request('/admin/api/queues?activeQueue=imagine&status=failed')).json()) as {
      queues: { name: string; jobs: { name: string; failedReason: string; stacktrace: string[] }[] }[];
    };
    const failed = board.queues.find((q) => q.name === 'imagine')!.jobs;
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ failedReason: 'cancelled by the user', stacktrace: [] });
    expect(failed[0]!.name).toMatch(/\(cancelled\)$/);
  });

  it("never runs a cancelled job again from /admin's Retry or Retry all; other failed jobs are retried", async () => {
    setup({ admin: true });
    const runs: Record<string, number> = {};
    serveJobs<ImagineJob, ImagineResult>('imagine', async (job) => {
      runs[job.data.prompt] = (runs[job.data.prompt] ?? 0) + 1;
      const error = job.data.prompt === 'a cat' ? new CancelledError() : new InternalError('no');
      throw new UnrecoverableError(serializeError(error));
    });
    const queue = new Queue('imagine', { connection: producer, prefix });
    const failedId = async (prompt: string) => {
      const { jobId } = (await (await postJson('/api/imagine', { prompt })).json()) as { jobId: string };
      const id = jobId.split(':')[1]!;
      for (let i = 0; i < 200 && (await queue.getJob(id).then((j) => j?.getState())) !== 'failed'; i++)
        await new Promise((r) => setTimeout(r, 25));
      return id;
    };
    const cancelled = await failedId('a cat');
    await failedId('a dog');

    const one = await request(`/admin/api/queues/imagine/${cancelled}/retry`, { method: 'PUT' });
    expect(one.status).toBe(400);
    expect(JSON.stringify(await one.json())).toMatch(/Cancelled jobs are not retried/);
    const all = await request('/admin/api/queues/imagine/retry/failed', { method: 'PUT' });
    expect(await all.json()).toEqual({ retried: 1, skipped: 1 });
    for (let i = 0; i < 200 && runs['a dog'] !== 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(runs).toEqual({ 'a cat': 1, 'a dog': 2 });
    expect(await queue.getJob(cancelled).then((j) => j?.getState())).toBe('failed');
    await queue.close();
  });
});
