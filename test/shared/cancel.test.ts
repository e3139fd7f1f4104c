import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CancelWatcher, isCancelRequested, requestCancel } from '../../src/shared/cancel.js';
import { CancelledError } from '../../src/shared/errors.js';
import { keys, openConnection } from '../../src/shared/queues.js';
import { deletePrefix, testPrefix, useRedis } from '../helpers/redis.js';

const redis = useRedis();
let connection: Redis;
// Another connection stands for another process: the cancel must cross connections, not objects.
let otherProcess: Redis;
let prefix: string;
let watcher: CancelWatcher | undefined;
beforeAll(async () => {
  connection = await openConnection(redis.url, 'worker');
  otherProcess = await openConnection(redis.url);
});
afterEach(async () => {
  await watcher?.close();
  watcher = undefined;
  await deletePrefix(connection, prefix);
});
afterAll(async () => {
  await connection.quit();
  await otherProcess.quit();
});

function newWatcher(pollMs = 60_000): CancelWatcher {
  prefix = testPrefix();
  watcher = new CancelWatcher({ connection, prefix, pollMs });
  return watcher;
}

function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener('abort', () => resolve(signal.reason), { once: true }),
  );
}

describe('CancelWatcher', () => {
  it('aborts a running job when another process cancels it (pub/sub)', async () => {
    const w = newWatcher();
    const handle = await w.watch('imagine', 'job-1');
    const other = await w.watch('imagine', 'job-2');
    expect(handle.signal.aborted).toBe(false);
    await requestCancel(otherProcess, prefix, { queue: 'imagine', jobId: 'job-1' });
    const reason = await aborted(handle.signal);
    expect(reason).toBeInstanceOf(CancelledError);
    expect(other.signal.aborted).toBe(false);
    handle.dispose();
    other.dispose();
    expect(w.watching).toBe(0);
  });

  it('aborts at once a job that was cancelled before it started', async () => {
    const w = newWatcher();
    await requestCancel(otherProcess, prefix, { queue: 'classify', jobId: '7' });
    expect(await isCancelRequested(connection, prefix, { queue: 'classify', jobId: '7' })).toBe(true);
    const handle = await w.watch('classify', '7');
    expect(handle.signal.aborted).toBe(true);
    expect(handle.signal.reason).toMatchObject({ code: 'cancelled' });
    // The same id in another queue is another job.
    expect((await w.watch('imagine', '7')).signal.aborted).toBe(false);
  });

  it('finds a cancel whose message was lost by polling the markers', async () => {
    const w = newWatcher(50);
    const handle = await w.watch('imagine', 'lost');
    // Marker only, no publish: as if the subscriber was reconnecting when the message went out.
    await otherProcess.set(keys.cancel(prefix, 'imagine', 'lost'), '1');
    expect(await aborted(handle.signal)).toBeInstanceOf(CancelledError);
  });

  it('follows a parent signal (BullMQ worker.cancelJob or shutdown) with its reason', async () => {
    const w = newWatcher();
    const parent = new AbortController();
    const handle = await w.watch('imagine', 'p', parent.signal);
    parent.abort('shutdown');
    expect(handle.signal.aborted).toBe(true);
    expect(handle.signal.reason).toBe('shutdown');
  });

  it('sets the marker with a TTL', async () => {
    prefix = testPrefix();
    await requestCancel(otherProcess, prefix, { queue: 'imagine', jobId: 'x' }, 120);
    const ttl = await connection.ttl(keys.cancel(prefix, 'imagine', 'x'));
    expect(ttl).toBeGreaterThan(100);
    expect(ttl).toBeLessThanOrEqual(120);
  });
});
