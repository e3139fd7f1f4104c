import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ChannelScope,
  Database,
  HNSW_INDEX,
  migrate,
  migrations,
  openDatabase,
} from '../../src/shared/db/index.js';
import { collectingLogger, cosine, hnswScans, imageAdder, insertRaw } from '../helpers/db.js';
import { mulberry32, randomArray } from '../helpers/random.js';
import { seedDataDir, TINY_EMBEDDING_DIM } from '../helpers/worker-process.js';

// The tiny models' size, so the file's main database is a copy of the migrated template the other
// files use too (a PGlite of its own, in memory or on disk, would pay initdb: seconds).
const DIM = TINY_EMBEDDING_DIM;
let db: Database;
let mainDir: string | undefined;
beforeAll(async () => {
  mainDir = await mkdtemp(join(tmpdir(), 'vqclip-db-main-'));
  db = await openDatabase({ dataDir: await seedDataDir(join(mainDir, 'pglite')) }, { embeddingDim: DIM });
});
afterAll(async () => {
  await db?.close();
  if (mainDir) await rm(mainDir, { recursive: true, force: true });
});

const rand = mulberry32(1234);
const here: ChannelScope = { platform: 'slack', workspace: 'T1', channel: 'C1' };
const elsewhere: ChannelScope = { platform: 'slack', workspace: 'T1', channel: 'C2' };

const STORAGE_SQL =
  "SELECT attstorage AS s FROM pg_attribute WHERE attrelid = 'images'::regclass AND attname = 'embedding'";

const add = imageAdder();
function addImage(scope: ChannelScope, embedding: Float32Array, message = 'm') {
  return add(db, scope, embedding, message);
}

describe('migrations', () => {
  it('are idempotent and recorded once', async () => {
    expect(await migrate(db.driver, { embeddingDim: DIM })).toEqual({ applied: [], embeddingDim: DIM });
    expect(await migrate(db.driver)).toEqual({ applied: [], embeddingDim: DIM });
    const rows = await db.driver.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(migrations.map((m) => m.id));
    // Embeddings stay in the row (not TOASTed): exact scans read far fewer buffers.
    const storage = await db.driver.query<{ attstorage: string }>(
      "SELECT attstorage FROM pg_attribute WHERE attrelid = 'images'::regclass AND attname = 'embedding'",
    );
    expect(storage[0]?.attstorage).toBe('p');
  });

  it('refuse a model with another embedding dimension', async () => {
    await expect(migrate(db.driver, { embeddingDim: 512 })).rejects.toMatchObject({
      code: 'embedding_dimension_mismatch',
      details: { expected: DIM, actual: 512 },
    });
    await expect(
      db.searchImages({ ...here, embedding: new Float32Array(512).fill(1), k: 1 }),
    ).rejects.toMatchObject({ code: 'embedding_dimension_mismatch' });
  });

  it('hold the images table back until a process knows the dimension, then keep it on disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vqclip-db-'));
    try {
      // What the first open of an empty DATA_DIR without a model leaves (the template is made that
      // way, so its initdb runs once per suite, not here again).
      await seedDataDir(dir, 'no model');
      const first = await openDatabase({ dataDir: dir });
      expect(first.embeddingDim).toBeUndefined();
      expect(await first.driver.query("SELECT to_regclass('images') AS t")).toEqual([{ t: null }]);
      await expect(first.countImages()).rejects.toThrow(/embeddingDim/);
      const id = await first.insertGeneration({ platform: 'web', userId: 'u', prompt: 'kept' });
      await first.close();
      const second = await openDatabase({ dataDir: dir }, { embeddingDim: 16 });
      expect(second.embeddingDim).toBe(16);
      expect((await second.getGeneration(id))?.prompt).toBe('kept');
      expect(await second.countImages()).toBe(0);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('bring a database made by an older release up to date, keeping its images searchable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vqclip-db-'));
    try {
      // The release before migration 5: embeddings TOASTed out of line.
      await seedDataDir(dir, 'no model');
      const old = await openDatabase({ dataDir: dir });
      expect(
        (await migrate(old.driver, { embeddingDim: DIM, list: migrations.slice(0, 4) })).applied,
      ).toEqual([4]);
      expect((await old.driver.query<{ s: string }>(STORAGE_SQL))[0]?.s).not.toBe('p');
      const before = randomArray(rand, DIM);
      await insertRaw(old, here, before, 3);
      await old.close();
      const logs = collectingLogger();
      const reopened = await openDatabase(
        { dataDir: dir },
        { embeddingDim: DIM, embeddingModel: 'clip-a', logger: logs },
      );
      expect((await reopened.driver.query<{ s: string }>(STORAGE_SQL))[0]?.s).toBe('p');
      // Its table held images, so the migration left the index out; a table this small gets it at open.
      expect(await reopened.hasVectorIndex()).toBe(true);
      expect(logs.lines).toContainEqual(
        expect.objectContaining({ level: 'info', msg: 'built the HNSW index of image embeddings', rows: 3 }),
      );
      expect(await reopened.countImages(here)).toBe(3);
      // Rows from before models were recorded: model unknown, left out of searches and counted.
      const models = await reopened.driver.query<{ model: string | null }>('SELECT model FROM images');
      expect(models.map((r) => r.model)).toEqual([null, null, null]);
      // Never checked: not flagged (migration 8's default), so searches of their model keep them.
      const flags = await reopened.driver.query<{ flagged: boolean }>('SELECT flagged FROM images');
      expect(flags.map((r) => r.flagged)).toEqual([false, false, false]);
      expect(await reopened.countStaleImages(here)).toBe(3);
      expect(await reopened.searchImages({ ...here, embedding: before, k: 10 })).toEqual([]);
      expect(await reopened.countImagesByModel()).toEqual([{ model: null, images: 3 }]);
      const rows = await reopened.driver.query<{ id: number }>(
        'SELECT id FROM schema_migrations ORDER BY id',
      );
      expect(rows.map((r) => r.id)).toEqual(migrations.map((m) => m.id));
      const e = randomArray(rand, DIM);
      const { imageId } = await reopened.upsertImage({
        ...here,
        message: 'm',
        file: 'f',
        contentHash: 'x',
        embedding: e,
      });
      expect((await reopened.searchImages({ ...here, embedding: e, k: 10 })).map((h) => h.imageId)).toEqual([
        imageId,
      ]);
      // Indexing one of the old images again gives it this model's embedding, in place.
      const [raw1] = await reopened.driver.query<{ id: string }>(
        "SELECT id::text AS id FROM images WHERE content_hash = 'raw1'",
      );
      expect(
        await reopened.upsertImage({ ...here, message: 'm', file: 'f', contentHash: 'raw1', embedding: e }),
      ).toEqual({ imageId: raw1!.id, duplicate: false, reindexed: true, flagged: false });
      expect(await reopened.countStaleImages(here)).toBe(2);
      expect(await reopened.countImagesByModel()).toEqual([
        { model: 'clip-a', images: 2 },
        { model: null, images: 2 },
      ]);
      await reopened.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leave a large table without the index to a command, with a warning, and search it exactly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vqclip-db-'));
    try {
      await seedDataDir(dir, 'no model');
      const old = await openDatabase({ dataDir: dir });
      await migrate(old.driver, { embeddingDim: DIM, list: migrations.slice(0, 5) });
      const e = randomArray(rand, DIM);
      await insertRaw(old, here, e, 6);
      await old.close();
      const logs = collectingLogger();
      const options = { embeddingDim: DIM, logger: logs, search: { exactMaxRows: 2 } };
      // "Large" here is more than 5 images.
      const reopened = await openDatabase(
        { dataDir: dir },
        { ...options, vectorIndex: { autoBuildMaxRows: 5 } },
      );
      try {
        expect(await reopened.vectorIndexState()).toBe('missing');
        const warnings = logs.lines.filter((l) => l.level === 'warn');
        expect(warnings).toHaveLength(1);
        expect(warnings[0]?.msg).toContain('npx vqclip db index');
        expect(warnings[0]).toMatchObject({ rows: '>= 6' });
        // A channel above exactMaxRows without the index is still ranked, exactly.
        const hits = await reopened.searchImages({ ...here, embedding: e, k: 10 });
        expect(hits).toHaveLength(6);
        expect(hits[0]?.score).toBeCloseTo(1, 5);
        // What the command does.
        expect(await reopened.ensureVectorIndex({ minRows: 0 })).toBe(true);
      } finally {
        await reopened.close();
      }
      // Built once, it is simply there at the next open: no warning.
      const again = collectingLogger();
      const third = await openDatabase(
        { dataDir: dir },
        { ...options, logger: again, vectorIndex: { autoBuildMaxRows: 5 } },
      );
      expect(await third.hasVectorIndex()).toBe(true);
      expect(again.lines.filter((l) => l.level === 'warn')).toEqual([]);
      await third.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('generations', () => {
  it('insert, update and read back', async () => {
    const id = await db.insertGeneration({
      jobId: 'imagine:abc',
      platform: 'discord',
      workspace: 'G',
      channel: 'C',
      userId: 'U',
      prompt: 'a watercolor teacher',
      params: { width: 256, height: 256 },
      seed: 4_000_000_000,
    });
    const fresh = await db.getGeneration(id);
    expect(fresh).toMatchObject({
      jobId: 'imagine:abc',
      status: 'queued',
      seed: 4_000_000_000,
      params: { width: 256, height: 256 },
      finishedAt: null,
    });
    expect(fresh?.createdAt).toBeInstanceOf(Date);
    expect(
      await db.updateGeneration(id, {
        status: 'completed',
        timings: { total: 1234.5 },
        resultLink: 'https://discord.test/m/1',
        finished: true,
      }),
    ).toBe(true);
    const done = await db.getGenerationByJob('imagine:abc');
    expect(done).toMatchObject({
      id,
      status: 'completed',
      timings: { total: 1234.5 },
      resultLink: 'https://discord.test/m/1',
    });
    expect(done?.finishedAt).toBeInstanceOf(Date);
    expect(await db.updateGeneration('00000000-0000-0000-0000-000000000000', { status: 'failed' })).toBe(
      false,
    );
  });

  it('are idempotent per job id', async () => {
    const g = { jobId: 'imagine:rerun', platform: 'web', userId: 'U', prompt: 'p' } as const;
    const a = await db.insertGeneration(g);
    const b = await db.insertGeneration(g);
    expect(b).toBe(a);
  });
});

describe('images', () => {
  it('search returns only the asking channel, in cosine order, with cosine scores', async () => {
    const mine = [];
    for (let i = 0; i < 12; i++) mine.push(await addImage(here, randomArray(rand, DIM)));
    const theirs = [];
    for (let i = 0; i < 12; i++) theirs.push(await addImage(elsewhere, randomArray(rand, DIM)));
    // Same channel name in another workspace and on another platform must not leak either.
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
    expect(all.length).toBe(12);
    expect(new Set(all.map((h) => h.imageId))).toEqual(new Set(mine.map((m) => m.imageId)));
  });

  it('the HNSW index keeps the per-channel filter and the order', async () => {
    const scope = { platform: 'web', workspace: 'local', channel: 'hnsw' } as const;
    const mine = [];
    for (let i = 0; i < 30; i++) mine.push(await addImage(scope, randomArray(rand, DIM)));
    // Many near neighbours of the query in other channels: a filter applied after a plain
    // ef_search-limited scan would return too few of ours.
    const query = randomArray(rand, DIM);
    for (let i = 0; i < 200; i++) {
      const near = query.map((v) => v + 0.01 * (rand() - 0.5));
      await addImage({ ...scope, channel: `other-${i % 5}` }, near);
    }
    // A new table has had the index from the start; inserts kept it up to date.
    expect(await db.vectorIndexState()).toBe('ready');
    expect(await db.ensureVectorIndex({ minRows: 100_000 })).toBe(true);
    const expected = mine
      .map((m) => ({ imageId: m.imageId, score: cosine(query, m.embedding) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, 10);
    const vector = `[${Array.from(query).join(',')}]`;
    const planOf = async (sql: string) =>
      (await db.driver.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`))
        .map((p) => p['QUERY PLAN'])
        .join('\n');
    const filtered = `SELECT id FROM images WHERE platform = 'web' AND workspace = 'local' AND channel = 'hnsw'`;
    // A channel of 30 is below exactMaxRows: ranked exactly even with the index there and sorting
    // penalised, because its sort key is not the index's operator expression.
    await db.driver.exec('SET enable_sort = off');
    try {
      expect(
        await planOf(`${filtered} ORDER BY (embedding <=> '${vector}'::vector) + 0 LIMIT 10`),
      ).not.toContain('images_embedding_hnsw');
      const scansBefore = await hnswScans(db);
      const exact = await db.searchImages({ ...scope, embedding: query, k: 10 });
      expect(exact.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
      expect(await hnswScans(db)).toBe(scansBefore);
      // With exactMaxRows below the channel's size the search takes the index (the planner must walk
      // it here, as sorting is penalised; a 30-row channel would otherwise be sorted).
      const indexed = new Database(db.driver, DIM, { exactMaxRows: 10 });
      expect(await planOf(`${filtered} ORDER BY embedding <=> '${vector}'::vector LIMIT 10`)).toContain(
        'Index Scan using images_embedding_hnsw',
      );
      const hits = await indexed.searchImages({ ...scope, embedding: query, k: 10 });
      expect(hits.map((h) => h.imageId)).toEqual(expected.map((e) => e.imageId));
      expect(await hnswScans(db)).toBe(scansBefore + 1);
      // Without pgvector's iterative scan the filter runs on the first ef_search candidates only,
      // which are all in the other channels here: the reason every indexed search turns it on.
      await db.driver.exec("SET hnsw.iterative_scan = 'off'");
      const truncated = await db.driver.query(
        `${filtered} ORDER BY embedding <=> '${vector}'::vector LIMIT 10`,
      );
      expect(truncated.length).toBeLessThan(10);
    } finally {
      await db.driver.exec("RESET enable_sort; SET hnsw.iterative_scan = 'strict_order'");
    }
  });

  it('dedups by content hash within a channel only', async () => {
    const e = randomArray(rand, DIM);
    const base = { message: 'M1', file: 'F1', contentHash: 'same-bytes', embedding: e };
    const first = await db.upsertImage({ ...here, ...base });
    const again = await db.upsertImage({ ...here, ...base, message: 'M2', file: 'F2' });
    expect(first.duplicate).toBe(false);
    expect(again).toEqual({ imageId: first.imageId, duplicate: true, reindexed: false, flagged: false });
    const other = await db.upsertImage({ ...elsewhere, ...base });
    expect(other.duplicate).toBe(false);
    expect(other.imageId).not.toBe(first.imageId);
  });

  it('delete removes an image from search', async () => {
    const scope = { platform: 'discord', workspace: 'G', channel: 'deletes' } as const;
    const a = await addImage(scope, randomArray(rand, DIM), 'MA');
    const b = await addImage(scope, randomArray(rand, DIM), 'MB');
    const c = await addImage(scope, randomArray(rand, DIM), 'MB');
    expect(await db.deleteImage(a.imageId)).toBe(true);
    expect(await db.deleteImage(a.imageId)).toBe(false);
    let hits = await db.searchImages({ ...scope, embedding: a.embedding, k: 10 });
    expect(hits.map((h) => h.imageId).sort()).toEqual([b.imageId, c.imageId].sort());
    expect(await db.deleteImagesOfMessage({ ...scope, message: 'MB' })).toBe(2);
    hits = await db.searchImages({ ...scope, embedding: a.embedding, k: 10 });
    expect(hits).toEqual([]);
    expect(await db.countImages(scope)).toBe(0);
  });

  it('a scoped delete removes only an image of that channel', async () => {
    const scope = { platform: 'slack', workspace: 'T', channel: 'scoped-a' } as const;
    const other = { ...scope, channel: 'scoped-b' };
    const a = await addImage(scope, randomArray(rand, DIM), 'MA');
    expect(await db.deleteImage(a.imageId, other)).toBe(false);
    expect(await db.deleteImage(a.imageId, { ...scope, workspace: 'T2' })).toBe(false);
    expect(await db.countImages(scope)).toBe(1);
    expect(await db.deleteImage(a.imageId, scope)).toBe(true);
    expect(await db.deleteImage(a.imageId, scope)).toBe(false);
    expect(await db.countImages(scope)).toBe(0);
  });

  it("ranks only its own model's rows, exactly or through the index, and counts the others", async () => {
    const scope = { platform: 'discord', workspace: 'G', channel: 'two-models' } as const;
    const a = new Database(db.driver, DIM, {}, 'model-a');
    const b = new Database(db.driver, DIM, {}, 'model-b');
    const query = randomArray(rand, DIM);
    const rows = { a: [] as string[], b: [] as string[] };
    for (let i = 0; i < 8; i++) {
      // Model b's vectors sit right on the query: mixed in, they would take every top place.
      const [on, key, embedding] =
        i % 2 === 0
          ? ([a, 'a', randomArray(rand, DIM)] as const)
          : ([b, 'b', query.map((v) => v + 0.001 * (rand() - 0.5))] as const);
      const r = await on.upsertImage({
        ...scope,
        message: `m${i}`,
        file: 'f',
        contentHash: `two-${i}`,
        embedding,
      });
      rows[key].push(r.imageId);
    }
    // The same bytes from the same model: a duplicate; stamping is per row, not per database.
    expect(
      await a.upsertImage({ ...scope, message: 'x', file: 'f', contentHash: 'two-0', embedding: query }),
    ).toEqual({ imageId: rows.a[0], duplicate: true, reindexed: false, flagged: false });
    for (const exactMaxRows of [2000, 0]) {
      // 0: every channel counts as large, so the search takes the index form.
      const onA = new Database(db.driver, DIM, { exactMaxRows }, 'model-a');
      const hits = await onA.searchImages({ ...scope, embedding: query, k: 10 });
      expect(hits.map((h) => h.imageId).sort()).toEqual([...rows.a].sort());
    }
    expect(await a.countStaleImages(scope)).toBe(4);
    expect(await b.countStaleImages(scope)).toBe(4);
    expect(await a.countStaleImages({ ...scope, channel: 'empty' })).toBe(0);
    // Without a model (tools): every row ranked, nothing stale.
    const anyModel = new Database(db.driver, DIM);
    expect(await anyModel.searchImages({ ...scope, embedding: query, k: 10 })).toHaveLength(8);
    expect(await anyModel.countStaleImages(scope)).toBe(0);
    // A process without a model never overwrites a stamped row with an unstamped vector.
    expect(
      await anyModel.upsertImage({
        ...scope,
        message: 'x',
        file: 'f',
        contentHash: 'two-1',
        embedding: query,
      }),
    ).toEqual({ imageId: rows.b[0], duplicate: true, reindexed: false, flagged: false });
  });

  it('stores the safety flag, leaves flagged images out unless asked, and keeps the latest verdict', async () => {
    const scope = { platform: 'slack', workspace: 'T1', channel: 'flags' } as const;
    const query = randomArray(rand, DIM);
    const near = (spread: number) => query.map((v) => v + spread * (rand() - 0.5));
    const base = { ...scope, message: 'm', file: 'f' };
    const e = { bad: near(0.01), ok: near(0.5), unchecked: near(1) };
    const bad = await db.upsertImage({ ...base, contentHash: 'bad', embedding: e.bad, flagged: true });
    const ok = await db.upsertImage({ ...base, contentHash: 'ok', embedding: e.ok, flagged: false });
    const unchecked = await db.upsertImage({ ...base, contentHash: 'unchecked', embedding: e.unchecked });
    expect([bad.flagged, ok.flagged, unchecked.flagged]).toEqual([true, false, false]);
    const search = async (on: Database, includeFlagged?: boolean) =>
      (
        await on.searchImages({
          ...scope,
          embedding: query,
          k: 10,
          ...(includeFlagged === undefined ? {} : { includeFlagged }),
        })
      ).map((h) => ({ id: h.imageId, flagged: h.flagged }));
    // Exactly and through the HNSW index (sorting penalised, so that the planner walks the index even
    // for three rows): the filter holds on both paths.
    for (const exactMaxRows of [2000, 0]) {
      const on = new Database(db.driver, DIM, { exactMaxRows });
      if (exactMaxRows === 0) await db.driver.exec('SET enable_sort = off');
      const before = await hnswScans(db);
      expect(await search(on)).toEqual([
        { id: ok.imageId, flagged: false },
        { id: unchecked.imageId, flagged: false },
      ]);
      expect(await search(on, false)).toHaveLength(2);
      // The flagged one sits right on the query: first when included, and marked.
      expect(await search(on, true)).toEqual([
        { id: bad.imageId, flagged: true },
        { id: ok.imageId, flagged: false },
        { id: unchecked.imageId, flagged: false },
      ]);
      expect(await hnswScans(db)).toBe(before + (exactMaxRows === 0 ? 3 : 0));
      await db.driver.exec('RESET enable_sort');
    }
    // The same bytes again: a duplicate whose flag takes the new verdict; no verdict keeps the flag.
    expect(await db.upsertImage({ ...base, contentHash: 'bad', embedding: e.bad, flagged: false })).toEqual({
      imageId: bad.imageId,
      duplicate: true,
      reindexed: false,
      flagged: false,
    });
    expect(
      await db.upsertImage({ ...base, contentHash: 'unchecked', embedding: e.unchecked, flagged: true }),
    ).toMatchObject({ imageId: unchecked.imageId, duplicate: true, flagged: true });
    expect(await db.upsertImage({ ...base, contentHash: 'unchecked', embedding: e.unchecked })).toMatchObject(
      {
        duplicate: true,
        flagged: true,
      },
    );
    expect((await search(db)).map((h) => h.id)).toEqual([bad.imageId, ok.imageId]);
    // Re-indexed by another model: the new verdict with the new embedding, or the old flag without one.
    const other = new Database(db.driver, DIM, {}, 'model-flags');
    expect(await other.upsertImage({ ...base, contentHash: 'ok', embedding: e.ok, flagged: true })).toEqual({
      imageId: ok.imageId,
      duplicate: false,
      reindexed: true,
      flagged: true,
    });
    expect(await other.upsertImage({ ...base, contentHash: 'unchecked', embedding: e.unchecked })).toEqual({
      imageId: unchecked.imageId,
      duplicate: false,
      reindexed: true,
      flagged: true,
    });
  });

  it("leaves out the query's own bytes and returns the stored embeddings when asked", async () => {
    const scope = { platform: 'slack', workspace: 'T1', channel: 'by-image' } as const;
    const base = { ...scope, message: 'm', file: 'f' };
    const e = randomArray(rand, DIM);
    const copy = e.map((v) => v + 0.001);
    const self = await db.upsertImage({ ...base, contentHash: 'query-bytes', embedding: e });
    const recompressed = await db.upsertImage({ ...base, contentHash: 'recompressed', embedding: copy });
    const other = await db.upsertImage({ ...base, contentHash: 'other', embedding: randomArray(rand, DIM) });
    const all = await db.searchImages({ ...scope, embedding: e, k: 10 });
    expect(all.map((h) => h.imageId).slice(0, 2)).toEqual([self.imageId, recompressed.imageId]);
    expect(all.every((h) => !('embedding' in h))).toBe(true);
    for (const exactMaxRows of [2000, 0]) {
      const on = new Database(db.driver, DIM, { exactMaxRows });
      if (exactMaxRows === 0) await db.driver.exec('SET enable_sort = off');
      const before = await hnswScans(db);
      const hits = await on.searchImages({
        ...scope,
        embedding: e,
        k: 10,
        excludeContentHash: 'query-bytes',
        withEmbeddings: true,
      });
      expect(hits.map((h) => h.imageId)).toEqual([recompressed.imageId, other.imageId]);
      // float32 survives pgvector's text form bit for bit.
      expect(Array.from(hits[0]!.embedding!)).toEqual(Array.from(copy));
      expect(hits[0]!.score).toBeCloseTo(cosine(e, copy), 6);
      expect(await hnswScans(db)).toBe(before + (exactMaxRows === 0 ? 1 : 0));
      await db.driver.exec('RESET enable_sort');
    }
    // Another channel's copy of the same bytes is another image, never this channel's to leave out.
    expect(
      (await db.searchImages({ ...elsewhere, embedding: e, k: 100, excludeContentHash: 'query-bytes' })).some(
        (h) => h.imageId === self.imageId,
      ),
    ).toBe(false);
  });

  it('rejects embeddings of the wrong length, with NaN, or all zeros', async () => {
    const base = { ...here, message: 'M', file: 'F', contentHash: 'bad' };
    await expect(db.upsertImage({ ...base, embedding: new Float32Array(DIM + 1) })).rejects.toMatchObject({
      code: 'embedding_dimension_mismatch',
    });
    await expect(
      db.upsertImage({ ...base, embedding: new Float32Array(DIM).fill(Number.NaN) }),
    ).rejects.toMatchObject({ code: 'bad_input' });
    await expect(db.upsertImage({ ...base, embedding: new Float32Array(DIM) })).rejects.toMatchObject({
      code: 'bad_input',
    });
  });
});

describe('approximate search through the HNSW index', () => {
  const dim = 32;
  const big = { platform: 'web', workspace: 'w', channel: 'big' } as const;
  let ann: Database;
  let annDir: string | undefined;

  beforeAll(async () => {
    // Random vectors are the hard case for HNSW (no clusters to follow). exactMaxRows is lowered so
    // that the 2,500-image channel takes the index, as a channel over 2,000 would by default; and
    // ef_search too: on a table this small, the planner prices ef_search 100 above a full sort.
    // On a copy of the migrated template: a PGlite's initdb is the slow part.
    annDir = await mkdtemp(join(tmpdir(), 'vqclip-db-ann-'));
    await seedDataDir(annDir, dim);
    ann = await openDatabase(
      { dataDir: annDir },
      { embeddingDim: dim, search: { exactMaxRows: 100, efSearch: 40 } },
    );
    // A new table has the index before its first row. Dropped and built again after the bulk insert
    // only to keep the test fast (one build costs far less than 3,000 index inserts); like a new
    // table's, its statistics are never taken here.
    expect(await ann.hasVectorIndex()).toBe(true);
    await ann.driver.exec(`DROP INDEX ${HNSW_INDEX}`);
    const r = mulberry32(99);
    const vectors = Array.from({ length: 3000 }, () => `[${Array.from(randomArray(r, dim)).join(',')}]`);
    await ann.driver.query(
      `INSERT INTO images (platform, workspace, channel, message, file, content_hash, embedding)
       SELECT 'web', 'w', CASE WHEN o <= 2500 THEN 'big' ELSE 'small' END, 'm' || o, 'f', 'h' || o, v::vector
       FROM unnest($1::text[]) WITH ORDINALITY AS u(v, o)`,
      [vectors],
    );
    await ann.driver.exec(`CREATE INDEX ${HNSW_INDEX} ON images USING hnsw (embedding vector_cosine_ops)`);
    const [analysed] = await ann.driver.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stats WHERE tablename = 'images'",
    );
    expect(analysed?.n).toBe(0);
  }, 60_000);
  afterAll(async () => {
    await ann?.close();
    if (annDir) await rm(annDir, { recursive: true, force: true });
  });

  it('finds at least 90% of the exact top 10, best first, in the asking channel only', async () => {
    const exact = new Database(ann.driver, dim, { exactMaxRows: Number.POSITIVE_INFINITY });
    const small = new Set(
      (
        await ann.driver.query<{ id: string }>("SELECT id::text AS id FROM images WHERE channel = 'small'")
      ).map((row) => row.id),
    );
    const r = mulberry32(7);
    const queries = 20;
    const before = await hnswScans(ann);
    let found = 0;
    for (let q = 0; q < queries; q++) {
      const embedding = randomArray(r, dim);
      const hits = await ann.searchImages({ ...big, embedding, k: 10 });
      const truth = await exact.searchImages({ ...big, embedding, k: 10 });
      expect(hits).toHaveLength(10);
      for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
      expect(hits.some((h) => small.has(h.imageId))).toBe(false);
      const truthIds = new Set(truth.map((t) => t.imageId));
      found += hits.filter((h) => truthIds.has(h.imageId)).length;
    }
    // Every approximate search walked the index; the exact reference never did. The table was never
    // analysed before the first search: without the statistics that search takes, the planner would
    // have sorted the channel instead.
    expect(await hnswScans(ann)).toBe(before + queries);
    expect(found / (10 * queries)).toBeGreaterThanOrEqual(0.9);
  });

  it('ranks a channel under exactMaxRows exactly, without the index', async () => {
    const before = await hnswScans(ann);
    const embedding = randomArray(mulberry32(3), dim);
    const hits = await ann.searchImages({ ...big, channel: 'small', embedding, k: 500 });
    expect(hits).toHaveLength(500);
    for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
    expect(await hnswScans(ann)).toBe(before);
  });
});

describe('channel state', () => {
  it('upserts and keeps fields not given', async () => {
    const scope = { platform: 'slack', workspace: 'T9', channel: 'C9' } as const;
    expect(await db.getChannelState(scope)).toBeUndefined();
    const created = await db.setChannelState(scope, { backfillCursor: '1700000000.000100' });
    expect(created).toMatchObject({
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
    const done = await db.setChannelState(scope, { backfillDone: true, backfillCursor: null });
    expect(done).toMatchObject({ indexing: false, backfillCursor: null, backfillDone: true });
  });
});
