// DATA_DIR and MODELS_DIR checked at start: each bad folder is one sentence naming the variable.
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureReadableDir, ensureWritableDir } from '../../src/shared/dirs.js';
import { entryArgs } from '../helpers/entry.js';

const run = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vqclip-dirs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Mounts a tmpfs (root only); undefined where this machine does not allow it. */
function mountTmpfs(path: string, options: string): (() => void) | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', path], { stdio: 'ignore' });
    return () => execFileSync('umount', [path], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
}

describe('ensureWritableDir / ensureReadableDir', () => {
  it('creates a missing folder and accepts a writable one, leaving nothing behind', async () => {
    const data = join(dir, 'a', 'b');
    await ensureWritableDir(data, 'DATA_DIR');
    await ensureWritableDir(data, 'DATA_DIR');
    await ensureReadableDir(data, 'MODELS_DIR');
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(data)).toEqual([]);
  });

  it('names the variable, the folder and the cause in one line', async () => {
    const file = join(dir, 'file');
    await writeFile(file, 'x');
    await expect(ensureWritableDir(file, 'DATA_DIR')).rejects.toMatchObject({
      code: 'config_invalid',
      message: `DATA_DIR ${file} cannot be used: it is a file, not a folder (EEXIST)`,
    });
    await expect(ensureWritableDir(join(file, 'sub'), 'DATA_DIR')).rejects.toThrow(
      /a part of the path is a file.*ENOTDIR/,
    );
    await expect(ensureReadableDir(join(dir, 'missing'), 'MODELS_DIR', 'put models there')).rejects.toThrow(
      /^MODELS_DIR .*missing cannot be used: it does not exist \(ENOENT\); put models there$/,
    );
  });

  it('says the disk is full, or read-only, before anything is written', async (ctx) => {
    const full = join(dir, 'full');
    const ro = join(dir, 'ro');
    await mkdir(full);
    await mkdir(ro);
    const unmountFull = mountTmpfs(full, 'size=32k');
    const unmountRo = mountTmpfs(ro, 'ro,size=32k');
    if (!unmountFull || !unmountRo) {
      unmountFull?.();
      ctx.skip('mounting a tmpfs needs root (CI runs as root)');
      return;
    }
    try {
      await expect(ensureWritableDir(full, 'DATA_DIR')).rejects.toThrow(/the disk is full \(ENOSPC\)/);
      await expect(ensureWritableDir(ro, 'DATA_DIR')).rejects.toThrow(/read-only \(EROFS\)/);
    } finally {
      unmountFull();
      unmountRo();
    }
  });

  it('a worker with a bad DATA_DIR stops at once with that line and exit code 1', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    const result = await run(process.execPath, entryArgs('src/worker/main.ts'), {
      env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: file, LOG_LEVEL: 'silent' },
      timeout: 30_000,
    }).catch((error: { code: number; stderr: string }) => error);
    expect((result as { code: number }).code).toBe(1);
    expect((result as { stderr: string }).stderr.trim()).toBe(
      `worker: DATA_DIR ${file} cannot be used: it is a file, not a folder (EEXIST)`,
    );
  });
});
