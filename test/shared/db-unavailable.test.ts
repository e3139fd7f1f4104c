// Which database failures read as "the database is away for a moment" (retried, and said as the
// image index being unreachable) and which stay what they are (a mistake in a query is not retried
// into an outage), and the deadline that keeps a search from hanging.
import { describe, expect, it } from 'vitest';
import { asDbError, isTransientDbError, withDeadline } from '../../src/shared/db/unavailable.js';
import { BadInputError, CodedError } from '../../src/shared/errors.js';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('isTransientDbError', () => {
  it.each([
    ['a refused connection', withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
    ['a reset connection', withCode('read ECONNRESET', 'ECONNRESET')],
    [
      'a name that does not resolve yet (a compose service starting)',
      withCode('getaddrinfo EAI_AGAIN db', 'EAI_AGAIN'),
    ],
    ['pg: the server closed the connection', new Error('Connection terminated unexpectedly')],
    ['pg: no connection from the pool in time', new Error('timeout exceeded when trying to connect')],
    [
      'the server shutting down (57P01)',
      withCode('terminating connection due to administrator command', '57P01'),
    ],
    ['the server starting up (57P03)', withCode('the database system is starting up', '57P03')],
    ['too many connections (53300)', withCode('sorry, too many clients already', '53300')],
    [
      'a statement cancelled by statement_timeout (57014)',
      withCode('canceling statement due to statement timeout', '57014'),
    ],
    ['a connection exception (08006)', withCode('connection failure', '08006')],
    ['a deadlock (40P01)', withCode('deadlock detected', '40P01')],
    [
      'several addresses refused (AggregateError)',
      new AggregateError([withCode('x', 'ECONNREFUSED')], 'all failed'),
    ],
  ])('%s is transient', (_what, error) => {
    expect(isTransientDbError(error)).toBe(true);
    const mapped = asDbError(error);
    expect(mapped).toBeInstanceOf(CodedError);
    expect(mapped).toMatchObject({ code: 'unavailable', details: { service: 'database' } });
    expect((mapped as CodedError).retryable).toBe(true);
  });

  it.each([
    ['a syntax error (42601)', withCode('syntax error at or near "SELEC"', '42601')],
    ['a unique violation (23505)', withCode('duplicate key value violates unique constraint', '23505')],
    ['a missing table (42P01)', withCode('relation "imagez" does not exist', '42P01')],
    ['a plain error', new Error('something else')],
    ['not an error at all', 'ECONNREFUSED'],
  ])('%s is not', (_what, error) => {
    expect(isTransientDbError(error)).toBe(false);
    expect(asDbError(error)).toBe(error);
  });

  it('leaves a coded error as it is', () => {
    const coded = new BadInputError('no');
    expect(asDbError(coded)).toBe(coded);
  });
});

describe('withDeadline', () => {
  it('passes a result through, and fails as unavailable (database) once the deadline passes', async () => {
    await expect(withDeadline(Promise.resolve(7), 1_000, 'a read')).resolves.toBe(7);
    const never = new Promise<number>(() => {});
    await expect(withDeadline(never, 20, 'a search')).rejects.toMatchObject({
      code: 'unavailable',
      details: { service: 'database' },
      message: 'the database did not answer a search within 20 ms',
    });
  });
});
