import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ConfigError } from '../../../src/shared/errors.js';
import { lockDirectory } from '../../../src/worker/runtime/dir-lock.js';
import { loadWorkerEnv } from '../../../src/worker/runtime/worker-env.js';
import { tempDir } from '../../helpers/worker-process.js';

describe('loadWorkerEnv', () => {
  it('has defaults for everything', () => {
    expect(loadWorkerEnv({})).toEqual({
      queues: ['imagine', 'classify', 'embed-image', 'search', 'delete-image'],
      concurrency: { imagine: 1, classify: 16, 'embed-image': 16, search: 4, 'delete-image': 4 },
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      maxStalledCount: 1,
      microBatch: 16,
      batchWaitMs: 5,
      imagineTimeBudgetMs: 1_200_000,
      shutdownGraceMs: 10_000,
      previewTtlSeconds: 3600,
      warmup: true,
    });
  });

  it('reads the variables, treating empty as unset', () => {
    const env = loadWorkerEnv({
      WORKER_QUEUES: ' classify, search ,classify',
      WORKER_CLASSIFY_CONCURRENCY: '32',
      WORKER_LOCK_DURATION_MS: '',
      WORKER_WARMUP: 'false',
      WORKER_MICRO_BATCH: '1',
    });
    expect(env.queues).toEqual(['classify', 'search']);
    expect(env.concurrency.classify).toBe(32);
    expect(env.lockDurationMs).toBe(30_000);
    expect(env.warmup).toBe(false);
    expect(env.microBatch).toBe(1);
  });

  it('lists every bad variable at once', () => {
    let error: ConfigError | undefined;
    try {
      loadWorkerEnv({ WORKER_QUEUES: 'imagine,paint', WORKER_BATCH_WAIT_MS: '-1', WORKER_WARMUP: 'maybe' });
    } catch (e) {
      error = e as ConfigError;
    }
    expect(error?.code).toBe('config_invalid');
    const variables = ((error?.details.problems ?? []) as { variable: string }[])
      .map((p) => p.variable)
      .sort();
    expect(variables).toEqual(['WORKER_BATCH_WAIT_MS', 'WORKER_QUEUES', 'WORKER_WARMUP']);
  });
});

describe('lockDirectory', () => {
  it('keeps a second holder out while the first lives, and takes over a dead one', async () => {
    const dir = await tempDir('lock');
    try {
      const lock = await lockDirectory(dir.path);
      expect(await readFile(lock.path, 'utf8')).toBe(String(process.pid));
      // Another live process holds it.
      const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
      await writeFile(lock.path, String(other.pid));
      await expect(lockDirectory(dir.path)).rejects.toMatchObject({
        code: 'unavailable',
        details: { pid: other.pid },
      });
      other.kill('SIGKILL');
      await once(other, 'exit');
      // Its holder died (kill -9 leaves the file behind): taken over.
      const again = await lockDirectory(dir.path);
      expect(await readFile(join(dir.path, 'worker.lock'), 'utf8')).toBe(String(process.pid));
      await again.release();
      await lock.release();
    } finally {
      await dir.remove();
    }
  });
});
