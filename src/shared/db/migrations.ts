// Schema migrations, the same SQL for PGlite and Postgres. Applied in order, each recorded in
// schema_migrations, under an advisory lock so that processes starting together do not race.
// The embedding dimension is fixed per database when the images table is created (see below).
import { EmbeddingDimensionError } from '../errors.js';
import type { SqlClient, SqlDriver } from './driver.js';
import { createVectorIndexSql, HNSW_INDEX } from './vector-index.js';

export interface Migration {
  id: number;
  name: string;
  /** Needs the embedding dimension; held back until a process that knows it opens the database. */
  needsEmbeddingDim?: boolean;
  sql(context: { embeddingDim: number }): string;
}

export const migrations: readonly Migration[] = [
  {
    id: 1,
    name: 'meta',
    sql: () => `
      CREATE TABLE meta (
        key text PRIMARY KEY,
        value text NOT NULL
      );`,
  },
  {
    id: 2,
    name: 'generations',
    sql: () => `
      CREATE TABLE generations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        job_id text UNIQUE,
        platform text NOT NULL,
        workspace text,
        channel text,
        user_id text NOT NULL,
        prompt text NOT NULL,
        params jsonb NOT NULL DEFAULT '{}',
        seed bigint,
        status text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
        error_code text,
        timings jsonb,
        result_link text,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
      );
      CREATE INDEX generations_by_user ON generations (platform, user_id, created_at DESC);`,
  },
  {
    id: 3,
    name: 'channel_state',
    sql: () => `
      CREATE TABLE channel_state (
        platform text NOT NULL,
        workspace text NOT NULL,
        channel text NOT NULL,
        indexing boolean NOT NULL DEFAULT true,
        backfill_cursor text,
        backfill_done boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (platform, workspace, channel)
      );`,
  },
  {
    // One dimension per database: an HNSW index needs a fixed-size column, and vectors of two models
    // are not comparable anyway. Real CLIP ViT-B/32 gives 512; the tiny test models give less.
    id: 4,
    name: 'images',
    needsEmbeddingDim: true,
    sql: ({ embeddingDim }) => `
      CREATE TABLE images (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        platform text NOT NULL,
        workspace text NOT NULL,
        channel text NOT NULL,
        message text NOT NULL,
        file text NOT NULL,
        link text,
        content_hash text NOT NULL,
        embedding vector(${embeddingDim}) NOT NULL,
        indexed_at timestamptz NOT NULL DEFAULT now(),
        -- Dedup within a channel; its leading columns also serve the per-channel filter of searches.
        CONSTRAINT images_dedup UNIQUE (platform, workspace, channel, content_hash)
      );
      CREATE INDEX images_by_message ON images (platform, workspace, channel, message);
      INSERT INTO meta (key, value) VALUES ('embedding_dim', '${embeddingDim}');`,
  },
  {
    // A 512-d vector is 2,056 bytes, just over the ~2 KB TOAST threshold: stored out of line, exact
    // scans read ~7x more buffers and ran 1.8x slower (949 -> 536 ms over 100k rows in PGlite).
    id: 5,
    name: 'images-embedding-inline',
    needsEmbeddingDim: true,
    sql: () => 'ALTER TABLE images ALTER COLUMN embedding SET STORAGE PLAIN;',
  },
  {
    // The HNSW index, made while the table is empty: instant, and inserts keep it up to date (~10 ms
    // a 512-d row in PGlite). A table that already holds images is left alone here: building over
    // 100k rows takes minutes and PGlite's single connection would wait for it; openDatabase decides
    // (vector-index.ts). Same parameters as ensureVectorIndex (pgvector's m 16, ef_construction 64).
    id: 6,
    name: 'images-hnsw-when-empty',
    needsEmbeddingDim: true,
    sql: () => `
      DO $$
      BEGIN
        IF to_regclass('${HNSW_INDEX}') IS NULL AND NOT EXISTS (SELECT 1 FROM images) THEN
          ${createVectorIndexSql()};
        END IF;
      END
      $$;`,
  },
  {
    // Which model embedded each row (the worker's fingerprint of its CLIP files): two checkpoints of
    // one architecture share the dimension, so the table alone cannot tell their vectors apart, and a
    // search must rank only its own model's rows. Rows from before this migration are NULL (unknown).
    // The index serves that filter and the count of the other rows.
    id: 7,
    name: 'images-model',
    needsEmbeddingDim: true,
    sql: () => `
      ALTER TABLE images ADD COLUMN model text;
      CREATE INDEX images_by_model ON images (platform, workspace, channel, model);`,
  },
  {
    // The worker's CLIP safety check of each image: searches leave flagged rows out unless asked.
    // A constant default adds the column without rewriting the table (Postgres 11+); rows from
    // before were never checked and count as not flagged until their bytes are indexed again.
    id: 8,
    name: 'images-flagged',
    needsEmbeddingDim: true,
    sql: () => 'ALTER TABLE images ADD COLUMN flagged boolean NOT NULL DEFAULT false;',
  },
];

const MIGRATION_LOCK = 0x76716370; // 'vqcp': any constant shared by every process of the project

export interface MigrateResult {
  applied: number[];
  /** The dimension of the images table; undefined while it has not been created. */
  embeddingDim: number | undefined;
}

/**
 * Applies pending migrations. `embeddingDim` is the dimension of the caller's model: it creates the
 * images table on first use and must match it afterwards (EmbeddingDimensionError otherwise).
 */
export async function migrate(
  driver: SqlDriver,
  options: { embeddingDim?: number | undefined; list?: readonly Migration[] } = {},
): Promise<MigrateResult> {
  const list = options.list ?? migrations;
  const wanted = options.embeddingDim;
  if (wanted !== undefined && (!Number.isInteger(wanted) || wanted < 1 || wanted > 16_000)) {
    throw new RangeError(`embeddingDim must be an integer in [1, 16000], got ${wanted}`);
  }
  return driver.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    // Under the lock: two sessions running CREATE TABLE IF NOT EXISTS at once can still collide on
    // the catalog's unique index (IF NOT EXISTS is not concurrency-safe in Postgres).
    await tx.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        id integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const done = new Set(
      (await tx.query<{ id: number }>('SELECT id FROM schema_migrations')).map((r) => Number(r.id)),
    );
    let stored = await storedDim(tx);
    if (stored !== undefined && wanted !== undefined && stored !== wanted) {
      throw new EmbeddingDimensionError(
        stored,
        wanted,
        'this database was created for another CLIP model; use the model it was made with, or another DATA_DIR / DATABASE_URL',
      );
    }
    const applied: number[] = [];
    for (const migration of [...list].sort((a, b) => a.id - b.id)) {
      if (done.has(migration.id)) continue;
      const embeddingDim = stored ?? wanted;
      // Later migrations wait too: they may depend on this one.
      if (migration.needsEmbeddingDim && embeddingDim === undefined) break;
      await tx.exec(migration.sql({ embeddingDim: embeddingDim ?? 0 }));
      await tx.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [
        migration.id,
        migration.name,
      ]);
      applied.push(migration.id);
      stored = await storedDim(tx);
    }
    return { applied, embeddingDim: stored };
  });
}

async function storedDim(tx: SqlClient): Promise<number | undefined> {
  const [exists] = await tx.query<{ present: boolean }>("SELECT to_regclass('meta') IS NOT NULL AS present");
  if (!exists?.present) return undefined;
  const [row] = await tx.query<{ value: string }>("SELECT value FROM meta WHERE key = 'embedding_dim'");
  return row === undefined ? undefined : Number(row.value);
}
