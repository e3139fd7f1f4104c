// Per-channel indexing state: whether a channel's images are indexed, and how far a backfill of
// its history has got (the cursor the platform pages by).
import type { SqlClient } from './driver.js';
import type { ChannelScope } from './images.js';

export interface ChannelState {
  indexing: boolean;
  backfillCursor: string | null;
  backfillDone: boolean;
  updatedAt: Date;
}

export class ChannelStates {
  readonly #sql: SqlClient;

  constructor(sql: SqlClient) {
    this.#sql = sql;
  }

  async get(scope: ChannelScope): Promise<ChannelState | undefined> {
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
  async set(
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
    return (await this.get(scope))!;
  }
}
