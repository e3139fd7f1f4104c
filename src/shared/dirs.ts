// Start-up checks of the folders a process writes (DATA_DIR) or reads (MODELS_DIR): a missing
// permission, a path that is a file, a read-only mount or a full disk is one clear sentence naming the
// variable and the folder, at start, instead of a stack trace from deep inside a later write.
import { randomUUID } from 'node:crypto';
import { access, constants, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CodedError } from './errors.js';

const reasons: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'it is a file, not a folder',
  ENOENT: 'it does not exist',
};

/** One line: `DATA_DIR /srv/data cannot be used: the disk is full (ENOSPC)`. */
function problem(variable: string, dir: string, error: unknown, hint?: string): CodedError<'config_invalid'> {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const why = reasons[code] ?? (error as Error).message;
  const message = `${variable} ${resolve(dir)} cannot be used: ${why}${code ? ` (${code})` : ''}${hint ? `; ${hint}` : ''}`;
  return new CodedError('config_invalid', message, { details: { variable, dir: resolve(dir), errno: code } });
}

/** Creates `dir` when missing and proves a file can be written there; throws a config_invalid CodedError naming `variable`. */
export async function ensureWritableDir(dir: string, variable: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    const info = await stat(dir);
    if (!info.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'EEXIST' });
    // A probe with some bytes: an almost full disk takes an empty file but not the database's pages.
    const probe = join(dir, `.write-test-${randomUUID()}`);
    try {
      await writeFile(probe, Buffer.alloc(64 * 1024));
    } finally {
      await rm(probe, { force: true });
    }
  } catch (error) {
    throw problem(variable, dir, error);
  }
}

/** Checks that `dir` is a folder this process can read; throws a config_invalid CodedError naming `variable`. */
export async function ensureReadableDir(dir: string, variable: string, hint?: string): Promise<void> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'EEXIST' });
    await access(dir, constants.R_OK | constants.X_OK);
  } catch (error) {
    throw problem(variable, dir, error, hint);
  }
}
