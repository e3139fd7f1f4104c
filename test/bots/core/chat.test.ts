// The chat flows against real Redis, scripted BullMQ workers and a local file host standing in for a
// platform's CDN: attachments become blobs (or are refused with a sentence), commands and buttons
// become jobs, posted images are indexed and unindexed.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChatCore } from '../../../src/bots/core/chat.js';
import { ingestPolicy } from '../../../src/bots/core/ingest.js';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { JobRunner, type ReplySurface } from '../../../src/bots/core/reply.js';
import type { JobView } from '../../../src/bots/core/view.js';
import { RedisBlobStore } from '../../../src/shared/blobs.js';
import type { ImagineResult } from '../../../src/shared/jobs.js';
import { clearPrefix, testPrefix, useQueueConnections, useRedis } from '../../helpers/redis.js';

const redis = useRedis();
const connections = useQueueConnections(redis);
let producer: Redis;
let consumer: Redis;
let prefix: string;
let cdn: Server;
let cdnUrl: string;
let png: Buffer;
const closers: (() => Promise<unknown> | unknown)[] = [];
const seen: Record<string, unknown[]> = {};
const record = (kind: string, value: unknown) => {
  seen[kind] = [...(seen[kind] ?? []), value];
};

beforeAll(async () => {
  producer = connections.producer;
  consumer = connections.consumer;
  png = await sharp({ create: { width: 32, height: 24, channels: 3, background: '#c04020' } })
    .png()
    .toBuffer();
  cdn = createServer((req, res) => {
    if (req.url?.startsWith('/attachments/ok.png')) {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
      res.end(png);
    } else if (req.url?.startsWith('/attachments/notes.txt')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('just some text, not an image');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await clearPrefix(producer, prefix);
  for (const key of Object.keys(seen)) delete seen[key];
});
afterAll(async () => {
  await new Promise((resolve) => cdn.close(resolve));
});

const result: ImagineResult = {
  finalBlob: 'x',
  seed: 1,
  steps: 5,
  params: { width: 64, height: 64, cutouts: 4, lr: 0.1, preset: 'draft' },
  lossFirst: 1,
  lossLast: 0.5,
  timings: {},
};

/** Workers that record what they were given; imagine stores real blobs so buttons can follow up. */
function startWorkers(blobs: RedisBlobStore) {
  const processors: Record<string, (job: Job) => Promise<unknown>> = {
    imagine: async (job) => {
      record('imagine', job.data);
      const [finalBlob, latentBlob, timelapseBlob] = await Promise.all([
        blobs.put(png, { contentType: 'image/png' }),
        blobs.put(new Uint8Array([1, 2, 3]), { contentType: 'application/x-vqclip-state' }),
        blobs.put(png, { contentType: 'image/webp' }),
      ]);
      return { ...result, seed: job.data.seed, finalBlob, latentBlob, timelapseBlob };
    },
    classify: async (job) => {
      const blob = await blobs.get(job.data.image);
      record('classify', { ...job.data, bytes: blob?.bytes.length, type: blob?.contentType });
      return { labels: [{ label: job.data.labels?.[0] ?? 'cat', prob: 0.9 }] };
    },
    'embed-image': async (job) => {
      record('embed', job.data);
      return { imageId: '00000000-0000-0000-0000-00000000000a', duplicate: false };
    },
    'delete-image': async (job) => {
      record('delete', job.data);
      return { deleted: true, count: 2 };
    },
    search: async (job) => {
      record('search', job.data);
      return { hits: [] };
    },
  };
  for (const [kind, fn] of Object.entries(processors)) {
    const worker = new Worker(kind, fn, { connection: consumer, prefix, stalledInterval: 5000 });
    worker.on('error', () => {});
    closers.push(() => worker.close(true));
  }
}

function setup() {
  prefix = testPrefix();
  const jobs = new JobClient({ connection: producer, prefix, pollMs: 50 });
  const blobs = new RedisBlobStore({ connection: producer, prefix });
  const runner = new JobRunner({ jobs, throttleMs: 20 });
  closers.push(() => jobs.close());
  startWorkers(blobs);
  const core = new ChatCore({
    platform: 'discord',
    jobs,
    blobs,
    runner,
    ingest: ingestPolicy('discord', cdnUrl),
  });
  return { core, blobs, jobs };
}

function surface(): ReplySurface & { views: JobView[] } {
  const views: JobView[] = [];
  const push = (view: JobView) => void views.push(view);
  return { views, ack: push, progress: push, final: push, fail: push };
}

const origin = { platform: 'discord', workspace: 'g1', channel: 'c1', user: 'alice' } as const;
const scope = { platform: 'discord', workspace: 'g1', channel: 'c1' } as const;

describe('ChatCore', () => {
  it('runs /imagine with flags and an init image from the platform’s file host', async () => {
    const { core } = setup();
    const s = surface();
    const run = await core.imagine(
      {
        text: 'a lighthouse --preset draft --seed 3',
        initImage: { url: `${cdnUrl}/attachments/ok.png`, size: png.length },
      },
      origin,
      s,
    );
    expect(await run.done).toMatchObject({ state: 'done' });
    const data = seen.imagine?.[0] as { prompt: string; seed: number; preset: string; initImage: string };
    expect(data).toMatchObject({ prompt: 'a lighthouse', seed: 3, preset: 'draft', origin });
    expect(data.initImage).toMatch(new RegExp(`^${prefix}:blob:`));
    expect(s.views.at(-1)).toMatchObject({ state: 'done', imagine: { seed: 3 } });
  });

  it('refuses bad flags, foreign hosts and non-images in words, without a job', async () => {
    const { core } = setup();
    const cases: [Parameters<ChatCore['imagine']>[0], RegExp][] = [
      [{ text: 'a cat --colour red' }, /colour/],
      [
        { text: 'a cat', initImage: { url: 'https://evil.example.com/x.png' } },
        /links to other sites are not fetched/,
      ],
      [{ text: 'a cat', initImage: { url: `${cdnUrl}/attachments/notes.txt` } }, /not an image/],
      [
        { text: 'a cat', initImage: { url: `${cdnUrl}/attachments/ok.png`, size: 30 * 1024 * 1024 } },
        /limit is 25 MiB/,
      ],
      [{ text: 'a cat', initImage: { url: `${cdnUrl}/attachments/gone.png` } }, /could not download/],
    ];
    for (const [command, sentence] of cases) {
      const s = surface();
      const run = await core.imagine(command, origin, s);
      expect(await run.done).toMatchObject({ state: 'rejected' });
      expect(s.views).toHaveLength(1);
      expect(s.views[0]).toMatchObject({ state: 'failed', text: expect.stringMatching(sentence) });
    }
    expect(seen.imagine).toBeUndefined();
  });

  it('answers /whatis from the attachment and removes the upload afterwards', async () => {
    const { core, blobs } = setup();
    const labels = await core.whatis({ url: `${cdnUrl}/attachments/ok.png` }, 'lighthouse, tree', origin);
    expect(labels).toEqual({ labels: [{ label: 'lighthouse', prob: 0.9 }] });
    const job = seen.classify?.[0] as { image: string; bytes: number; type: string; labels: string[] };
    expect(job).toMatchObject({
      bytes: png.length,
      type: 'image/png',
      labels: ['lighthouse', 'tree'],
      origin,
    });
    expect(await blobs.get(job.image)).toBeUndefined();
  });

  it('follows buttons: Re-roll, Variations, Remix (form, then job), Timelapse, Cancel by someone else', async () => {
    const { core } = setup();
    const first = await core.imagine({ text: 'a lighthouse --seed 3' }, origin, surface());
    const done = await first.done;
    expect(done.state).toBe('done');
    const parent = first.jobId!;

    const reroll = await core.action(core.actionId('reroll', parent), { ...origin, user: 'bob' }, surface());
    expect(reroll.kind).toBe('started');
    if (reroll.kind === 'started') await reroll.run.done;
    const rerolled = seen.imagine?.[1] as { seed: number; origin: { user: string } };
    expect(rerolled.seed).not.toBe(3);
    expect(rerolled.origin.user).toBe('bob');

    const variations = await core.action(core.actionId('variations', parent), origin, surface());
    if (variations.kind === 'started') await variations.run.done;
    expect(seen.imagine?.[2]).toMatchObject({ from: { mode: 'variation', job: parent } });

    expect(await core.action(core.actionId('remix', parent), origin, surface())).toEqual({
      kind: 'remix_form',
      prompt: 'a lighthouse',
      parent,
    });
    const remix = await core.action(core.actionId('remix', parent), origin, surface(), {
      prompt: 'a lighthouse at dusk',
    });
    if (remix.kind === 'started') await remix.run.done;
    expect(seen.imagine?.[3]).toMatchObject({ prompt: 'a lighthouse at dusk', from: { mode: 'variation' } });

    const timelapse = await core.action(core.actionId('timelapse', parent), origin, surface());
    expect(timelapse).toMatchObject({ kind: 'timelapse', blob: expect.stringMatching(/:blob:/) });

    await expect(
      core.action(core.actionId('cancel', parent), { ...origin, user: 'bob' }, surface()),
    ).rejects.toMatchObject({
      code: 'forbidden',
    });
    await expect(core.action('vq1:reroll:imagine:nope', origin, surface())).rejects.toMatchObject({
      code: 'not_found',
    });
    await expect(core.action('garbage', origin, surface())).rejects.toMatchObject({ code: 'not_found' });
  });

  it('indexes a message’s images (a bad one counted, not thrown) and unindexes by message', async () => {
    const { core } = setup();
    const { indexed, failed } = await core.index(
      [
        {
          file: 'a1',
          image: { url: `${cdnUrl}/attachments/ok.png` },
          link: 'https://discord.com/channels/g1/c1/m1',
        },
        { file: 'a2', image: { url: `${cdnUrl}/attachments/notes.txt` } },
      ],
      scope,
      'm1',
      origin,
    );
    expect(indexed).toHaveLength(1);
    expect(failed).toBe(1);
    expect(seen.embed?.[0]).toMatchObject({ ...scope, message: 'm1', file: 'a1', origin });
    expect(await core.unindex(scope, 'm1')).toBe(2);
    expect(seen.delete?.[0]).toMatchObject({ ...scope, message: 'm1' });

    await core.search({ text: 'a red bicycle --k 3' }, scope, origin);
    expect(seen.search?.[0]).toMatchObject({ query: 'a red bicycle', k: 3, ...scope });
    await core.search({ image: { url: `${cdnUrl}/attachments/ok.png` } }, scope, origin);
    expect(seen.search?.[1]).toMatchObject({ image: expect.stringMatching(/:blob:/) });
  });
});
