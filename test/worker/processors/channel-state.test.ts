import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from '../../../src/shared/db/index.js';
import { runChannelState } from '../../../src/worker/processors/channel-state.js';
import { seedDataDir } from '../../helpers/worker-process.js';

let dir: string;
let db: Database;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vqclip-chstate-'));
  // A migrated PGlite copied in: saves PGlite's initdb (5+ s).
  await seedDataDir(dir, 4);
  db = await openDatabase({ dataDir: dir, databasePoolSize: 1 }, { embeddingDim: 4, embeddingModel: 'test' });
});
afterAll(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

const scope = { platform: 'discord', workspace: 'g1', channel: 'c1' } as const;

describe('channel-state job', () => {
  it('reads an unknown channel as unconfigured, then keeps what is set, field by field', async () => {
    expect(await runChannelState(scope, { db })).toEqual({
      known: false,
      indexing: false,
      backfillCursor: null,
      backfillDone: false,
    });
    expect(await runChannelState({ ...scope, set: { indexing: true } }, { db })).toMatchObject({
      known: true,
      indexing: true,
    });
    await runChannelState({ ...scope, set: { backfillCursor: '1234567890' } }, { db });
    expect(await runChannelState(scope, { db })).toEqual({
      known: true,
      indexing: true,
      backfillCursor: '1234567890',
      backfillDone: false,
    });
    expect(
      await runChannelState({ ...scope, set: { backfillCursor: null, backfillDone: true } }, { db }),
    ).toMatchObject({
      backfillCursor: null,
      backfillDone: true,
      indexing: true,
    });
    // Another channel is its own.
    expect(await runChannelState({ ...scope, channel: 'c2' }, { db })).toMatchObject({ known: false });
    await expect(runChannelState({ ...scope, set: { indexing: 'yes' } }, { db })).rejects.toMatchObject({
      code: 'bad_input',
    });
  });
});
