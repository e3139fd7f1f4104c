// Generation history: a row per imagine job (who, where, prompt, parameters, seed, status,
// timings, result link), idempotent per job id so that a re-run finds and updates its row.
import type { Platform } from '../jobs.js';
import type { SqlClient } from './driver.js';

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

export class Generations {
  readonly #sql: SqlClient;

  constructor(sql: SqlClient) {
    this.#sql = sql;
  }

  /** Inserts a generation and returns its id; with a jobId already present, returns that row's id. */
  async insert(g: NewGeneration): Promise<string> {
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
  async update(id: string, patch: GenerationPatch): Promise<boolean> {
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
    if (sets.length === 0) return (await this.get(id)) !== undefined;
    const rows = await this.#sql.query(
      `UPDATE generations SET ${sets.join(', ')} WHERE id = $1::uuid RETURNING id`,
      params,
    );
    return rows.length === 1;
  }

  async get(id: string): Promise<Generation | undefined> {
    const [row] = await this.#sql.query(`${SELECT_GENERATION} WHERE id = $1::uuid`, [id]);
    return row === undefined ? undefined : toGeneration(row);
  }

  async getByJob(jobId: string): Promise<Generation | undefined> {
    const [row] = await this.#sql.query(`${SELECT_GENERATION} WHERE job_id = $1`, [jobId]);
    return row === undefined ? undefined : toGeneration(row);
  }
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
