// What every processor function receives besides its models and job data: where blobs live, the
// database, and the signal that cancels it. The BullMQ glue (runtime/start-worker.ts) fills it per
// job; the CLI fills it once with in-process stand-ins.
import type { Database } from '../../shared/db/index.js';
import type { Blobs } from './blobs.js';

export interface RunContext {
  blobs: Blobs;
  /** Aborts the job (cancel, shutdown); checked before each expensive stage and between steps. */
  signal?: AbortSignal;
}

export interface DbRunContext extends RunContext {
  db: Database;
}
