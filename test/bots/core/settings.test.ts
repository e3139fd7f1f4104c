import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../../src/bots/core/job-client.js';
import { SettingsStore } from '../../../src/bots/core/settings.js';
import { type Database, openDatabase } from '../../../src/shared/db/index.js';
import { openConnection } from '../../../src/shared/queues.js';
import { runChannelState } from '../../../src/worker/processors/channel-state.js';
import { deletePrefix, testPrefix, useRedis } from '../../helpers/redis.js';
import { seedDataDir } from '../../helpers/worker-process.js';

const redis = useRedis();
let producer: Redis;
let consumer: Redis;
let dir: string;
let db: Database;
let worker: Worker;
let jobs: JobClient;
const prefix = testPrefix();

beforeAll(async () => {
  producer = await openConnection(redis.url);
  consumer = await openConnection(redis.url, 'worker');
  dir = await mkdtemp(join(tmpdir(), 'vqclip-settings-'));
  // A migrated PGlite copied in: saves PGlite's initdb (5+ s).
  await seedDataDir(dir, 4);
  db = await openDatabase({ dataDir: dir }, { embeddingDim: 4, embeddingModel: 'test' });
  worker = new Worker('channel-state', (job) => runChannelState(job.data, { db }), {
    connection: consumer,
    prefix,
  });
  jobs = new JobClient({ connection: producer, prefix, pollMs: 50 });
});
afterAll(async () => {
  await worker.close(true);
  await jobs.close();
  const queue = new Queue('channel-state', { connection: producer, prefix });
  await queue.obliterate({ force: true });
  await queue.close();
  await deletePrefix(producer, prefix);
  await db.close();
  await rm(dir, { recursive: true, force: true });
  await producer.quit();
  await consumer.quit();
});

describe('SettingsStore', () => {
  it('keeps workspace defaults per platform and workspace, falling back to the deployment’s safety mode', async () => {
    const settings = new SettingsStore({ connection: producer, prefix, jobs, defaultSafetyMode: 'spoiler' });
    expect(await settings.workspace('discord', 'g1')).toEqual({});
    expect(await settings.safetyMode('discord', 'g1')).toBe('spoiler');
    await settings.updateWorkspace('discord', 'g1', { preset: 'draft', safetyMode: 'block' });
    expect(await settings.workspace('discord', 'g1')).toEqual({ preset: 'draft', safetyMode: 'block' });
    expect(await settings.safetyMode('discord', 'g1')).toBe('block');
    expect(await settings.safetyMode('slack', 'g1')).toBe('spoiler');
    expect(await settings.safetyMode('discord', undefined)).toBe('spoiler');
    await settings.updateWorkspace('discord', 'g1', { safetyMode: undefined });
    expect(await settings.workspace('discord', 'g1')).toEqual({ preset: 'draft' });
    await expect(settings.updateWorkspace('discord', 'g1', { preset: 'ultra' as never })).rejects.toThrow();
  });

  it('reads and sets a channel’s indexing opt-in and backfill cursor in the database, through the queue', async () => {
    const settings = new SettingsStore({ connection: producer, prefix, jobs, defaultSafetyMode: 'spoiler' });
    const scope = { platform: 'discord', workspace: 'g1', channel: 'c9' } as const;
    expect(await settings.channel(scope)).toMatchObject({ known: false, indexing: false });
    await settings.setChannel(scope, { indexing: true });
    await settings.setChannel(scope, { backfillCursor: '999' });
    expect(await settings.channel(scope)).toEqual({
      known: true,
      indexing: true,
      backfillCursor: '999',
      backfillDone: false,
    });
    expect(await db.getChannelState(scope)).toMatchObject({ indexing: true, backfillCursor: '999' });
  });
});
