// Indexed chat images: a row per image of a channel (deduplicated by a hash of its bytes) with its
// CLIP embedding, the model that made it and the safety flag; cosine searches within one channel,
// never across: exact for small channels, through the HNSW index for large ones.
import { BadInputError, EmbeddingDimensionError, InternalError } from '../errors.js';
import type { Platform } from '../jobs.js';
import { ITERATIVE_SCAN_LOCAL_SQL, type SqlClient, type SqlDriver, supportsIterativeScan } from './driver.js';
import { HNSW_INDEX, statisticsStale } from './vector-index.js';

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

/** How often a PGlite search over a large channel checks that the planner's statistics are fresh. */
const STATISTICS_CHECK_MS = 60_000;

/** A channel seen above exactMaxRows is trusted to stay there this long before it is counted again. */
const LARGE_CHANNEL_TTL_MS = 60_000;
const LARGE_CHANNEL_CACHE_MAX = 10_000;

export class Images {
  readonly #sql: SqlDriver;
  readonly #dim: number | undefined;
  readonly #model: string | undefined;
  readonly #search: Required<SearchOptions>;
  /** Channel key -> when it was last counted above exactMaxRows (counting a large one costs ms). */
  readonly #largeChannels = new Map<string, number>();
  #statisticsCheckedAt = 0;

  /** `embeddingModel` and `search` as Database checked them. */
  constructor(
    sql: SqlDriver,
    embeddingDim: number | undefined,
    embeddingModel: string | undefined,
    search: Required<SearchOptions>,
  ) {
    this.#sql = sql;
    this.#dim = embeddingDim;
    this.#model = embeddingModel;
    this.#search = search;
  }

  /**
   * Indexes an image. When the channel already holds an image with the same content hash, embedded
   * by this model, nothing changes and the existing id is returned with `duplicate: true`; embedded
   * by another or an unknown model, that row takes the new embedding (`reindexed: true`): posting or
   * uploading the same bytes again is how a stale row is re-indexed. A given `flagged` is stored in
   * every case (the latest check wins, also on a duplicate).
   */
  async upsert(image: NewImage): Promise<UpsertedImage> {
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
        this.#model ?? null,
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
  async delete(imageId: string, scope?: ChannelScope): Promise<boolean> {
    this.requireTable();
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
  async deleteOfMessage(scope: ChannelScope & { message: string; file?: string }): Promise<number> {
    this.requireTable();
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
  async search(query: ImageQuery): Promise<ImageHit[]> {
    if (!Number.isInteger(query.k) || query.k < 1 || query.k > 1000)
      throw new RangeError('k must be in [1, 1000]');
    const vector = this.#vectorLiteral(query.embedding);
    const scope = [query.platform, query.workspace, query.channel];
    const model = this.#model;
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
  async countStale(scope: ChannelScope): Promise<number> {
    this.requireTable();
    if (this.#model === undefined) return 0;
    const [row] = await this.#sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM images
       WHERE platform = $1 AND workspace = $2 AND channel = $3
         AND (model IS NULL OR model < $4 OR model > $4)`,
      [scope.platform, scope.workspace, scope.channel, this.#model],
    );
    return Number(row?.n ?? 0);
  }

  /** Images per embedding model over the whole table (null: unknown, from before migration 7). */
  async countByModel(): Promise<{ model: string | null; images: number }[]> {
    this.requireTable();
    const rows = await this.#sql.query<{ model: string | null; n: number }>(
      'SELECT model, count(*)::int AS n FROM images GROUP BY model ORDER BY count(*) DESC, model',
    );
    return rows.map((r) => ({ model: r.model, images: Number(r.n) }));
  }

  async count(scope?: ChannelScope): Promise<number> {
    this.requireTable();
    const [row] = scope
      ? await this.#sql.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM images WHERE platform = $1 AND workspace = $2 AND channel = $3',
          [scope.platform, scope.workspace, scope.channel],
        )
      : await this.#sql.query<{ n: number }>('SELECT count(*)::int AS n FROM images');
    return Number(row?.n ?? 0);
  }

  /** The embedding dimension; throws while the images table does not exist (no dimension yet). */
  requireTable(): number {
    if (this.#dim === undefined) {
      throw new InternalError(
        "the images table does not exist yet: open the database with the CLIP model's embeddingDim first",
      );
    }
    return this.#dim;
  }

  // pgvector's text form; JS number formatting round-trips float32 values exactly.
  #vectorLiteral(embedding: ArrayLike<number>): string {
    const dim = this.requireTable();
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
