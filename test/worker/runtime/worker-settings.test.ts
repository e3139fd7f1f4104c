import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/shared/config.js';
import type { ConfigError } from '../../../src/shared/errors.js';
import { lockDirectory } from '../../../src/worker/runtime/dir-lock.js';
import { modelSettings, workerSettings } from '../../../src/worker/runtime/worker-settings.js';
import { tempDir } from '../../helpers/worker-process.js';

describe('WORKER_* variables in the shared config', () => {
  it('has defaults for everything', () => {
    expect(loadConfig({}).worker).toEqual({
      queues: ['imagine', 'classify', 'embed-image', 'search', 'delete-image', 'channel-state'],
      concurrency: {
        imagine: 1,
        classify: 16,
        'embed-image': 16,
        search: 4,
        'delete-image': 4,
        'channel-state': 4,
      },
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
    const { worker } = loadConfig({
      WORKER_QUEUES: ' classify, search ,classify',
      WORKER_CLASSIFY_CONCURRENCY: '32',
      WORKER_DELETE_CONCURRENCY: '2',
      WORKER_LOCK_DURATION_MS: '',
      WORKER_WARMUP: 'false',
      WORKER_MICRO_BATCH: '1',
    });
    expect(worker.queues).toEqual(['classify', 'search']);
    expect(worker.concurrency.classify).toBe(32);
    expect(worker.concurrency['delete-image']).toBe(2);
    expect(worker.lockDurationMs).toBe(30_000);
    expect(worker.warmup).toBe(false);
    expect(worker.microBatch).toBe(1);
  });

  it('lists every bad WORKER_ variable at once, with the other bad variables', () => {
    let error: ConfigError | undefined;
    try {
      loadConfig({
        WORKER_QUEUES: 'imagine,paint',
        WORKER_BATCH_WAIT_MS: '-1',
        WORKER_WARMUP: 'maybe',
        WORKER_IMAGINE_CONCURRENCY: '1.5',
        WORKER_STEP_MEMORY_MB: 'lots',
        PORT: 'eighty',
      });
    } catch (e) {
      error = e as ConfigError;
    }
    expect(error?.code).toBe('config_invalid');
    const problems = (error?.details.problems ?? []) as { variable: string; message: string }[];
    expect(problems.map((p) => p.variable).sort()).toEqual([
      'PORT',
      'WORKER_BATCH_WAIT_MS',
      'WORKER_IMAGINE_CONCURRENCY',
      'WORKER_QUEUES',
      'WORKER_STEP_MEMORY_MB',
      'WORKER_WARMUP',
    ]);
    expect(problems.find((p) => p.variable === 'WORKER_QUEUES')?.message).toContain('delete-image');
    expect(error?.message).toContain('WORKER_WARMUP: must be true or false');
  });
});

describe('workerSettings', () => {
  it('maps the shared config to startWorker options', () => {
    const config = loadConfig({
      QUEUE_PREFIX: 'p1',
      BLOB_TTL_SECONDS: '120',
      WORKER_QUEUES: 'imagine',
      WORKER_SHUTDOWN_GRACE_MS: '0',
      WORKER_PREVIEW_TTL_SECONDS: '60',
    });
    expect(workerSettings(config)).toEqual({
      prefix: 'p1',
      queues: ['imagine'],
      concurrency: config.worker.concurrency,
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      maxStalledCount: 1,
      blobTtlSeconds: 120,
      blobMaxBytes: 25 * 1024 * 1024,
      previewTtlSeconds: 60,
      imagineTimeBudgetMs: 1_200_000,
      shutdownGraceMs: 0,
    });
  });

  it('maps the ORT, precision and micro-batch settings to loadModels options', () => {
    const config = loadConfig({
      DATA_DIR: '/srv/data',
      ORT_PROVIDERS: 'cuda,cpu',
      ORT_INTRA_OP_THREADS: '3',
      ORT_INTER_OP_THREADS: '1',
      ORT_ALLOW_SPINNING: 'true',
      CLIP_IMAGE_PRECISION: 'int8',
      DALLE_PRECISION: 'int8',
      WORKER_MICRO_BATCH: '8',
      WORKER_BATCH_WAIT_MS: '2',
      WORKER_STEP_MEMORY_MB: '512',
    });
    expect(modelSettings(config)).toEqual({
      providers: ['cuda', 'cpu'],
      intraOpThreads: 3,
      interOpThreads: 1,
      allowSpinning: true,
      imagePrecision: 'int8',
      dallePrecision: 'int8',
      labelCacheDir: join('/srv/data', 'label-cache'),
      microBatch: 8,
      batchWaitMs: 2,
      stepMemoryBudgetBytes: 512 * 2 ** 20,
      safety: { threshold: 0.5 },
    });
    // Unset: loadModels' default (a fraction of the machine's memory); 0: never the arena.
    expect(modelSettings(loadConfig({})).stepMemoryBudgetBytes).toBeUndefined();
    expect(modelSettings(loadConfig({ WORKER_STEP_MEMORY_MB: '0' })).stepMemoryBudgetBytes).toBe(0);
  });

  it('maps the safety check to loadModels: its threshold and prompts file, or none; the mode is not theirs', () => {
    expect(
      modelSettings(
        loadConfig({ SAFETY_THRESHOLD: '0.3', SAFETY_PROMPTS_FILE: '/etc/p.json', SAFETY_MODE: 'block' }),
      ).safety,
    ).toEqual({ threshold: 0.3, promptsFile: '/etc/p.json' });
    // SAFETY_MODE=off only changes what adapters show: workers still check.
    expect(modelSettings(loadConfig({ SAFETY_MODE: 'off' })).safety).toEqual({ threshold: 0.5 });
    expect(modelSettings(loadConfig({ SAFETY_CHECK: 'off', SAFETY_THRESHOLD: '0.3' })).safety).toBe(false);
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
