// The HNSW index over image embeddings, which searches of channels above exactMaxRows walk. A new
// images table gets it while empty (migration 6) and inserts keep it up to date; an older table
// without it is indexed at open while small, otherwise on request (`vqclip db index`) or, on
// Postgres, concurrently in the background: a build over 100k rows takes minutes, and PGlite's single
// connection would hold every query back meanwhile.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { SqlClient, SqlDriver } from './driver.js';

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

/**
 * What opening a database does about a missing HNSW index (`Database.prepareVectorIndex`).
 */
export interface VectorIndexOptions {
  /**
   * A missing index is built at open when the table holds at most this many images; a larger table
   * is left to `vqclip db index` with a warning (PGlite: a build blocks its one connection for
   * minutes), or built concurrently in the background on Postgres. -1: never build at open.
   * @defaultValue 5000
   */
  autoBuildMaxRows?: number;
  logger?: Logger;
}

export const DefaultVectorIndexOptions = {
  autoBuildMaxRows: 5000,
} as const satisfies Omit<Required<VectorIndexOptions>, 'logger'>;

/**
 * The index's lifecycle on one database: its state, a build when asked (`vqclip db index`), the
 * decision at open, and the background build on Postgres that close() cancels.
 */
export class VectorIndex {
  readonly #sql: SqlDriver;
  readonly #settings: { readonly indexBuildMemory: string; readonly exactMaxRows: number };
  readonly #requireTable: () => void;
  /** A concurrent index build started by prepare (Postgres), cancelled by stop(). */
  #background: Promise<void> | undefined;
  /** Marks this process's index builds in pg_stat_activity. */
  readonly #buildTag = `vqclip-index-build:${randomUUID()}`;

  /**
   * @param settings `indexBuildMemory` (checked by the caller: it is interpolated into SET) and
   * `exactMaxRows`, which the warning about a missing index quotes.
   * @param requireTable throws while the images table does not exist.
   */
  constructor(
    sql: SqlDriver,
    settings: { readonly indexBuildMemory: string; readonly exactMaxRows: number },
    requireTable: () => void,
  ) {
    this.#sql = sql;
    this.#settings = settings;
    this.#requireTable = requireTable;
  }

  /**
   * Builds the HNSW cosine index (when missing) once the table holds at least `minRows` images, and
   * waits for it. A new table has had it since it was created (inserts maintain it: ~10 ms a 512-d
   * row in PGlite, bench/README.md); this is for a table made before that, and it takes minutes over
   * 100k rows, during which PGlite answers nothing else. Returns whether the index is ready after.
   */
  async ensure({ minRows = 10_000 }: { minRows?: number } = {}): Promise<boolean> {
    this.#requireTable();
    const state = await this.state();
    if (state === 'ready') return true;
    // Another session's concurrent build (Postgres): a second one would only wait for it and fail.
    if (state === 'building') return false;
    const [row] = await this.#sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM (SELECT 1 FROM images LIMIT $1) AS enough',
      [Math.max(1, minRows)],
    );
    if (Number(row?.n ?? 0) < minRows) return false;
    // CONCURRENTLY keeps inserts flowing on a shared Postgres; PGlite has a single session anyway.
    const postgres = this.#sql.kind === 'postgres';
    if (state === 'invalid') {
      await this.#sql.exec(`DROP INDEX ${postgres ? 'CONCURRENTLY ' : ''}IF EXISTS ${HNSW_INDEX}`);
    }
    const create = createVectorIndexSql({ concurrently: postgres, tag: this.#buildTag });
    if (this.#sql.kind === 'pglite') {
      // Its one session: a session SET reaches the build, and RESET puts the default back.
      await this.#sql.exec(`SET maintenance_work_mem = '${this.#settings.indexBuildMemory}'`);
      try {
        await this.#sql.exec(create);
      } finally {
        await this.#sql.exec('RESET maintenance_work_mem');
      }
      // PGlite has no autovacuum: fresh statistics let the planner weigh the index against a scan,
      // and the visibility map lets it count a channel from the btree alone.
      await this.#sql.exec('VACUUM ANALYZE images');
    } else {
      // A pooled Postgres: a SET on one pooled client may not reach the one that builds, and
      // CONCURRENTLY refuses a transaction block (SET LOCAL), so the server's maintenance_work_mem
      // applies: raise it in postgresql.conf before indexing a large table.
      await this.#sql.exec(create);
    }
    return (await this.state()) === 'ready';
  }

  /** Whether the HNSW index exists and is valid (a failed concurrent build leaves an invalid one). */
  async ready(): Promise<boolean> {
    return (await this.state()) === 'ready';
  }

  async state(): Promise<VectorIndexState> {
    return vectorIndexState(this.#sql);
  }

  /**
   * What opening the database does about the HNSW index: nothing when it is there; builds it when
   * the table is small (seconds); otherwise on Postgres starts a concurrent build in the background
   * (reads and writes go on; close() cancels it), and on PGlite logs a warning with the command
   * that builds it, since a build there would hold every query back for minutes.
   */
  async prepare(options: VectorIndexOptions = {}): Promise<VectorIndexOutcome> {
    const { autoBuildMaxRows, logger } = { ...DefaultVectorIndexOptions, ...options };
    if (!Number.isInteger(autoBuildMaxRows) || autoBuildMaxRows < -1)
      throw new RangeError(`autoBuildMaxRows must be an integer >= -1, got ${autoBuildMaxRows}`);
    this.#requireTable();
    const state = await this.state();
    if (state === 'ready') return 'ready';
    if (autoBuildMaxRows === -1) return state === 'building' ? 'building' : 'missing';
    if (state === 'building') {
      logger?.info({ index: HNSW_INDEX }, 'another process is building the HNSW index of image embeddings');
      return 'building';
    }
    const [row] = await this.#sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM (SELECT 1 FROM images LIMIT $1) AS upto',
      [autoBuildMaxRows + 1],
    );
    const rows = Number(row?.n ?? 0);
    if (rows <= autoBuildMaxRows) {
      const started = performance.now();
      try {
        // False: another process's concurrent build got there first (Postgres).
        if (!(await this.ensure({ minRows: 0 }))) return 'building';
      } catch (err) {
        // E.g. two workers starting together on Postgres, both building: the database still works.
        logger?.warn({ err, index: HNSW_INDEX }, 'building the HNSW index at open failed');
        return (await this.state()) === 'ready' ? 'ready' : 'missing';
      }
      logger?.info(
        { index: HNSW_INDEX, rows, ms: Math.round(performance.now() - started) },
        'built the HNSW index of image embeddings',
      );
      return 'built';
    }
    const atLeast = autoBuildMaxRows + 1;
    if (this.#sql.kind === 'postgres') {
      const started = performance.now();
      logger?.info(
        { index: HNSW_INDEX, rows: `>= ${atLeast}` },
        'building the HNSW index of image embeddings concurrently in the background; until it is ready, searches scan large channels exactly',
      );
      this.#background = this.ensure({ minRows: 0 }).then(
        (ready) =>
          logger?.info(
            { index: HNSW_INDEX, ready, s: Math.round((performance.now() - started) / 1000) },
            ready ? 'HNSW index ready' : 'another process is building the HNSW index',
          ),
        (err: unknown) =>
          logger?.warn(
            { err, index: HNSW_INDEX },
            'building the HNSW index in the background failed (or was cancelled at shutdown); it is retried at the next start, or run `npx vqclip db index`',
          ),
      );
      return 'building';
    }
    logger?.warn(
      { index: HNSW_INDEX, rows: `>= ${atLeast}` },
      `the images table has no HNSW index: searches of channels over ${this.#settings.exactMaxRows} images scan them exactly (~0.5 s at 100k). ` +
        'Build it with `npx vqclip db index` while nothing else has DATA_DIR open (minutes: 7-25 min for 100k images in PGlite); new images keep it up to date afterwards',
    );
    return 'missing';
  }

  /** Cancels a background build and waits for it to end (before the driver closes). */
  async stop(): Promise<void> {
    if (this.#background) {
      // A pool waits for its busy clients before it ends: stop our build rather than wait minutes.
      // The invalid index it leaves is dropped and rebuilt at the next start.
      await this.#sql
        .query(
          `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
           WHERE pid <> pg_backend_pid() AND strpos(query, $1) > 0`,
          [this.#buildTag],
        )
        .catch(() => {});
      await this.#background;
    }
  }
}
