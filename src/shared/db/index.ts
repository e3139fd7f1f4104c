// Opens the project's database: Postgres when DATABASE_URL is set, else embedded PGlite in
// `${dataDir}/pglite` (or in memory when no dataDir is given, for tests), migrated on open.
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import { Database, type SearchOptions, type VectorIndexOptions } from './database.js';
import type { SqlDriver } from './driver.js';
import { migrate } from './migrations.js';
import { openPglite } from './pglite.js';
import { openPostgres } from './postgres.js';

export * from './database.js';
export type { SqlClient, SqlDriver } from './driver.js';
export { type Migration, migrate, migrations } from './migrations.js';
export { HNSW_INDEX, type VectorIndexOutcome, type VectorIndexState } from './vector-index.js';

export interface OpenDatabaseOptions {
  /**
   * Length of the CLIP embeddings this process stores or searches with. The first process that gives
   * it creates the images table with that dimension; a different value later fails with
   * `embedding_dimension_mismatch`. Processes that only record generations may leave it out.
   */
  embeddingDim?: number;
  /**
   * Identity of the model that makes the embeddings (the worker's fingerprint of its CLIP files):
   * rows are stamped with it and searches rank only its rows, so that two checkpoints with the same
   * dimension (random and pulled weights) never mix. Left out, nothing is filtered.
   */
  embeddingModel?: string;
  logger?: Logger;
  /** Exact-versus-index choice and HNSW settings of image searches. */
  search?: SearchOptions;
  /** What to do at open when the images table has no HNSW index (`Database.prepareVectorIndex`). */
  vectorIndex?: Omit<VectorIndexOptions, 'logger'>;
}

/**
 * @param config `databaseUrl` (Postgres) wins; otherwise `dataDir` (PGlite files under
 * `${dataDir}/pglite`); neither: PGlite in memory.
 */
export async function openDatabase(
  config: {
    databaseUrl?: string | undefined;
    dataDir?: string | undefined;
    databasePoolSize?: number | undefined;
  },
  options: OpenDatabaseOptions = {},
): Promise<Database> {
  const driver: SqlDriver = config.databaseUrl
    ? await openPostgres(config.databaseUrl, {
        ...(options.logger === undefined ? {} : { logger: options.logger }),
        ...(config.databasePoolSize === undefined ? {} : { maxConnections: config.databasePoolSize }),
      })
    : await openPglite(config.dataDir === undefined ? undefined : join(config.dataDir, 'pglite'));
  try {
    const { applied, embeddingDim } = await migrate(driver, { embeddingDim: options.embeddingDim });
    if (applied.length > 0) options.logger?.info({ applied, kind: driver.kind }, 'database migrated');
    const db = new Database(driver, embeddingDim, options.search, options.embeddingModel);
    if (embeddingDim !== undefined) {
      await db.prepareVectorIndex({
        ...options.vectorIndex,
        ...(options.logger === undefined ? {} : { logger: options.logger }),
      });
    }
    return db;
  } catch (error) {
    await driver.close();
    throw error;
  }
}
