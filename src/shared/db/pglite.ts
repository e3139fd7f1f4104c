// Embedded Postgres (PGlite, WebAssembly) with pgvector: the default database, kept in a folder of
// DATA_DIR, so a newcomer needs no database server. One connection, so queries run one at a time.
import { mkdir } from 'node:fs/promises';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import {
  ITERATIVE_SCAN_SQL,
  type Row,
  type SqlClient,
  type SqlDriver,
  supportsIterativeScan,
} from './driver.js';

/** Opens (creating if needed) a PGlite database in `dir`, or in memory when `dir` is undefined. */
export async function openPglite(dir: string | undefined): Promise<SqlDriver> {
  const vector = await loadVectorExtension();
  if (dir !== undefined) await mkdir(dir, { recursive: true });
  const db = await PGlite.create({ ...(dir === undefined ? {} : { dataDir: dir }), extensions: { vector } });
  try {
    await db.exec('CREATE EXTENSION IF NOT EXISTS vector');
    const version = await extensionVersion(db);
    // A single session for the whole process, so session settings hold for every query.
    if (supportsIterativeScan(version)) await db.exec(ITERATIVE_SCAN_SQL);
    return new PgliteDriver(db, version);
  } catch (error) {
    await db.close();
    throw error;
  }
}

async function loadVectorExtension() {
  try {
    const { vector } = await import('@electric-sql/pglite-pgvector');
    return vector;
  } catch (error) {
    throw new Error(
      'pgvector for PGlite is missing: npm install @electric-sql/pglite-pgvector (or set DATABASE_URL to a Postgres with pgvector)',
      { cause: error },
    );
  }
}

async function extensionVersion(db: PGlite): Promise<string> {
  const { rows } = await db.query<{ extversion: string }>(
    "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
  );
  return rows[0]?.extversion ?? '0';
}

class PgliteClient implements SqlClient {
  constructor(protected readonly target: PGlite | Transaction) {}

  async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    const result = await this.target.query<R>(sql, params as unknown[]);
    return result.rows;
  }

  async exec(sql: string): Promise<void> {
    await this.target.exec(sql);
  }
}

class PgliteDriver extends PgliteClient implements SqlDriver {
  readonly kind = 'pglite';

  constructor(
    private readonly db: PGlite,
    readonly pgvectorVersion: string,
  ) {
    super(db);
  }

  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) => fn(new PgliteClient(tx)));
  }

  async close(): Promise<void> {
    if (!this.db.closed) await this.db.close();
  }
}
