// Pieces the database tests share (test/shared/db.test.ts on PGlite, db-postgres-wire.test.ts over
// the Postgres wire protocol).
import { type ChannelScope, type Database, HNSW_INDEX } from '../../src/shared/db/index.js';

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** A logger for the database module that keeps every line, with its level and message. */
export function collectingLogger() {
  const lines: Record<string, unknown>[] = [];
  const at =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push(typeof obj === 'string' ? { level, msg: obj } : { level, ...obj, msg });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Scans of the HNSW index so far (statistics flushed first), to tell which path a search took. */
export async function hnswScans(on: Database): Promise<number> {
  await on.driver.query('SELECT pg_stat_force_next_flush()');
  const [row] = await on.driver.query<{ n: number }>(
    `SELECT idx_scan::int AS n FROM pg_stat_user_indexes WHERE indexrelname = '${HNSW_INDEX}'`,
  );
  return Number(row?.n ?? 0);
}

/** `count` rows written with plain SQL, as an older release (or another tool) would have: no model. */
export async function insertRaw(
  on: Database,
  scope: ChannelScope,
  embedding: ArrayLike<number>,
  count: number,
) {
  await on.driver.query(
    `INSERT INTO images (platform, workspace, channel, message, file, content_hash, embedding)
     SELECT $1, $2, $3, 'm', 'f', 'raw' || g, $4::vector FROM generate_series(1, $5::int) AS g`,
    [scope.platform, scope.workspace, scope.channel, `[${Array.from(embedding).join(',')}]`, count],
  );
}

/** Adds images through Database.upsertImage, each with its own file, link and content hash. */
export function imageAdder() {
  let n = 0;
  return async (on: Database, scope: ChannelScope, embedding: Float32Array, message = 'm') => {
    n++;
    const r = await on.upsertImage({
      ...scope,
      message,
      file: `F${n}`,
      link: `https://example.test/${n}`,
      contentHash: `h${n}`,
      embedding,
    });
    return { ...r, embedding };
  };
}
