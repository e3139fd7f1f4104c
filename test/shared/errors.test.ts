import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import {
  asCodedError,
  BadInputError,
  CancelledError,
  CodedError,
  errorCodes,
  InternalError,
  parseSerializedError,
  QuotaExceededError,
  serializeError,
} from '../../src/shared/errors.js';
import { toJobError } from '../../src/shared/jobs.js';

describe('CodedError', () => {
  it('round-trips code, message and details through the failedReason string', () => {
    const original = new QuotaExceededError({ reason: 'hourly', limit: 3, retryAfterSeconds: 42 });
    const back = parseSerializedError(serializeError(original));
    expect(back).toBeInstanceOf(CodedError);
    expect(back.code).toBe('quota_exceeded');
    expect(back.message).toBe('hourly quota of 3 reached; try again in 42 s');
    expect(back.details).toEqual({ reason: 'hourly', limit: 3, retryAfterSeconds: 42 });
  });

  it('reads foreign failedReasons as internal with the raw text', () => {
    const a = parseSerializedError('job stalled more than allowable limit');
    expect(a.code).toBe('internal');
    expect(a.message).toBe('job stalled more than allowable limit');
    expect(parseSerializedError('{"code":"nope","message":"x"}').code).toBe('internal');
    expect(parseSerializedError(undefined).code).toBe('internal');
  });

  it('asCodedError keeps coded errors, unwraps causes, maps aborts and wraps the rest', () => {
    const bad = new BadInputError('no');
    expect(asCodedError(bad)).toBe(bad);
    expect(asCodedError(new Error('wrapped', { cause: bad }))).toBe(bad);
    const abort = new Error('aborted');
    abort.name = 'AbortError';
    expect(asCodedError(abort).code).toBe('cancelled');
    const plain = new Error('boom');
    const wrapped = asCodedError(plain);
    expect(wrapped).toBeInstanceOf(InternalError);
    expect(wrapped.cause).toBe(plain);
    expect(asCodedError('text').message).toBe('text');
  });

  it('only transient codes are retryable', () => {
    const retryable = errorCodes.filter((c) => new CodedError(c, 'x').retryable);
    expect(retryable.sort()).toEqual(['internal', 'timeout', 'unavailable']);
  });

  it('toJobError makes user mistakes unrecoverable and keeps transient errors retryable', () => {
    const unrecoverable = toJobError(new CancelledError());
    expect(unrecoverable).toBeInstanceOf(UnrecoverableError);
    expect(parseSerializedError(unrecoverable.message).code).toBe('cancelled');
    expect(asCodedError(unrecoverable).code).toBe('cancelled');
    const transient = toJobError(new Error('ECONNRESET'));
    expect(transient).not.toBeInstanceOf(UnrecoverableError);
    expect(transient.name).toBe('Error');
    expect(parseSerializedError(transient.message)).toMatchObject({
      code: 'internal',
      message: 'ECONNRESET',
    });
  });
});
