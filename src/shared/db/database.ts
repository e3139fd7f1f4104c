// The project's durable records: generation history, indexed chat images with their CLIP embeddings
// (searched by cosine within one channel, never across), and per-channel indexing state.
import { randomUUID } from 'node:crypto';
import { BadInputError, EmbeddingDimensionError, InternalError } from '../errors.js';
import type { Platform } from '../jobs.js';
import type { Logger } from '../logger.js';
import { ITERATIVE_SCAN_LOCAL_SQL, type SqlClient, type SqlDriver, supportsIterativeScan } from './driver.js';
import {
  createVectorIndexSql,
  HNSW_INDEX,
  statisticsStale,
  type VectorIndexOutcome,
  type VectorIndexState,
  vectorIndexState,
} from './vector-index.js';

export type GenerationStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface NewGeneration {
  /** Makes the insert idempotent: a re-run job updates its row instead of adding one. */
  jobId?: string;
  platform: Platform;
  workspace?: string;
  channel?: string;
  userId: string;
  prompt: string;
  params?: Record<string, unknown>;
  seed?: number;
  status?: GenerationStatus;
}

export interface GenerationPatch {
  status?: GenerationStatus;
  seed?: number;
  params?: Record<string, unknown>;
  timings?: Record<string, number>;
  resultLink?: string;
  errorCode?: string;
  /** Sets finished_at to now. */
  finished?: boolean;
}

export interface Generation {
  id: string;
  jobId: string | null;
  platform: Platform;
  workspace: string | null;
  channel: string | null;
  userId: string;
  prompt: string;
  params: Record<string, unknown>;
  seed: number | null;
  status: GenerationStatus;
  errorCode: string | null;
  timings: Record<string, number> | null;
  resultLink: string | null;
  createdAt: Date;
  finishedAt: Date | null;
}

/** Where an image lives; searches never leave one scope. */
export interface ChannelScope {
  platform: Platform;
  workspace: string;
  channel: string;
}

export interface NewImage extends ChannelScope {
  message: string;
  file: string;
  link?: string;
  /** Hash of the image bytes (or pixels): the same image posted twice in a channel is indexed once. */
  contentHash: string;
  embedding: ArrayLike<number>;
  /**
   * The safety check's verdict; left out (check off): a new row is not flagged and an existing one
   * keeps its flag.
   */
  flagged?: boolean;
}

export interface UpsertedImage {
  imageId: string;
  /** The channel already held these bytes, embedded by this model: nothing changed. */
  duplicate: boolean;
  /**
   * The channel held these bytes embedded by another (or an unknown) model: the row now has this
   * model's embedding, same id, message and file.
   */
  reindexed: boolean;
  /** The row's flag after the write: searches leave it out unless they include flagged images. */
  flagged: boolean;
}

export interface ImageHit {
  imageId: string;
  link: string | null;
  message: string;
  file: string;
  /** Cosine similarity in [-1, 1]. */
  score: number;
  /** The safety check flagged it (only in searches that include flagged images). */
  flagged: boolean;
  /** The stored embedding, when the search asked for it (`withEmbeddings`). */
  embedding?: Float32Array;
}

/** An image search within one channel. */
export interface ImageQuery extends ChannelScope {
  embedding: ArrayLike<number>;
  /** 1 to 1000. */
  k: number;
  /** Also rank images the safety check flagged. @defaultValue false */
  includeFlagged?: boolean;
  /** Leave out the channel's image with these bytes (a search by that very image). */
  excludeContentHash?: string;
  /** Return each hit's stored embedding (e.g. to fold near-duplicates). @defaultValue false */
  withEmbeddings?: boolean;
}

export interface ChannelState {
  indexing: boolean;
  backfillCursor: string | null;
  backfillDone: boolean;
  updatedAt: Date;
}

export interface DatabaseInfo {
  kind: SqlDriver['kind'];
  pgvectorVersion: string;
  embeddingDim: number | undefined;
  embeddingModel: string | undefined;
}

/** How image searches pick between an exact scan of the channel and the HNSW index. */
export interface SearchOptions {
  /**
   * Channels with at most this many images are ranked exactly (their rows through the channel btree,
   * then a top-k sort), whether or not the HNSW index exists: exact, and faster than the index up to
   * a few thousand rows. Larger channels are left to the planner, which walks the index.
   * `Infinity`: every search exact, without counting the channel first.
   * @defaultValue 2000
   */
  exactMaxRows?: number;
  /**
   * Candidates kept by an HNSW search (`hnsw.ef_search`): recall against speed. pgvector's default
   * is 40; 100 measured recall@10 0.89 instead of 0.83 on clustered 512-d rows at 100k, with p50 still
   * well under 50 ms in PGlite (bench/README.md).
   * @defaultValue 100
   */
  efSearch?: number;
  /**
   * Memory for building the HNSW index (`maintenance_work_mem` during CREATE INDEX). A graph that
   * does not fit is built on disk, which took 41 min instead of minutes for 100k 512-d rows in PGlite.
   * @defaultValue '512MB'
   */
  indexBuildMemory?: string;
}

export const DefaultSearchOptions = {
  exactMaxRows: 2000,
  efSearch: 100,
  indexBuildMemory: '512MB',
} as const satisfies Required<SearchOptions>;

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

/** How often a PGlite search over a large channel checks that the planner's statistics are fresh. */
const STATISTICS_CHECK_MS = 60_000;

/** A channel seen above exactMaxRows is trusted to stay there this long before it is counted again. */
const LARGE_CHANNEL_TTL_MS = 60_000;
const LARGE_CHANNEL_CACHE_MAX = 10_000;

export class Database {
  readonly #sql: SqlDriver;
  readonly embeddingDim: number | undefined;
  /**
   * Identity of the model whose embeddings this process writes and searches with (the worker's
   * fingerprint of its CLIP files). Rows are stamped with it and searches rank only its rows;
   * undefined (tools, tests): rows are written unstamped and searches rank every row.
   */
  readonly embeddingModel: string | undefined;
  readonly #search: Required<SearchOptions>;
  /** Channel key -> when it was last counted above exactMaxRows (counting a large one costs ms). */
  readonly #largeChannels = new Map<string, number>();
  #statisticsCheckedAt = 0;
  /** A concurrent index build started by prepareVectorIndex (Postgres), cancelled by close(). */
  #background: Promise<void> | undefined;
  /** Marks this process's index builds in pg_stat_activity. */
  readonly #buildTag = `vqclip-index-build:${randomUUID()}`;

  constructor(
    driver: SqlDriver,
    embeddingDim: number | undefined,
    search: SearchOptions = {},
    embeddingModel?: string,
  ) {
    this.#sql = driver;
    this.embeddingDim = embeddingDim;
    if (embeddingModel !== undefined && (embeddingModel.length === 0 || embeddingModel.length > 200))
      throw new RangeError('embeddingModel must have 1 to 200 characters');
    this.embeddingModel = embeddingModel;
    this.#search = { ...DefaultSearchOptions, ...search };
    const { exactMaxRows, efSearch, indexBuildMemory } = this.#search;
    if (!(Number.isInteger(exactMaxRows) || exactMaxRows === Number.POSITIVE_INFINITY) || exactMaxRows < 0)
      throw new RangeError(`exactMaxRows must be an integer >= 0 or Infinity, got ${exactMaxRows}`);
    // pgvector's bounds for hnsw.ef_search.
    if (!Number.isInteger(efSearch) || efSearch < 1 || efSearch > 1000)
      throw new RangeError(`efSearch must be an integer in [1, 1000], got ${efSearch}`);
    // Interpolated into SET: a size like '512MB' only.
    if (!/^\d+\s*(kB|MB|GB)$/.test(indexBuildMemory))
      throw new RangeError(`indexBuildMemory must be a size like '512MB', got ${indexBuildMemory}`);
  }

  get info(): DatabaseInfo {
    return {
      kind: this.#sql.kind,
      pgvectorVersion: this.#sql.pgvectorVersion,
      embeddingDim: this.embeddingDim,
      embeddingModel: this.embeddingModel,
    };
  }

  /** Escape hatch for tools and tests; application code uses the typed operations. */
  get driver(): SqlDriver {
    return this.#sql;
  }

  // --- generations ---------------------------------------------------------------------------

  /** Inserts a generation and returns its id; with a jobId already present, returns that row's id. */
  async insertGeneration(g: NewGeneration): Promise<string> {
    const rows = await this.#sql.query<{ id: string }>(
      `INSERT INTO generations (job_id, platform, workspace, channel, user_id, prompt, params, seed, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
       ON CONFLICT (job_id) DO UPDATE SET job_id = EXCLUDED.job_id
       RETURNING id::text AS id`,
      [
        g.jobId ?? null,
        g.platform,
        g.workspace ?? null,
        g.channel ?? null,
        g.userId,
        g.prompt,
        JSON.stringify(g.params ?? {}),
        g.seed ?? null,
        g.status ?? 'queued',
      ],
    );
    return rows[0]!.id;
  }

  /** Applies the given fields; false when no generation has this id. */
  async updateGeneration(id: string, patch: GenerationPatch): Promise<boolean> {
    const sets: string[] = [];
    const params: unknown[] = [id];
    const set = (column: string, value: unknown, cast = '') => {
      params.push(value);
      sets.push(`${column} = $${params.length}${cast}`);
    };
    if (patch.status !== undefined) set('status', patch.status);
    if (patch.seed !== undefined) set('seed', patch.seed);
    if (patch.params !== undefined) set('params', JSON.stringify(patch.params), '::jsonb');
    if (patch.timings !== undefined) set('timings', JSON.stringify(patch.timings), '::jsonb');
    if (patch.resultLink !== undefined) set('result_link', patch.resultLink);
    if (patch.errorCode !== undefined) set('error_code', patch.errorCode);
    if (patch.finished) sets.push('finished_at = now()');
    if (sets.length === 0) return (await this.getGeneration(id)) !== undefined;
    const rows = await this.#sql.query(
      `UPDATE generations SET ${sets.join(', ')} WHERE id = $1::uuid RETURNING id`,
      params,
    );
    return rows.length === 1;
  }

  async getGeneration(id: string): Promise<Generation | undefined> {
    const [row] = await this.#sql.query(`${SELECT_GENERATION} WHERE id = $1::uuid`, [id]);
    return row === undefined ? undefined : toGeneration(row);
  }

  async getGenerationByJob(jobId: string): Promise<Generation | undefined> {
    const [row] = await this.#sql.query(`${SELECT_GENERATION} WHERE job_id = $1`, [jobId]);
    return row === undefined ? undefined : toGeneration(row);
  }

  // --- images ----------------------------------------------------------------------------------

  /**
   * Indexes an image. When the channel already holds an image with the same content hash, embedded
   * by this model, nothing changes and the existing id is returned with `duplicate: true`; embedded
   * by another or an unknown model, that row takes the new embedding (`reindexed: true`): posting or
   * uploading the same bytes again is how a stale row is re-indexed. A given `flagged` is stored in
   * every case (the latest check wins, also on a duplicate).
   */
  async upsertImage(image: NewImage): Promise<UpsertedImage> {
    const vector = this.#vectorLiteral(image.embedding);
    const flagged = image.flagged ?? null;
    // xmax is 0 on a row this statement inserted, and set on one it updated.
    const written = await this.#sql.query<{ id: string; inserted: boolean; flagged: boolean }>(
      `INSERT INTO images (platform, workspace, channel, message, file, link, content_hash, embedding, model, flagged)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::vector, $9, COALESCE($10::boolean, false))
       ON CONFLICT ON CONSTRAINT images_dedup DO UPDATE
         SET embedding = EXCLUDED.embedding, model = EXCLUDED.model, indexed_at = now(),
             flagged = COALESCE($10::boolean, images.flagged)
         WHERE EXCLUDED.model IS NOT NULL AND images.model IS DISTINCT FROM EXCLUDED.model
       RETURNING id::text AS id, (xmax = 0) AS inserted, flagged`,
      [
        image.platform,
        image.workspace,
        image.channel,
        image.message,
        image.file,
        image.link ?? null,
        image.contentHash,
        vector,
        this.embeddingModel ?? null,
        flagged,
      ],
    );
    const row = written[0];
    if (row) return { imageId: row.id, duplicate: false, reindexed: !row.inserted, flagged: row.flagged };
    const [existing] = await this.#sql.query<{ id: string; flagged: boolean }>(
      `SELECT id::text AS id, flagged FROM images
       WHERE platform = $1 AND workspace = $2 AND channel = $3 AND content_hash = $4`,
      [image.platform, image.workspace, image.channel, image.contentHash],
    );
    // Only possible if the duplicate was deleted between the two statements.
    if (!existing) throw new InternalError('image vanished during dedup');
    // A separate write, and only on a change: a re-post of unchanged bytes stays a read. This is
    // how rows from before the check (or from another threshold or prompt set) get their flag.
    if (flagged !== null && existing.flagged !== flagged) {
      await this.#sql.query('UPDATE images SET flagged = $2 WHERE id = $1::uuid', [existing.id, flagged]);
    }
    return { imageId: existing.id, duplicate: true, reindexed: false, flagged: flagged ?? existing.flagged };
  }

  /**
   * Deletes an image; false when there is none with this id. With a scope, only an image of that
   * channel is deleted (an id from another channel reports false), which is what the delete-image job
   * uses so that a channel cannot remove another's images.
   */
  async deleteImage(imageId: string, scope?: ChannelScope): Promise<boolean> {
    this.#requireImages();
    const rows = scope
      ? await this.#sql.query(
          `DELETE FROM images WHERE id = $1::uuid AND platform = $2 AND workspace = $3 AND channel = $4
           RETURNING id`,
          [imageId, scope.platform, scope.workspace, scope.channel],
        )
      : await this.#sql.query('DELETE FROM images WHERE id = $1::uuid RETURNING id', [imageId]);
    return rows.length === 1;
  }

  /**
   * Removes the images of a chat message (when the message is deleted), or only one file of it (an
   * edit removed that attachment); returns how many.
   */
  async deleteImagesOfMessage(scope: ChannelScope & { message: string; file?: string }): Promise<number> {
    this.#requireImages();
    const params = [scope.platform, scope.workspace, scope.channel, scope.message];
    const byFile = scope.file === undefined ? '' : ' AND file = $5';
    if (scope.file !== undefined) params.push(scope.file);
    const rows = await this.#sql.query(
      `DELETE FROM images WHERE platform = $1 AND workspace = $2 AND channel = $3 AND message = $4${byFile}
       RETURNING id`,
      params,
    );
    return rows.length;
  }

  /**
   * The k images of one channel closest to `embedding` by cosine, best first. Channels of at most
   * `exactMaxRows` images are ranked exactly; larger ones through the HNSW index when it exists
   * (approximate: see bench/README.md for the measured recall), with pgvector's iterative scan so
   * that the channel filter cannot starve the result. Flagged images are left out unless
   * `includeFlagged`.
   */
  async searchImages(query: ImageQuery): Promise<ImageHit[]> {
    if (!Number.isInteger(query.k) || query.k < 1 || query.k > 1000)
      throw new RangeError('k must be in [1, 1000]');
    const vector = this.#vectorLiteral(query.embedding);
    const scope = [query.platform, query.workspace, query.channel];
    const model = this.embeddingModel;
    const key = scope.join('\u0000');
    const { exactMaxRows, efSearch } = this.#search;
    // One transaction: SET LOCAL holds for the search only, on the pooled connection that runs it.
    const rows = await this.#sql.transaction(async (tx) => {
      const seen = this.#largeChannels.get(key);
      let large = seen !== undefined && Date.now() - seen < LARGE_CHANNEL_TTL_MS;
      if (!large && exactMaxRows !== Number.POSITIVE_INFINITY) {
        // The rows that would be ranked: this model's.
        const [probe] = await tx.query<{ indexed: boolean; n: number }>(
          `SELECT to_regclass('${HNSW_INDEX}') IS NOT NULL AS indexed,
             (SELECT count(*)::int FROM (SELECT 1 FROM images
               WHERE platform = $1 AND workspace = $2 AND channel = $3${model === undefined ? '' : ' AND model = $5'}
               LIMIT $4) AS upto) AS n`,
          [...scope, exactMaxRows + 1, ...(model === undefined ? [] : [model])],
        );
        large = probe?.indexed === true && Number(probe.n) > exactMaxRows;
        if (large) {
          this.#rememberLarge(key);
          await this.#refreshStatistics(tx);
        } else {
          this.#largeChannels.delete(key);
        }
      }
      if (large) {
        // ef_search is validated in the constructor. strict_order: pgvector >= 0.8 (see driver.ts).
        await tx.exec(
          `SET LOCAL hnsw.ef_search = ${efSearch}; ${supportsIterativeScan(this.#sql.pgvectorVersion) ? ITERATIVE_SCAN_LOCAL_SQL : ''}`,
        );
      }
      const { sql, params } = searchSql(large, {
        vector,
        scope,
        k: query.k,
        model,
        includeFlagged: query.includeFlagged === true,
        excludeContentHash: query.excludeContentHash,
        withEmbeddings: query.withEmbeddings === true,
      });
      return tx.query<SearchRow>(sql, params);
    });
    return rows.map((r) => ({
      imageId: r.id,
      link: r.link,
      message: r.message,
      file: r.file,
      score: 1 - Number(r.d),
      flagged: r.flagged,
      ...(r.e === undefined ? {} : { embedding: parseVector(r.e) }),
    }));
  }

  /**
   * PGlite only (Postgres has autovacuum): analyses the table when it has grown since the planner's
   * statistics were taken, at most once a minute. Without statistics the planner takes every channel
   * for one row and sorts it instead of walking the index (a new table is never analysed otherwise).
   * Only the filter columns: sampling is the cost, and the embedding's statistics serve no plan.
   */
  async #refreshStatistics(tx: SqlClient): Promise<void> {
    if (this.#sql.kind !== 'pglite') return;
    const now = Date.now();
    if (now - this.#statisticsCheckedAt < STATISTICS_CHECK_MS) return;
    this.#statisticsCheckedAt = now;
    if (await statisticsStale(tx)) await tx.exec('ANALYZE images (platform, workspace, channel, model)');
  }

  #rememberLarge(key: string): void {
    // A bounded memo: forgetting costs one count, so dropping everything when full is enough.
    if (this.#largeChannels.size >= LARGE_CHANNEL_CACHE_MAX) this.#largeChannels.clear();
    this.#largeChannels.set(key, Date.now());
  }

  /**
   * Images of a channel that searches leave out because another model (or, for rows older than
   * migration 7, an unknown one) embedded them; 0 when this process has no embeddingModel. Ranges
   * instead of `<>` so that the images_by_model btree answers it without reading the channel.
   */
  async countStaleImages(scope: ChannelScope): Promise<number> {
    this.#requireImages();
    if (this.embeddingModel === undefined) return 0;
    const [row] = await this.#sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM images
       WHERE platform = $1 AND workspace = $2 AND channel = $3
         AND (model IS NULL OR model < $4 OR model > $4)`,
      [scope.platform, scope.workspace, scope.channel, this.embeddingModel],
    );
    return Number(row?.n ?? 0);
  }

  /** Images per embedding model over the whole table (null: unknown, from before migration 7). */
  async countImagesByModel(): Promise<{ model: string | null; images: number }[]> {
    this.#requireImages();
    const rows = await this.#sql.query<{ model: string | null; n: number }>(
      'SELECT model, count(*)::int AS n FROM images GROUP BY model ORDER BY count(*) DESC, model',
    );
    return rows.map((r) => ({ model: r.model, images: Number(r.n) }));
  }

  async countImages(scope?: ChannelScope): Promise<number> {
    this.#requireImages();
    const [row] = scope
      ? await this.#sql.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM images WHERE platform = $1 AND workspace = $2 AND channel = $3',
          [scope.platform, scope.workspace, scope.channel],
        )
      : await this.#sql.query<{ n: number }>('SELECT count(*)::int AS n FROM images');
    return Number(row?.n ?? 0);
  }

  /**
   * Builds the HNSW cosine index (when missing) once the table holds at least `minRows` images, and
   * waits for it. A new table has had it since it was created (inserts maintain it: ~10 ms a 512-d
   * row in PGlite, bench/README.md); this is for a table made before that, and it takes minutes over
   * 100k rows, during which PGlite answers nothing else. Returns whether the index is ready after.
   */
  async ensureVectorIndex({ minRows = 10_000 }: { minRows?: number } = {}): Promise<boolean> {
    this.#requireImages();
    const state = await this.vectorIndexState();
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
      await this.#sql.exec(`SET maintenance_work_mem = '${this.#search.indexBuildMemory}'`);
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
    return (await this.vectorIndexState()) === 'ready';
  }

  /** Whether the HNSW index exists and is valid (a failed concurrent build leaves an invalid one). */
  async hasVectorIndex(): Promise<boolean> {
    return (await this.vectorIndexState()) === 'ready';
  }

  async vectorIndexState(): Promise<VectorIndexState> {
    return vectorIndexState(this.#sql);
  }

  /**
   * What opening the database does about the HNSW index: nothing when it is there; builds it when
   * the table is small (seconds); otherwise on Postgres starts a concurrent build in the background
   * (reads and writes go on; close() cancels it), and on PGlite logs a warning with the command
   * that builds it, since a build there would hold every query back for minutes.
   */
  async prepareVectorIndex(options: VectorIndexOptions = {}): Promise<VectorIndexOutcome> {
    const { autoBuildMaxRows, logger } = { ...DefaultVectorIndexOptions, ...options };
    if (!Number.isInteger(autoBuildMaxRows) || autoBuildMaxRows < -1)
      throw new RangeError(`autoBuildMaxRows must be an integer >= -1, got ${autoBuildMaxRows}`);
    this.#requireImages();
    const state = await this.vectorIndexState();
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
        if (!(await this.ensureVectorIndex({ minRows: 0 }))) return 'building';
      } catch (err) {
        // E.g. two workers starting together on Postgres, both building: the database still works.
        logger?.warn({ err, index: HNSW_INDEX }, 'building the HNSW index at open failed');
        return (await this.vectorIndexState()) === 'ready' ? 'ready' : 'missing';
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
      this.#background = this.ensureVectorIndex({ minRows: 0 }).then(
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
      `the images table has no HNSW index: searches of channels over ${this.#search.exactMaxRows} images scan them exactly (~0.5 s at 100k). ` +
        'Build it with `npx vqclip db index` while nothing else has DATA_DIR open (minutes: 7-25 min for 100k images in PGlite); new images keep it up to date afterwards',
    );
    return 'missing';
  }

  // --- channel indexing state ------------------------------------------------------------------

  async getChannelState(scope: ChannelScope): Promise<ChannelState | undefined> {
    const [row] = await this.#sql.query<{
      indexing: boolean;
      backfill_cursor: string | null;
      backfill_done: boolean;
      updated_at: Date;
    }>(
      `SELECT indexing, backfill_cursor, backfill_done, updated_at FROM channel_state
       WHERE platform = $1 AND workspace = $2 AND channel = $3`,
      [scope.platform, scope.workspace, scope.channel],
    );
    if (!row) return undefined;
    return {
      indexing: row.indexing,
      backfillCursor: row.backfill_cursor,
      backfillDone: row.backfill_done,
      updatedAt: new Date(row.updated_at),
    };
  }

  /** Creates or updates a channel's state; fields left out keep their value (or default). */
  async setChannelState(
    scope: ChannelScope,
    patch: { indexing?: boolean; backfillCursor?: string | null; backfillDone?: boolean },
  ): Promise<ChannelState> {
    await this.#sql.query(
      `INSERT INTO channel_state (platform, workspace, channel, indexing, backfill_cursor, backfill_done)
       VALUES ($1, $2, $3, COALESCE($4::boolean, true), $5::text, COALESCE($6::boolean, false))
       ON CONFLICT (platform, workspace, channel) DO UPDATE SET
         indexing = COALESCE($4::boolean, channel_state.indexing),
         backfill_cursor = CASE WHEN $7::boolean THEN $5::text ELSE channel_state.backfill_cursor END,
         backfill_done = COALESCE($6::boolean, channel_state.backfill_done),
         updated_at = now()`,
      [
        scope.platform,
        scope.workspace,
        scope.channel,
        patch.indexing ?? null,
        patch.backfillCursor ?? null,
        patch.backfillDone ?? null,
        patch.backfillCursor !== undefined,
      ],
    );
    return (await this.getChannelState(scope))!;
  }

  async close(): Promise<void> {
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
    await this.#sql.close();
  }

  #requireImages(): number {
    if (this.embeddingDim === undefined) {
      throw new InternalError(
        "the images table does not exist yet: open the database with the CLIP model's embeddingDim first",
      );
    }
    return this.embeddingDim;
  }

  // pgvector's text form; JS number formatting round-trips float32 values exactly.
  #vectorLiteral(embedding: ArrayLike<number>): string {
    const dim = this.#requireImages();
    if (embedding.length !== dim) {
      throw new EmbeddingDimensionError(dim, embedding.length, 'the embedding does not match this database');
    }
    let norm = 0;
    const parts = new Array<string>(embedding.length);
    for (let i = 0; i < embedding.length; i++) {
      const v = embedding[i]!;
      if (!Number.isFinite(v)) throw new BadInputError('embedding has a non-finite value', { index: i });
      norm += v * v;
      parts[i] = String(v);
    }
    // Cosine distance to a zero vector is undefined (pgvector returns NaN and would sort it anywhere).
    if (norm === 0) throw new BadInputError('embedding is all zeros');
    return `[${parts.join(',')}]`;
  }
}

type SearchRow = {
  id: string;
  link: string | null;
  message: string;
  file: string;
  d: number;
  flagged: boolean;
  /** pgvector's text form, with withEmbeddings. */
  e?: string;
};

/**
 * $1 query vector, $2..$4 channel, $5 k, then the optional filters (model, content hash).
 * Exact: `+ 0` makes the sort key an expression the HNSW index cannot supply, so the planner reads
 * the channel's rows and sorts them (a top-k). Approximate: the plain form the index matches; the
 * planner still picks a scan when it estimates the channel small (its statistics can be staler than
 * our count). The extra filters are plain row conditions: the iterative index scan keeps going
 * until k rows pass them.
 */
function searchSql(
  approximate: boolean,
  q: {
    vector: string;
    scope: readonly string[];
    k: number;
    model: string | undefined;
    includeFlagged: boolean;
    excludeContentHash: string | undefined;
    withEmbeddings: boolean;
  },
): { sql: string; params: unknown[] } {
  const params: unknown[] = [q.vector, ...q.scope, q.k];
  const where = ['platform = $2', 'workspace = $3', 'channel = $4'];
  if (q.model !== undefined) {
    params.push(q.model);
    where.push(`model = $${params.length}`);
  }
  if (!q.includeFlagged) where.push('NOT flagged');
  if (q.excludeContentHash !== undefined) {
    params.push(q.excludeContentHash);
    where.push(`content_hash <> $${params.length}`);
  }
  const sql = `
  SELECT id::text AS id, link, message, file, (embedding <=> $1::vector)::float8 AS d, flagged${q.withEmbeddings ? ', embedding::text AS e' : ''}
  FROM images
  WHERE ${where.join(' AND ')}
  ORDER BY ${approximate ? 'embedding <=> $1::vector' : '(embedding <=> $1::vector) + 0'}
  LIMIT $5`;
  return { sql, params };
}

/** pgvector's text form `[1,2.5,...]` back to numbers. */
function parseVector(text: string): Float32Array {
  const body = text.trim().slice(1, -1);
  return body.length === 0 ? new Float32Array(0) : Float32Array.from(body.split(','), Number);
}

const SELECT_GENERATION = `
  SELECT id::text AS id, job_id, platform, workspace, channel, user_id, prompt, params,
         seed::float8 AS seed, status, error_code, timings, result_link, created_at, finished_at
  FROM generations`;

function toGeneration(row: Record<string, unknown>): Generation {
  return {
    id: row.id as string,
    jobId: (row.job_id as string | null) ?? null,
    platform: row.platform as Platform,
    workspace: (row.workspace as string | null) ?? null,
    channel: (row.channel as string | null) ?? null,
    userId: row.user_id as string,
    prompt: row.prompt as string,
    params: (row.params as Record<string, unknown>) ?? {},
    seed: row.seed === null || row.seed === undefined ? null : Number(row.seed),
    status: row.status as GenerationStatus,
    errorCode: (row.error_code as string | null) ?? null,
    timings: (row.timings as Record<string, number> | null) ?? null,
    resultLink: (row.result_link as string | null) ?? null,
    createdAt: new Date(row.created_at as string | Date),
    finishedAt: row.finished_at ? new Date(row.finished_at as string | Date) : null,
  };
}
