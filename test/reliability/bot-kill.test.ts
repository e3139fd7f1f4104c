// A bot process SIGKILLed mid-follow (no shutdown code runs at all: the in-process restarts of the
// adapter tests close the old services first): `npm run bot` as its own process against the fake
// Discord, a worker on the tiny models in this one. The new process re-attaches from Redis and the
// reply gets its final image exactly once.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { APIMessage } from 'discord-api-types/v10';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/app/redis-server.js';
import { InflightIndex } from '../../src/bots/core/inflight.js';
import { registerCommands } from '../../src/bots/discord/register.js';
import { RedisBlobStore } from '../../src/shared/blobs.js';
import { silentLogger } from '../../src/shared/logger.js';
import { createConnection, openConnection, waitUntilReady } from '../../src/shared/queues.js';
import { startWorker, type WorkerHandle } from '../../src/worker/runtime/start-worker.js';
import { gate, holdAfterFirstPreview } from '../helpers/blob-gate.js';
import { entryArgs } from '../helpers/entry.js';
import { type FakeDiscord, startFakeDiscord } from '../helpers/fake-discord/index.js';
import { useProcessCleanup } from '../helpers/processes.js';
import { testPrefix, useRedis } from '../helpers/redis.js';
import { useTinyWorker } from '../helpers/tiny-worker.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const redis = useRedis();
const tiny = useTinyWorker();
const cleanup = useProcessCleanup();

let fake: FakeDiscord;
let worker: WorkerHandle;
let workerConnection: Redis;
const prefix = testPrefix();
// The worker holds its job after the first preview until the test opens this: the kill and the
// second start happen while the job runs, however slow the machine (and without painting for
// many steps to make sure of it).
const secondBotUp = gate();

beforeAll(async () => {
  // Not a test of the 3 s ack (the burst test is): a bot process starting cold on a loaded machine
  // may miss it, and this test is about what happens after.
  fake = await startFakeDiscord({
    heartbeatIntervalMs: 1000,
    rateLimit: false,
    disabledRules: ['ack-window'],
  });
  await registerCommands({
    token: fake.token,
    applicationId: fake.applicationId,
    apiUrl: fake.apiUrl,
    rest: { retries: 0 },
  });
  workerConnection = createConnection(redis.url, 'worker');
  workerConnection.on('error', () => {});
  await waitUntilReady(workerConnection);
  const store = new RedisBlobStore({ connection: workerConnection, prefix, ttlSeconds: 3600 });
  const blobs = holdAfterFirstPreview(store, () => secondBotUp.opened);
  worker = await startWorker({
    connection: workerConnection,
    prefix,
    blobs,
    models: tiny.models,
    queues: ['imagine'],
    logger: silentLogger,
  });
});
afterAll(async () => {
  await worker?.close({ graceMs: 0 });
  await workerConnection?.quit();
  await fake?.close();
});

async function startBot(dataDir: string): Promise<{ child: ChildProcess; stderr: () => string }> {
  const base = { ...process.env };
  for (const k of Object.keys(base)) {
    if (/^(REDIS_URL|DATABASE_URL|LOG_LEVEL|PORT|QUEUE_PREFIX|DISCORD_|SLACK_)/.test(k)) delete base[k];
  }
  const ready = fake.waitForReady(fake.sessions().length + 1, { timeoutMs: 60_000 });
  const child = spawn(process.execPath, entryArgs('src/bots/main.ts'), {
    cwd: ROOT,
    env: {
      ...base,
      LOG_LEVEL: 'warn',
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      PORT: String(await freePort()),
      DATA_DIR: dataDir,
      DISCORD_TOKEN: fake.token,
      DISCORD_APPLICATION_ID: fake.applicationId,
      DISCORD_API_URL: fake.apiUrl,
      DISCORD_CDN_URL: fake.cdnUrl,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  cleanup.track(child);
  let err = '';
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  await Promise.race([
    ready,
    once(child, 'exit').then(() => {
      throw new Error(`the bot exited: ${err}`);
    }),
  ]);
  return { child, stderr: () => err };
}

const finalEdits = (messages: readonly { body: unknown; route: string; status: number }[]) =>
  messages.filter(
    (r) =>
      r.route === 'PATCH /webhooks/:app/:token/messages/@original' &&
      r.status === 200 &&
      JSON.stringify(r.body).includes('vq1:reroll:'),
  );

function buttonsOf(message: APIMessage | undefined): string {
  return JSON.stringify(message?.components ?? []);
}

describe('a bot process killed mid-follow', () => {
  it('is re-attached by the next process, which posts the result once', { timeout: 180_000 }, async () => {
    const dir = await cleanup.tempDir('vqclip-bot-kill-');
    const first = await startBot(dir);
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a long voyage', steps: 40, size: '64' } }),
    );
    // Running: a preview is on the reply (the worker then waits at the gate).
    await fake.waitFor(
      () => handle.requests().some((r) => r.files.some((f) => f.filename.startsWith('preview.'))),
      { timeoutMs: 90_000, what: 'a preview' },
    );
    first.child.kill('SIGKILL');
    await once(first.child, 'exit');
    expect(finalEdits(handle.requests())).toHaveLength(0);

    const second = await startBot(dir);
    secondBotUp.open();
    await fake.waitFor(() => buttonsOf(handle.original()).includes('vq1:reroll:'), {
      timeoutMs: 120_000,
      what: 'the final image from the second process',
    });
    const connection = await openConnection(redis.url);
    try {
      const inflight = new InflightIndex({ connection, prefix });
      for (let i = 0; i < 50 && (await inflight.list('discord')).length > 0; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(await inflight.list('discord')).toEqual([]);
    } finally {
      await connection.quit();
    }
    // A little longer: nothing else arrives.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(finalEdits(handle.requests())).toHaveLength(1);
    second.child.kill('SIGTERM');
    await once(second.child, 'exit');
  });
});
