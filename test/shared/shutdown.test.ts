import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { CodedError } from '../../src/shared/errors.js';
import type { Logger } from '../../src/shared/logger.js';
import { type Closer, onShutdown, runMain } from '../../src/shared/shutdown.js';

function recorder() {
  const lines: string[] = [];
  const log =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push(`${level}: ${typeof obj === 'string' ? obj : msg}`);
    };
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  const exits: (number | undefined)[] = [];
  let resolveExit!: () => void;
  const exited = new Promise<void>((r) => {
    resolveExit = r;
  });
  const exit = (code?: number) => {
    exits.push(code);
    resolveExit();
  };
  return { lines, logger, exits, exited, exit, emitter: new EventEmitter() };
}

const never = () => new Promise<never>(() => {});

describe('onShutdown', () => {
  it('runs the closers in order on the first signal, past a failing one, then exits', async () => {
    const r = recorder();
    const order: string[] = [];
    const closers: Closer[] = [
      async () => {
        order.push('playground');
      },
      async () => {
        order.push('worker');
        throw new Error('boom');
      },
    ];
    const seen: [string, boolean][] = [];
    const handle = onShutdown(closers, r.logger, {
      emitter: r.emitter,
      exit: r.exit,
      onSignal: (signal, first) => seen.push([signal, first]),
      onStopped: () => order.push('(stopped)'),
    });
    // Acquired after the handler was installed: still closed.
    closers.push(async () => {
      order.push('redis');
    });
    expect(handle.stopping).toBe(false);
    r.emitter.emit('SIGTERM', 'SIGTERM');
    expect(handle.stopping).toBe(true);
    await r.exited;
    expect(order).toEqual(['playground', 'worker', 'redis', '(stopped)']);
    expect(r.exits).toEqual([undefined]); // a clean close keeps process.exitCode
    expect(seen).toEqual([['SIGTERM', true]]);
    expect(r.lines).toEqual(['info: shutting down', 'warn: shutdown step failed', 'info: stopped']);
    handle.dispose();
  });

  it('exits with 1 at once on a second signal while closing, and only once', async () => {
    const r = recorder();
    let finish!: () => void;
    const closers: Closer[] = [() => new Promise<void>((resolve) => (finish = resolve))];
    const seen: [string, boolean][] = [];
    const handle = onShutdown(closers, r.logger, {
      emitter: r.emitter,
      exit: r.exit,
      onSignal: (signal, first) => seen.push([signal, first]),
    });
    r.emitter.emit('SIGINT', 'SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.exits).toEqual([]);
    r.emitter.emit('SIGINT', 'SIGINT');
    expect(r.exits).toEqual([1]);
    expect(seen).toEqual([
      ['SIGINT', true],
      ['SIGINT', false],
    ]);
    finish();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.exits).toEqual([1]);
    expect(r.lines).toContain('warn: second signal: exiting now');
    handle.dispose();
  });

  it('exits with 1 when the closers take longer than the timeout', async () => {
    const r = recorder();
    const handle = onShutdown([never], r.logger, { emitter: r.emitter, exit: r.exit, timeoutMs: 50 });
    const started = performance.now();
    r.emitter.emit('SIGTERM', 'SIGTERM');
    await r.exited;
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(r.exits).toEqual([1]);
    expect(r.lines).toContain('error: shutdown timed out: exiting now');
    handle.dispose();
  });

  it('listens only until disposed, and only to its signals', () => {
    const r = recorder();
    const handle = onShutdown([], r.logger, { emitter: r.emitter, exit: r.exit, signals: ['SIGTERM'] });
    expect(r.emitter.listenerCount('SIGTERM')).toBe(1);
    expect(r.emitter.listenerCount('SIGINT')).toBe(0);
    handle.dispose();
    expect(r.emitter.listenerCount('SIGTERM')).toBe(0);
    r.emitter.emit('SIGTERM', 'SIGTERM');
    expect(handle.stopping).toBe(false);
  });
});

describe('runMain', () => {
  it("prints a failed main's message (the stack only for internal errors) and sets exit code 1", async () => {
    const printed: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((line: unknown) => {
      printed.push(String(line));
    });
    const before = process.exitCode;
    try {
      runMain('worker', async () => {
        throw new CodedError('config_invalid', 'REDIS_URL must be a redis:// URL');
      });
      await vi.waitFor(() => expect(process.exitCode).toBe(1));
      expect(printed).toEqual(['worker: REDIS_URL must be a redis:// URL']);
      printed.length = 0;
      process.exitCode = before;
      runMain('npm start', async () => {
        throw new Error('boom');
      });
      await vi.waitFor(() => expect(process.exitCode).toBe(1));
      expect(printed[0]).toMatch(/^npm start: /);
      expect(printed[1]).toMatch(/^Error: boom\n\s+at /);
    } finally {
      spy.mockRestore();
      process.exitCode = before;
    }
  });
});
