// The Postgres path of the database module (DATABASE_URL, the pg Pool of postgres.ts) against a real
// wire-protocol server: @electric-sql/pglite-socket over PGlite with pgvector, on a free loopback port.
// One PGlite backend serves every connection (the server multiplexes them, a transaction at a time),
// so what needs two backends (a build seen from another session, cancelling one) is not exercised.
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type ChannelScope,
  Database,
  HNSW_INDEX,
  migrate,
  migrations,
  type OpenDatabaseOptions,
  openDatabase,
} from '../../src/shared/db/index.js';
import { collectingLogger, cosine, hnswScans, imageAdder, insertRaw } from '../helpers/db.js';
import { mulberry32, randomArray } from '../helpers/random.js';

const DIM = 8;
let pglite: PGlite;
let server: PGLiteSocketServer;
let url: string;

beforeAll(async () => {
  pglite = await PGlite.create({ extensions: { vector } });
  // Above the pool's 10 plus openPostgres's set-up client: a connection over the limit is refused.
  server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0, maxConnections: 16 });
  await server.start();
  url = `postgres://postgres:postgres@${server.getServerConn()}/postgres`;
});
afterAll(async () => {
  await server?.stop();
  await pglite?.close();
});

/** Opens our Database exactly as a process with DATABASE_URL set does. */
function open(options: OpenDatabaseOptions = {}): Promise<Database> {
  return openDatabase({ databaseUrl: url }, options);
}

const rand = mulberry32(4321);
const here: ChannelScope = { platform: 'slack', workspace: 'T1', channel: 'C1' };
const elsewhere: ChannelScope = { platform: 'slack', workspace: 'T1', channel: 'C2' };

/** Back to an empty database (the server's PGlite lives for the whole file). */
async function resetDatabase(): Promise<void> {
  await pglite.exec('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
}

describe('migrations over the wire', () => {
  it('run from empty, wait for the dimension, and apply nothing on re-open', async () => {
    const logs = collectingLogger();
    const first = await open({ logger: logs });
    try {
      expect(first.info).toMatchObject({ kind: 'postgres', embeddingDim: undefined });
      expect(first.info.pgvectorVersion).toMatch(/^0\.\d+\.\d+$/);
      expect(logs.lines).toContainEqual(
        expect.objectContaining({ msg: 'database migrated', applied: [1, 2, 3], kind: 'postgres' }),
      );
      await expect(first.countImages()).rejects.toThrow(/embeddingDim/);
      await first.insertGeneration({ jobId: 'kept', platform: 'web', userId: 'u', prompt: 'kept' });
    } finally {
      await first.close();
    }
    const second = await open({ embeddingDim: DIM, logger: logs });
    try {
      expect(logs.lines).toContainEqual(
        expect.objectContaining({ msg: 'database migrated', applied: [4, 5, 6, 7, 8], kind: 'postgres' }),
      );
      expect(second.embeddingDim).toBe(DIM);
      // Made while empty: the index is there from the start.
      expect(await second.vectorIndexState()).toBe('ready');
      const [storage] = await second.driver.query<{ s: string }>(
        "SELECT attstorage AS s FROM pg_attribute WHERE attrelid = 'images'::regclass AND attname = 'embedding'",
      );
      expect(storage?.s).toBe('p');
    } finally {
      await second.close();
    }
    const again = collectingLogger();
    const third = await open({ embeddingDim: DIM, logger: again });
    try {
      expect(again.lines.filter((l) => l.msg === 'database migrated')).toEqual([]);
      expect((await third.getGenerationByJob('kept'))?.prompt).toBe('kept');
      const rows = await third.driver.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual(migrations.map((m) => m.id));
      expect(await migrate(third.driver, { embeddingDim: DIM })).toEqual({ applied: [], embeddingDim: DIM });
    } finally {
      await third.close();
    }
    // Another model's dimension is refused, and the failed open leaves no pool behind.
    await expect(open({ embeddingDim: 512 })).rejects.toMatchObject({
      code: 'embedding_dimension_mismatch',
      details: { expected: DIM, actual: 512 },
    });
  });

  it('apply once when two processes open an empty database together', async () => {
    await resetDatabase();
    const logs = [collectingLogger(), collectingLogger()];
    const both = await Promise.all(logs.map((logger) => open({ embeddingDim: DIM, logger })));
    try {
      const applied = logs.map((l) => l.lines.find((line) => line.msg === 'database migrated')?.applied);
      expect(applied).toContainEqual(migrations.map((m) => m.id));
      expect(applied).toContainEqual(undefined);
      for (const db of both) expect(await db.vectorIndexState()).toBe('ready');
    } finally {
      await Promise.all(both.map((db) => db.close()));
    }
  });
});

describe('the Database over the wire', () => {
  let db: Database;
  const add = imageAdder();
  function addImage(scope: ChannelScope, embedding: Float32Array, message = 'm', on: Database = db) {
    return add(on, scope, embedding, message);
  }

  beforeAll(async () => {
    db = await open({ embeddingDim: DIM });
  });
  afterAll(async () => {
    await db?.close();
  });

  it('inserts, updates and reads back generations, idempotent per job id', async () => {
    const id = await db.insertGeneration({
      jobId: 'imagine:wire',
      platform: 'discord',
      workspace: 'G',
      channel: 'C',
      userId: 'U',
      prompt: 'a watercolor teacher',
      params: { width: 256, height: 256 },
      // Above 2^31: a bigint column, read back as a number.
      seed: 4_000_000_000,
    });
    expect(await db.getGeneration(id)).toMatchObject({
      jobId: 'imagine:wire',
      status: 'queued',
      seed: 4_000_000_000,
      params: { width: 256, height: 256 },
      finishedAt: null,
    });
    expect(
      await db.updateGeneration(id, { status: 'completed', timings: { total: 12.5 }, finished: true }),
    ).toBe(true);
    const done = await db.getGenerationByJob('imagine:wire');
    expect(done).toMatchObject({ id, status: 'completed', timings: { total: 12.5 } });
    expect(done?.createdAt).toBeInstanceOf(Date);
    expect(done?.finishedAt).toBeInstanceOf(Date);
    expect(
      await db.insertGeneration({ jobId: 'imagine:wire', platform: 'web', userId: 'U', prompt: 'p' }),
    ).toBe(id);
    expect(await db.updateGeneration('00000000-0000-0000-0000-000000000000', { status: 'failed' })).toBe(
      false,
    );
  });

  it('searches one channel only, in cosine order, with cosine scores', async () => {
    const mine = [];
    for (let i = 0; i < 12; i++) mine.push(await addImage(here, randomArray(rand, DIM)));
    for (let i = 0; i < 12; i++) await addImage(elsewhere, randomArray(rand, DIM));
    await addImage({ ...here, workspace: 'T2' }, randomArray(rand, DIM));
    await addImage({ ...here, platform: 'discord' }, randomArray(rand, DIM));
    const query = randomArray(rand, DIM);
    const expected = mine
      .map((m) => ({ imageId: m.imageId, score: cosine(query, m.embedding) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, 5);
    const hits = await db.searchImages({ ...here, embedding: query, k: 5 });
    expect(hits.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
    hits.forEach((h, i) => {
      expect(h.score).toBeCloseTo(expected[i]!.score, 5);
    });
    expect(hits[0]?.link).toMatch(/^https:\/\/example\.test\//);
    const all = await db.searchImages({ ...here, embedding: query, k: 100 });
    expect(new Set(all.map((h) => h.imageId))).toEqual(new Set(mine.map((m) => m.imageId)));
    // Searches run on the pool at once: each is one transaction on one connection.
    const together = await Promise.all(
      Array.from({ length: 6 }, () => db.searchImages({ ...here, embedding: query, k: 5 })),
    );
    for (const t of together) expect(t.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
  });

  it('keeps to DATABASE_POOL_SIZE connections however many searches run at once', async () => {
    for (let i = 0; i < 4; i++) await addImage(here, randomArray(rand, DIM));
    const query = randomArray(rand, DIM);
    const connectionsDuring = async (databasePoolSize: number | undefined) => {
      let connections = 0;
      const count = () => {
        connections++;
      };
      server.addEventListener('connection', count);
      const small = await openDatabase({ databaseUrl: url, databasePoolSize }, { embeddingDim: DIM });
      try {
        await Promise.all(
          Array.from({ length: 8 }, () => small.searchImages({ ...here, embedding: query, k: 3 })),
        );
      } finally {
        await small.close();
        server.removeEventListener('connection', count);
      }
      return connections;
    };
    // openPostgres's one-off set-up client, then the pool.
    expect(await connectionsDuring(2)).toBeLessThanOrEqual(3);
    expect(await connectionsDuring(undefined)).toBeGreaterThan(3);
  });

  it('walks the HNSW index for a large channel, with the iterative scan set for that search only', async () => {
    const scope = { platform: 'web', workspace: 'local', channel: 'hnsw' } as const;
    const query = randomArray(rand, DIM);
    const literal = (v: ArrayLike<number>) => `[${Array.from(v).join(',')}]`;
    // The channel's best matches sit around the query; the rest of it points away (cosine <= 0).
    const mine = [];
    for (let i = 0; i < 20; i++)
      mine.push(
        await addImage(
          scope,
          query.map((v) => v + 0.3 * (rand() - 0.5)),
        ),
      );
    const q2 = query.reduce((s, v) => s + v * v, 0);
    const away = Array.from({ length: 800 }, () => {
      const v = randomArray(rand, DIM);
      const dot = v.reduce((s, x, i) => s + x * query[i]!, 0);
      return literal(dot > 0 ? v.map((x, i) => x - (2 * dot * query[i]!) / q2) : v);
    });
    // Nearer neighbours of the query in other channels: without pgvector's iterative scan the channel
    // filter would run on the first ef_search candidates only, all of them in the other channels.
    const near = Array.from({ length: 300 }, () => literal(query.map((v) => v + 0.01 * (rand() - 0.5))));
    await db.driver.query(
      `INSERT INTO images (platform, workspace, channel, message, file, content_hash, embedding)
       SELECT 'web', 'local', CASE WHEN o <= $2 THEN 'hnsw' ELSE 'other-' || (o % 5) END,
         'm', 'f', 'bulk' || o, v::vector
       FROM unnest($1::text[]) WITH ORDINALITY AS u(v, o)`,
      [[...away, ...near], away.length],
    );
    // What autovacuum does on a real Postgres (PGlite has none; the pg path leaves it to the server).
    await db.driver.exec('ANALYZE images');
    const expected = mine
      .map((m) => ({ imageId: m.imageId, score: cosine(query, m.embedding) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, 10);
    const before = await hnswScans(db);
    const exact = await db.searchImages({ ...scope, embedding: query, k: 10 });
    expect(exact.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
    expect(await hnswScans(db)).toBe(before);
    // Above exactMaxRows: the index form, which the planner walks for a channel this size when
    // ef_search is small (it prices the index scan by ef_search); 10 candidates hold fewer than 10
    // rows of this channel, so only the iterative scan fills the result.
    const indexed = new Database(db.driver, DIM, { exactMaxRows: 100, efSearch: 10 });
    const hits = await indexed.searchImages({ ...scope, embedding: query, k: 10 });
    expect(await hnswScans(db)).toBe(before + 1);
    expect(hits.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
    // SET LOCAL: nothing stays on the pooled session after the search.
    const [setting] = await db.driver.query<{ v: string }>(
      "SELECT current_setting('hnsw.iterative_scan') AS v",
    );
    expect(setting?.v).toBe('off');
  });

  it('dedups by content hash within a channel only', async () => {
    const e = randomArray(rand, DIM);
    const base = { message: 'M1', file: 'F1', contentHash: 'same-bytes', embedding: e };
    const first = await db.upsertImage({ ...here, ...base });
    expect(first).toMatchObject({ duplicate: false, reindexed: false });
    expect(await db.upsertImage({ ...here, ...base, message: 'M2' })).toEqual({
      imageId: first.imageId,
      duplicate: true,
      reindexed: false,
      flagged: false,
    });
    const other = await db.upsertImage({ ...elsewhere, ...base });
    expect(other.duplicate).toBe(false);
    expect(other.imageId).not.toBe(first.imageId);
  });

  it('keeps the safety flag, filters by it, leaves out the query bytes, returns embeddings', async () => {
    const scope = { platform: 'slack', workspace: 'T1', channel: 'flags' } as const;
    const base = { ...scope, message: 'm', file: 'f' };
    const query = randomArray(rand, DIM);
    const e = { bad: query.map((v) => v + 0.001), self: query, other: randomArray(rand, DIM) };
    const bad = await db.upsertImage({ ...base, contentHash: 'bad', embedding: e.bad, flagged: true });
    const self = await db.upsertImage({ ...base, contentHash: 'self', embedding: e.self, flagged: false });
    const other = await db.upsertImage({ ...base, contentHash: 'other', embedding: e.other });
    expect([bad.flagged, self.flagged, other.flagged]).toEqual([true, false, false]);
    const ids = async (q: Partial<Parameters<Database['searchImages']>[0]> = {}) =>
      (await db.searchImages({ ...scope, embedding: query, k: 10, ...q })).map((h) => h.imageId);
    expect(await ids()).toEqual([self.imageId, other.imageId]);
    expect(await ids({ includeFlagged: true })).toEqual([self.imageId, bad.imageId, other.imageId]);
    const hits = await db.searchImages({
      ...scope,
      embedding: query,
      k: 10,
      includeFlagged: true,
      excludeContentHash: 'self',
      withEmbeddings: true,
    });
    expect(hits.map((h) => [h.imageId, h.flagged])).toEqual([
      [bad.imageId, true],
      [other.imageId, false],
    ]);
    expect(Array.from(hits[0]!.embedding!)).toEqual(Array.from(e.bad));
    // The latest verdict wins on a duplicate.
    expect(await db.upsertImage({ ...base, contentHash: 'bad', embedding: e.bad, flagged: false })).toEqual({
      imageId: bad.imageId,
      duplicate: true,
      reindexed: false,
      flagged: false,
    });
    expect(await ids()).toEqual([self.imageId, bad.imageId, other.imageId]);
  });

  it('deletes by id, by message, and only within the given channel', async () => {
    const scope = { platform: 'discord', workspace: 'G', channel: 'deletes' } as const;
    const a = await addImage(scope, randomArray(rand, DIM), 'MA');
    const b = await addImage(scope, randomArray(rand, DIM), 'MB');
    const c = await addImage(scope, randomArray(rand, DIM), 'MB');
    expect(await db.deleteImage(a.imageId, { ...scope, channel: 'not-here' })).toBe(false);
    expect(await db.deleteImage(a.imageId, { ...scope, workspace: 'G2' })).toBe(false);
    expect(await db.countImages(scope)).toBe(3);
    expect(await db.deleteImage(a.imageId, scope)).toBe(true);
    expect(await db.deleteImage(a.imageId)).toBe(false);
    const hits = await db.searchImages({ ...scope, embedding: a.embedding, k: 10 });
    expect(hits.map((h) => h.imageId).sort()).toEqual([b.imageId, c.imageId].sort());
    expect(await db.deleteImagesOfMessage({ ...scope, message: 'MB' })).toBe(2);
    expect(await db.countImages(scope)).toBe(0);
  });

  it("ranks only its own model's rows, re-indexes stale ones in place, and counts the others", async () => {
    const scope = { platform: 'discord', workspace: 'G', channel: 'two-models' } as const;
    const a = new Database(db.driver, DIM, {}, 'model-a');
    const b = new Database(db.driver, DIM, {}, 'model-b');
    const query = randomArray(rand, DIM);
    const ids = { a: [] as string[], b: [] as string[] };
    for (let i = 0; i < 8; i++) {
      // Model b's vectors sit right on the query: mixed in, they would take every top place.
      const onA = i % 2 === 0;
      const embedding = onA ? randomArray(rand, DIM) : query.map((v) => v + 0.001 * (rand() - 0.5));
      const r = await (onA ? a : b).upsertImage({
        ...scope,
        message: `m${i}`,
        file: 'f',
        contentHash: `two-${i}`,
        embedding,
      });
      ids[onA ? 'a' : 'b'].push(r.imageId);
    }
    for (const exactMaxRows of [2000, 0]) {
      const onA = new Database(db.driver, DIM, { exactMaxRows }, 'model-a');
      const hits = await onA.searchImages({ ...scope, embedding: query, k: 10 });
      expect(hits.map((h) => h.imageId).sort()).toEqual([...ids.a].sort());
    }
    expect(await a.countStaleImages(scope)).toBe(4);
    expect(await b.countStaleImages(scope)).toBe(4);
    // The same bytes indexed by model a: b's row takes a's embedding, same id.
    expect(
      await a.upsertImage({ ...scope, message: 'x', file: 'f', contentHash: 'two-1', embedding: query }),
    ).toEqual({ imageId: ids.b[0], duplicate: false, reindexed: true, flagged: false });
    expect(await a.countStaleImages(scope)).toBe(3);
    const byModel = await a.countImagesByModel();
    expect(byModel).toContainEqual({ model: 'model-a', images: 5 });
    expect(byModel).toContainEqual({ model: 'model-b', images: 3 });
    // Without a model: every row ranked, nothing stale.
    expect(await db.searchImages({ ...scope, embedding: query, k: 10 })).toHaveLength(8);
    expect(await db.countStaleImages(scope)).toBe(0);
  });

  it('keeps channel state, leaving fields not given', async () => {
    const scope = { platform: 'slack', workspace: 'T9', channel: 'C9' } as const;
    expect(await db.getChannelState(scope)).toBeUndefined();
    expect(await db.setChannelState(scope, { backfillCursor: '1700000000.000100' })).toMatchObject({
      indexing: true,
      backfillCursor: '1700000000.000100',
      backfillDone: false,
    });
    const paused = await db.setChannelState(scope, { indexing: false });
    expect(paused).toMatchObject({
      indexing: false,
      backfillCursor: '1700000000.000100',
      backfillDone: false,
    });
    expect(paused.updatedAt).toBeInstanceOf(Date);
    expect(await db.setChannelState(scope, { backfillDone: true, backfillCursor: null })).toMatchObject({
      indexing: false,
      backfillCursor: null,
      backfillDone: true,
    });
  });
});

describe('the HNSW index of an older table, on Postgres', () => {
  /** A database as the release before migration 6 left it: images, no HNSW index. */
  async function olderTable(rows: number): Promise<void> {
    await resetDatabase();
    const old = await open();
    try {
      await migrate(old.driver, { embeddingDim: DIM, list: migrations.slice(0, 5) });
      await insertRaw(old, here, randomArray(rand, DIM), rows);
    } finally {
      await old.close();
    }
  }

  it('builds it at open while the table is small', async () => {
    await olderTable(3);
    const logs = collectingLogger();
    const db = await open({ embeddingDim: DIM, logger: logs, vectorIndex: { autoBuildMaxRows: 5 } });
    try {
      expect(await db.vectorIndexState()).toBe('ready');
      expect(logs.lines).toContainEqual(
        expect.objectContaining({ level: 'info', msg: 'built the HNSW index of image embeddings', rows: 3 }),
      );
    } finally {
      await db.close();
    }
  });

  it('builds it concurrently in the background for a large table; close waits for or stops it', async () => {
    await olderTable(6);
    const logs = collectingLogger();
    const options = { embeddingDim: DIM, logger: logs, vectorIndex: { autoBuildMaxRows: 5 } };
    const db = await open(options);
    expect(logs.lines).toContainEqual(
      expect.objectContaining({ level: 'info', rows: '>= 6', msg: expect.stringContaining('concurrently') }),
    );
    // Searches go on meanwhile (here: queued behind the build on the one backend).
    expect(await db.searchImages({ ...here, embedding: randomArray(rand, DIM), k: 10 })).toHaveLength(6);
    const queries = vi.spyOn(db.driver, 'query');
    await db.close();
    // close() looked for this process's build to cancel it (its errors are swallowed: check it ran).
    const cancel = queries.mock.calls.findIndex(([sql]) => sql.includes('pg_cancel_backend'));
    expect(cancel).toBeGreaterThanOrEqual(0);
    expect(queries.mock.settledResults[cancel]).toEqual({ type: 'fulfilled', value: [] });
    // Our single backend ran the build to its end before it read the cancel: nothing to cancel.
    expect(logs.lines.filter((l) => l.level === 'warn')).toEqual([]);
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'HNSW index ready', ready: true }));
    const {
      rows: [index],
    } = await pglite.query<{ valid: boolean }>(
      `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('${HNSW_INDEX}')`,
    );
    expect(index?.valid).toBe(true);
  });

  it('drops the invalid index an interrupted concurrent build left, then builds it again', async () => {
    await olderTable(6);
    // What a cancelled CREATE INDEX CONCURRENTLY leaves behind.
    await pglite.exec(createInvalidIndexSql());
    const logs = collectingLogger();
    const db = await open({ embeddingDim: DIM, logger: logs, vectorIndex: { autoBuildMaxRows: -1 } });
    try {
      expect(await db.vectorIndexState()).toBe('invalid');
      // The planner ignores it: a large channel is still ranked, exactly.
      const exactOnly = new Database(db.driver, DIM, { exactMaxRows: 2 });
      expect(
        await exactOnly.searchImages({ ...here, embedding: randomArray(rand, DIM), k: 10 }),
      ).toHaveLength(6);
      // What `vqclip db index` does.
      expect(await db.ensureVectorIndex({ minRows: 0 })).toBe(true);
      expect(await db.vectorIndexState()).toBe('ready');
    } finally {
      await db.close();
    }
    // And at open, in the background, for a large table.
    await pglite.exec(`DROP INDEX ${HNSW_INDEX}; ${createInvalidIndexSql()}`);
    const reopened = await open({ embeddingDim: DIM, logger: logs, vectorIndex: { autoBuildMaxRows: 5 } });
    await reopened.close();
    expect(logs.lines).toContainEqual(expect.objectContaining({ msg: 'HNSW index ready', ready: true }));
    const {
      rows: [index],
    } = await pglite.query<{ n: number; valid: boolean }>(
      `SELECT count(*)::int AS n, bool_and(indisvalid) AS valid FROM pg_index
       WHERE indexrelid = to_regclass('${HNSW_INDEX}')`,
    );
    expect(index).toEqual({ n: 1, valid: true });
  });
});

/** The index, built and then marked invalid as an interrupted concurrent build leaves it. */
function createInvalidIndexSql(): string {
  return `CREATE INDEX ${HNSW_INDEX} ON images USING hnsw (embedding vector_cosine_ops);
    UPDATE pg_index SET indisvalid = false WHERE indexrelid = '${HNSW_INDEX}'::regclass;`;
}
