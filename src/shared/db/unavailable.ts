// Which database failures are the database being away for a moment (a restart, a dropped
// connection, a full connection table, a statement cancelled by a timeout) rather than a mistake in
// a query: those become `unavailable` with `service: 'database'`, which jobs retry with backoff and
// a person reads as "the image index is not reachable right now", never as a stack trace.
import { CodedError, UnavailableError } from '../errors.js';

// Node socket errors on the way to the server.
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// SQLSTATEs that pass on their own (PostgreSQL appendix A): class 08 connection exceptions, the
// server shutting down or starting (57P01-57P03), too many connections (53300), a statement
// cancelled by statement_timeout (57014), serialization failures and deadlocks (40001, 40P01).
const TRANSIENT_SQLSTATE = /^(08...|57P0[123]|53300|57014|40001|40P01)$/;

// pg's own messages when a connection dies or cannot be had in time (they carry no code).
const PG_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection closed|not queryable/i;

export function isTransientDbError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (SOCKET_CODES.has(code) || TRANSIENT_SQLSTATE.test(code))) return true;
  if (error instanceof AggregateError) return error.errors.some(isTransientDbError);
  return PG_MESSAGES.test(error.message);
}

/** The error a database call throws: `unavailable` (database) for transient failures, else as is. */
export function asDbError(error: unknown): unknown {
  if (error instanceof CodedError || !isTransientDbError(error)) return error;
  return databaseUnavailable('the database is not reachable', error);
}

export function databaseUnavailable(message: string, cause?: unknown): UnavailableError {
  return new UnavailableError(message, { details: { service: 'database' }, cause });
}

/**
 * `promise`, or `unavailable` (database) when it has not settled within `ms`: a search must answer
 * while the database is away or busy (PGlite runs one statement at a time, and a long one holds the
 * rest), not hang. The statement itself is not cancelled: a read left behind does no harm.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(databaseUnavailable(`the database did not answer ${what} within ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
