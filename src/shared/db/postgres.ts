// Any Postgres with pgvector, through a pg Pool (DATABASE_URL): for deployments where several
// workers and bots share one database.
import pg from 'pg';
import type { Logger } from '../logger.js';
import type { Row, SqlClient, SqlDriver } from './driver.js';
import { asDbError } from './unavailable.js';

export interface PostgresOptions {
  /** @defaultValue 10 */
  maxConnections?: number;
  /**
   * How long a query waits for a connection (a server that is down or does not answer) before it
   * fails as `unavailable`, instead of waiting forever (pg's default). @defaultValue 5000
   */
  connectTimeoutMs?: number;
  logger?: Logger;
}

const EXTENSION_LOCK = 0x76716376; // 'vqcv': shared by every process of the project

export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<SqlDriver> {
  // The extension is created (and its version read) on a one-off connection before the pool exists.
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  let version: string;
  try {
    // Under an advisory lock: two workers starting together on an empty database would otherwise
    // race CREATE EXTENSION IF NOT EXISTS, which is not concurrency-safe (duplicate key on the catalog).
    await setup.query('BEGIN');
    try {
      await setup.query('SELECT pg_advisory_xact_lock($1)', [EXTENSION_LOCK]);
      await setup.query('CREATE EXTENSION IF NOT EXISTS vector');
      await setup.query('COMMIT');
    } catch (error) {
      await setup.query('ROLLBACK').catch(() => {});
      throw error;
    }
    const { rows } = await setup.query<{ extversion: string }>(
      "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
    );
    version = rows[0]?.extversion ?? '0';
  } finally {
    await setup.end();
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    // A server that vanished without closing the socket (a cut network, a VM paused) is noticed.
    keepAlive: true,
  });
  // An idle client losing its server must not crash the process; the pool replaces it.
  pool.on('error', (error) => options.logger?.warn({ err: error }, 'idle Postgres connection failed'));
  return new PostgresDriver(pool, version);
}

class PostgresClient implements SqlClient {
  constructor(protected readonly target: pg.Pool | pg.PoolClient) {}

  async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      const result = await this.target.query<R>(sql, params as unknown[]);
      return result.rows;
    } catch (error) {
      throw asDbError(error);
    }
  }

  async exec(sql: string): Promise<void> {
    try {
      // Without parameters pg uses the simple protocol, which accepts several statements.
      await this.target.query(sql);
    } catch (error) {
      throw asDbError(error);
    }
  }
}

class PostgresDriver extends PostgresClient implements SqlDriver {
  readonly kind = 'postgres';

  constructor(
    private readonly pool: pg.Pool,
    readonly pgvectorVersion: string,
  ) {
    super(pool);
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw asDbError(error);
    });
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const result = await fn(new PostgresClient(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollback: unknown) => {
        broken = rollback;
      });
      throw asDbError(error);
    } finally {
      // A client whose connection failed is destroyed, not handed to the next query.
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }
}
