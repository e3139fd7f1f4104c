import { describe, expect, it } from 'vitest';
import { startWithUndo, UndoStack } from '../../src/shared/lifecycle.js';
import type { Logger } from '../../src/shared/logger.js';

function recordingLogger(): Logger & { warnings: unknown[] } {
  const warnings: unknown[] = [];
  const noop = () => {};
  return {
    warnings,
    warn: (obj: unknown) => warnings.push(obj),
    info: noop,
    error: noop,
    debug: noop,
  } as never;
}

describe('UndoStack', () => {
  it('releases in reverse order, once, and goes on past a failing step', async () => {
    const logger = recordingLogger();
    const undo = new UndoStack(logger);
    const order: string[] = [];
    undo.push('a', () => order.push('a'));
    undo.push('b', () => {
      throw new Error('b broke');
    });
    await undo.use(
      'c',
      async () => 'resource-c',
      (value) => order.push(value),
    );
    const first = undo.release();
    expect(undo.release()).toBe(first);
    await first;
    expect(order).toEqual(['resource-c', 'a']);
    expect(logger.warnings).toHaveLength(1);
    expect(undo.size).toBe(0);
    expect(() => undo.push('late', () => {})).toThrow(/being released/);
  });

  it('startWithUndo releases what a failed start acquired and rethrows', async () => {
    const released: string[] = [];
    await expect(
      startWithUndo(recordingLogger(), async (undo) => {
        undo.push('connection', () => released.push('connection'));
        undo.push('models', () => released.push('models'));
        throw new Error('database unreachable');
      }),
    ).rejects.toThrow('database unreachable');
    expect(released).toEqual(['models', 'connection']);

    const { value, undo } = await startWithUndo(recordingLogger(), async (u) => {
      u.push('x', () => released.push('x'));
      return 42;
    });
    expect(value).toBe(42);
    expect(released).not.toContain('x');
    await undo.release();
    expect(released.at(-1)).toBe('x');
  });
});
