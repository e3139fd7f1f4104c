// Asserts that building a graph fails at build time with a GraphError naming what went wrong.
import { expect } from 'vitest';
import { GraphError } from '../../src/worker/graph/graph.js';

/** Asserts `fn` throws a GraphError whose message contains every one of `parts`. */
export function expectBuildError(fn: () => unknown, ...parts: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(GraphError);
  for (const p of parts) expect((err as Error).message).toContain(p);
}
