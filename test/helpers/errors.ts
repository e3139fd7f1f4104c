import type { CodedError } from '../../src/shared/errors.js';

/** The code of the CodedError `p` rejects with, or 'resolved' when it does not reject. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return (error as CodedError).code;
  }
  return 'resolved';
}
