// The few SQL operations the database module needs, implemented once for embedded PGlite and once
// for Postgres (pg Pool), so that every query and migration is the same text for both.

export type Row = Record<string, unknown>;

export interface SqlClient {
  /** One statement with $1.. parameters. */
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Several statements, no parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface SqlDriver extends SqlClient {
  readonly kind: 'pglite' | 'postgres';
  /** The installed pgvector version, e.g. '0.8.1'. */
  readonly pgvectorVersion: string;
  /** Runs fn in one transaction on one connection; rolls back when it throws. */
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * pgvector 0.8 added iterative index scans: with `strict_order`, an HNSW scan filtered by channel
 * keeps scanning until it has k matching rows instead of returning the few that happened to be in
 * the first ef_search candidates. Without it, a filtered search on a large shared index can miss.
 */
export function supportsIterativeScan(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((p) => Number.parseInt(p, 10));
  return major > 0 || minor >= 8;
}

/** Session-wide, for PGlite's single session. */
export const ITERATIVE_SCAN_SQL = "SET hnsw.iterative_scan = 'strict_order'";

/**
 * Per transaction, for pooled Postgres sessions. A session-wide SET from the pool's 'connect' hook
 * relies on pg queuing a query behind another on one client, which pg 8.23 deprecates and pg 9 drops.
 */
export const ITERATIVE_SCAN_LOCAL_SQL = "SET LOCAL hnsw.iterative_scan = 'strict_order'";
