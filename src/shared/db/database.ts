// The project's durable records behind one object over one SQL driver: generation history
// (generations.ts), indexed chat images and their per-channel searches (images.ts), the HNSW index's
// lifecycle (vector-index.ts) and per-channel indexing state (channel-state.ts). This file only
// composes them, so that callers keep one `Database` and its flat API.
import { type ChannelState, ChannelStates } from './channel-state.js';
import type { SqlDriver } from './driver.js';
import { type Generation, type GenerationPatch, Generations, type NewGeneration } from './generations.js';
import {
  type ChannelScope,
  DefaultSearchOptions,
  type ImageHit,
  type ImageQuery,
  Images,
  type NewImage,
  type SearchOptions,
  type UpsertedImage,
} from './images.js';
import {
  VectorIndex,
  type VectorIndexOptions,
  type VectorIndexOutcome,
  type VectorIndexState,
} from './vector-index.js';

export type { ChannelState } from './channel-state.js';
export type { Generation, GenerationPatch, GenerationStatus, NewGeneration } from './generations.js';
export {
  type ChannelScope,
  DefaultSearchOptions,
  type ImageHit,
  type ImageQuery,
  type NewImage,
  type SearchOptions,
  type UpsertedImage,
} from './images.js';
export { DefaultVectorIndexOptions, type VectorIndexOptions } from './vector-index.js';

export interface DatabaseInfo {
  kind: SqlDriver['kind'];
  pgvectorVersion: string;
  embeddingDim: number | undefined;
  embeddingModel: string | undefined;
}

export class Database {
  readonly #sql: SqlDriver;
  readonly embeddingDim: number | undefined;
  /**
   * Identity of the model whose embeddings this process writes and searches with (the worker's
   * fingerprint of its CLIP files). Rows are stamped with it and searches rank only its rows;
   * undefined (tools, tests): rows are written unstamped and searches rank every row.
   */
  readonly embeddingModel: string | undefined;
  readonly #generations: Generations;
  readonly #images: Images;
  readonly #index: VectorIndex;
  readonly #channels: ChannelStates;

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
    const settings = { ...DefaultSearchOptions, ...search };
    const { exactMaxRows, efSearch, indexBuildMemory } = settings;
    if (!(Number.isInteger(exactMaxRows) || exactMaxRows === Number.POSITIVE_INFINITY) || exactMaxRows < 0)
      throw new RangeError(`exactMaxRows must be an integer >= 0 or Infinity, got ${exactMaxRows}`);
    // pgvector's bounds for hnsw.ef_search.
    if (!Number.isInteger(efSearch) || efSearch < 1 || efSearch > 1000)
      throw new RangeError(`efSearch must be an integer in [1, 1000], got ${efSearch}`);
    // Interpolated into SET: a size like '512MB' only.
    if (!/^\d+\s*(kB|MB|GB)$/.test(indexBuildMemory))
      throw new RangeError(`indexBuildMemory must be a size like '512MB', got ${indexBuildMemory}`);
    this.#generations = new Generations(driver);
    this.#images = new Images(driver, embeddingDim, embeddingModel, settings);
    this.#index = new VectorIndex(driver, { indexBuildMemory, exactMaxRows }, () =>
      this.#images.requireTable(),
    );
    this.#channels = new ChannelStates(driver);
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

  // --- generations (generations.ts) ------------------------------------------------------------

  /** Inserts a generation and returns its id; with a jobId already present, returns that row's id. */
  insertGeneration(g: NewGeneration): Promise<string> {
    return this.#generations.insert(g);
  }

  /** Applies the given fields; false when no generation has this id. */
  updateGeneration(id: string, patch: GenerationPatch): Promise<boolean> {
    return this.#generations.update(id, patch);
  }

  getGeneration(id: string): Promise<Generation | undefined> {
    return this.#generations.get(id);
  }

  getGenerationByJob(jobId: string): Promise<Generation | undefined> {
    return this.#generations.getByJob(jobId);
  }

  // --- images (images.ts) ----------------------------------------------------------------------

  /** Indexes an image, deduplicated per channel by content hash (Images.upsert). */
  upsertImage(image: NewImage): Promise<UpsertedImage> {
    return this.#images.upsert(image);
  }

  /** Deletes an image; with a scope, only one of that channel (Images.delete). */
  deleteImage(imageId: string, scope?: ChannelScope): Promise<boolean> {
    return this.#images.delete(imageId, scope);
  }

  /** Removes the images of a chat message, or one file of it; returns how many. */
  deleteImagesOfMessage(scope: ChannelScope & { message: string; file?: string }): Promise<number> {
    return this.#images.deleteOfMessage(scope);
  }

  /** The k images of one channel closest to the embedding by cosine, best first (Images.search). */
  searchImages(query: ImageQuery): Promise<ImageHit[]> {
    return this.#images.search(query);
  }

  /** Images of a channel that searches leave out because another or an unknown model embedded them. */
  countStaleImages(scope: ChannelScope): Promise<number> {
    return this.#images.countStale(scope);
  }

  /** Images per embedding model over the whole table (null: unknown, from before migration 7). */
  countImagesByModel(): Promise<{ model: string | null; images: number }[]> {
    return this.#images.countByModel();
  }

  countImages(scope?: ChannelScope): Promise<number> {
    return this.#images.count(scope);
  }

  // --- the HNSW index (vector-index.ts) --------------------------------------------------------

  /** Builds the index when missing and the table holds at least `minRows` images; whether it is ready. */
  ensureVectorIndex(options: { minRows?: number } = {}): Promise<boolean> {
    return this.#index.ensure(options);
  }

  /** Whether the HNSW index exists and is valid (a failed concurrent build leaves an invalid one). */
  hasVectorIndex(): Promise<boolean> {
    return this.#index.ready();
  }

  vectorIndexState(): Promise<VectorIndexState> {
    return this.#index.state();
  }

  /** What opening the database does about a missing index (VectorIndex.prepare). */
  prepareVectorIndex(options: VectorIndexOptions = {}): Promise<VectorIndexOutcome> {
    return this.#index.prepare(options);
  }

  // --- channel indexing state (channel-state.ts) -----------------------------------------------

  getChannelState(scope: ChannelScope): Promise<ChannelState | undefined> {
    return this.#channels.get(scope);
  }

  /** Creates or updates a channel's state; fields left out keep their value (or default). */
  setChannelState(
    scope: ChannelScope,
    patch: { indexing?: boolean; backfillCursor?: string | null; backfillDone?: boolean },
  ): Promise<ChannelState> {
    return this.#channels.set(scope, patch);
  }

  async close(): Promise<void> {
    await this.#index.stop();
    await this.#sql.close();
  }
}
