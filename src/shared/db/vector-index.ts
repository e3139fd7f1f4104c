// The HNSW index over image embeddings, which searches of channels above exactMaxRows walk. A new
// images table gets it while empty (migration 6) and inserts keep it up to date; an older table
// without it is indexed at open while small, otherwise on request (`vqclip db index`) or, on
// Postgres, concurrently in the background: a build over 100k rows takes minutes, and PGlite's single
// connection would hold every query back meanwhile.
import type { SqlClient } from './driver.js';

export const HNSW_INDEX = 'images_embedding_hnsw';

/**
 * The index definition, shared by the migration and by builds: pgvector's defaults (m 16,
 * ef_construction 64) over cosine distance. `tag` is a comment that lets this process find its own
 * build in pg_stat_activity (to cancel it on close).
 */
export function createVectorIndexSql(options: { concurrently?: boolean; tag?: string } = {}): string {
  const tag = options.tag === undefined ? '' : `/* ${options.tag} */ `;
  const concurrently = options.concurrently ? 'CONCURRENTLY ' : '';
  return `${tag}CREATE INDEX ${concurrently}IF NOT EXISTS ${HNSW_INDEX} ON images USING hnsw (embedding vector_cosine_ops)`;
}

/**
 * - `ready`: valid; the planner can use it.
 * - `building`: a concurrent build is running (Postgres; this process or another).
 * - `invalid`: left by an interrupted concurrent build; the planner ignores it, and the next build
 *   drops it first.
 * - `missing`
 */
export type VectorIndexState = 'ready' | 'building' | 'invalid' | 'missing';

export async function vectorIndexState(sql: SqlClient): Promise<VectorIndexState> {
  const [row] = await sql.query<{ valid: boolean; building: boolean }>(
    `SELECT i.indisvalid AS valid,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid) AS building
     FROM pg_index i WHERE i.indexrelid = to_regclass('${HNSW_INDEX}')`,
  );
  if (!row) return 'missing';
  if (row.valid) return 'ready';
  return row.building ? 'building' : 'invalid';
}

/** What `Database.prepareVectorIndex` found or did when the database was opened. */
export type VectorIndexOutcome =
  /** The index was there. */
  | 'ready'
  /** It was missing and the table small: built before the database was handed out. */
  | 'built'
  /** A concurrent build runs (Postgres): searches use the index once it is valid. */
  | 'building'
  /** Missing, and the table too large to build at open: a warning was logged. */
  | 'missing';

/**
 * PGlite has no autovacuum: without column statistics the planner estimates every channel at one
 * row and sorts it, never walking the index. True when the channel column has no statistics, or the
 * table has grown by more than a tenth (autovacuum's default threshold, in pages) since its size was
 * last recorded (by ANALYZE, VACUUM or CREATE INDEX; the last sets the size but takes no statistics).
 */
export async function statisticsStale(sql: SqlClient): Promise<boolean> {
  const [row] = await sql.query<{ stale: boolean }>(
    `SELECT c.reltuples < 0
         OR NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.tablename = 'images' AND s.attname = 'channel')
         OR pg_relation_size(c.oid) > 1.1 * c.relpages::float8 * current_setting('block_size')::int + 65536
       AS stale
     FROM pg_class c WHERE c.oid = to_regclass('images')`,
  );
  return row?.stale === true;
}
