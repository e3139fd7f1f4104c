// Errors that cross process boundaries: every failure a user can see carries a stable string code
// and JSON-safe details, so a worker can put it in a job's failedReason and a bot can render a
// sentence for it (src/bots/core/render.ts) without ever showing a stack trace.

/** Every code a user-facing failure can carry. Renderers switch on these; never reuse one for a new meaning. */
export type ErrorCode =
  | 'bad_input'
  | 'prompt_too_long'
  | 'not_an_image'
  | 'image_too_large'
  | 'blob_too_large'
  | 'blob_missing'
  | 'quota_exceeded'
  | 'cancelled'
  | 'timeout'
  | 'not_found'
  | 'unavailable'
  | 'model_missing'
  | 'embedding_dimension_mismatch'
  | 'config_invalid'
  | 'host_not_allowed'
  | 'download_failed'
  | 'forbidden'
  | 'missing_scope'
  | 'no_image'
  | 'internal';

export const errorCodes: readonly ErrorCode[] = [
  'bad_input',
  'prompt_too_long',
  'not_an_image',
  'image_too_large',
  'blob_too_large',
  'blob_missing',
  'quota_exceeded',
  'cancelled',
  'timeout',
  'not_found',
  'unavailable',
  'model_missing',
  'embedding_dimension_mismatch',
  'config_invalid',
  'host_not_allowed',
  'download_failed',
  'forbidden',
  'missing_scope',
  'no_image',
  'internal',
];

// Only failures that may pass on their own are retried: a user's mistake, a missing model or a cancel
// would fail the same way again, so retrying only delays the answer.
const retryableCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['timeout', 'unavailable', 'internal']);

/** JSON-safe values only: details travel through Redis and into chat replies. */
export type ErrorDetails = Readonly<Record<string, unknown>>;

/** The wire form of a CodedError (what `serializeError` writes and `parseSerializedError` reads). */
export interface SerializedError {
  code: ErrorCode;
  message: string;
  details: ErrorDetails;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (errorCodes as readonly string[]).includes(value);
}

export class CodedError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  readonly details: ErrorDetails;

  constructor(code: C, message: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CodedError';
    this.code = code;
    this.details = options.details ?? {};
  }

  /** Whether a job failing with this error should be retried with backoff. */
  get retryable(): boolean {
    return retryableCodes.has(this.code);
  }

  toJSON(): SerializedError {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export class BadInputError extends CodedError<'bad_input'> {
  constructor(message: string, details: ErrorDetails = {}) {
    super('bad_input', message, { details });
  }
}

export class PromptTooLongError extends CodedError<'prompt_too_long'> {
  constructor(length: number, max: number) {
    super('prompt_too_long', `prompt has ${length} characters, the limit is ${max}`, {
      details: { length, max },
    });
  }
}

export class NotAnImageError extends CodedError<'not_an_image'> {
  constructor(message = 'the file is not an image we can read', details: ErrorDetails = {}) {
    super('not_an_image', message, { details });
  }
}

export class ImageTooLargeError extends CodedError<'image_too_large'> {
  constructor(details: { bytes?: number; maxBytes?: number; pixels?: number; maxPixels?: number }) {
    super('image_too_large', 'the image is too large', { details });
  }
}

export class BlobTooLargeError extends CodedError<'blob_too_large'> {
  constructor(bytes: number, maxBytes: number) {
    super('blob_too_large', `blob of ${bytes} bytes exceeds the limit of ${maxBytes}`, {
      details: { bytes, maxBytes },
    });
  }
}

export class BlobMissingError extends CodedError<'blob_missing'> {
  constructor(key: string) {
    super('blob_missing', `blob ${key} is missing or expired`, { details: { key } });
  }
}

export type QuotaReason = 'concurrent' | 'hourly';

export class QuotaExceededError extends CodedError<'quota_exceeded'> {
  /** `budget`: which quota (imagine, or the light jobs'), see quota.ts. */
  constructor(details: { budget?: string; reason: QuotaReason; limit: number; retryAfterSeconds?: number }) {
    const when =
      details.retryAfterSeconds === undefined
        ? 'when one of the running jobs finishes'
        : `in ${details.retryAfterSeconds} s`;
    super('quota_exceeded', `${details.reason} quota of ${details.limit} reached; try again ${when}`, {
      details,
    });
  }
}

export class CancelledError extends CodedError<'cancelled'> {
  constructor(message = 'the job was cancelled') {
    super('cancelled', message);
  }
}

export class TimeoutError extends CodedError<'timeout'> {
  constructor(message: string, details: ErrorDetails = {}) {
    super('timeout', message, { details });
  }
}

export class NotFoundError extends CodedError<'not_found'> {
  constructor(message: string, details: ErrorDetails = {}) {
    super('not_found', message, { details });
  }
}

export class UnavailableError extends CodedError<'unavailable'> {
  constructor(message: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super('unavailable', message, options);
  }
}

export class ModelMissingError extends CodedError<'model_missing'> {
  constructor(model: string, dir: string) {
    super('model_missing', `model ${model} not found in ${dir}`, { details: { model, dir } });
  }
}

export class EmbeddingDimensionError extends CodedError<'embedding_dimension_mismatch'> {
  constructor(expected: number, actual: number, hint: string) {
    super('embedding_dimension_mismatch', `expected ${expected}-d embeddings, got ${actual}-d: ${hint}`, {
      details: { expected, actual },
    });
  }
}

export class ConfigError extends CodedError<'config_invalid'> {
  constructor(problems: readonly { variable: string; message: string }[]) {
    const lines = problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n');
    super('config_invalid', `invalid configuration:\n${lines}`, { details: { problems } });
  }
}

/** A download from a host the platform's allow-list does not hold (never fetch what a user typed). */
export class HostNotAllowedError extends CodedError<'host_not_allowed'> {
  constructor(host: string, platform?: string) {
    super('host_not_allowed', `downloads from ${host} are not allowed`, {
      details: { host, ...(platform === undefined ? {} : { platform }) },
    });
  }
}

/** A download that failed on the way (status, timeout, connection): `reason` says which. */
export class DownloadFailedError extends CodedError<'download_failed'> {
  constructor(reason: string, details: ErrorDetails = {}, cause?: unknown) {
    super('download_failed', `download failed: ${reason}`, { details: { reason, ...details }, cause });
  }
}

/** The person may not do this (cancel someone else's job, change settings without the permission). */
export class ForbiddenError extends CodedError<'forbidden'> {
  constructor(reason: 'not_your_job' | 'admin_only' | string, details: ErrorDetails = {}) {
    super('forbidden', `not allowed: ${reason}`, { details: { reason, ...details } });
  }
}

/** The platform refused for want of an OAuth scope or permission the app was not given. */
export class MissingScopeError extends CodedError<'missing_scope'> {
  constructor(scope: string, details: ErrorDetails = {}) {
    super('missing_scope', `the app lacks the ${scope} scope`, { details: { scope, ...details } });
  }
}

/** The request needs an image and none was found where it looked (the message, the channel). */
export class NoImageError extends CodedError<'no_image'> {
  constructor(where: 'message' | 'channel' | 'request' = 'request') {
    super('no_image', `no image in the ${where}`, { details: { where } });
  }
}

export class InternalError extends CodedError<'internal'> {
  constructor(message: string, cause?: unknown) {
    super('internal', message, { cause });
  }
}

/**
 * Turns anything thrown into a CodedError. A CodedError (also one wrapped as `cause`, e.g. in
 * BullMQ's UnrecoverableError) is returned as it is; an AbortError becomes `cancelled` (or the
 * CodedError given as the abort reason); everything else is `internal`, keeping the original as cause.
 */
export function asCodedError(error: unknown): CodedError {
  if (error instanceof CodedError) return error;
  if (error instanceof Error) {
    if (error.cause instanceof CodedError) return error.cause;
    if (error.name === 'AbortError') return new CancelledError();
    return new InternalError(error.message, error);
  }
  return new InternalError(typeof error === 'string' ? error : 'unknown error', error);
}

/** The JSON string a worker stores as a job's failedReason. */
export function serializeError(error: unknown): string {
  return JSON.stringify(asCodedError(error).toJSON());
}

/**
 * Reads back a failedReason. Reasons that are not our JSON (a crash inside BullMQ, a stalled job
 * over its limit) become `internal` with the raw text as message.
 */
export function parseSerializedError(reason: string | undefined | null): CodedError {
  if (!reason) return new InternalError('the job failed without a reason');
  try {
    const parsed: unknown = JSON.parse(reason);
    if (typeof parsed === 'object' && parsed !== null) {
      const { code, message, details } = parsed as Record<string, unknown>;
      if (isErrorCode(code) && typeof message === 'string') {
        const safeDetails = typeof details === 'object' && details !== null ? (details as ErrorDetails) : {};
        return new CodedError(code, message, { details: safeDetails });
      }
    }
  } catch {
    // Not JSON: fall through.
  }
  return new InternalError(reason);
}

/**
 * A CodedError that also keeps its module's finer reason (a weights file's `missing_tensor`, a
 * pickle's `forbidden_global`). `code` picks the sentence a user sees and whether a job is retried;
 * `reason`, also put in `details` so that it survives serialisation, says which failure it was, for
 * logs and for code that handles one case. A module maps each of its reasons to one code in a table.
 */
export class ReasonedError<R extends string = string, C extends ErrorCode = ErrorCode> extends CodedError<C> {
  readonly reason: R;

  constructor(
    code: C,
    reason: R,
    message: string,
    options: { details?: ErrorDetails; cause?: unknown } = {},
  ) {
    super(code, message, { ...options, details: { ...options.details, reason } });
    this.name = 'ReasonedError';
    this.reason = reason;
  }
}
