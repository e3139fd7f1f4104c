// A pid file that keeps two processes from opening the same embedded PGlite folder: PGlite is one
// process's database, and two writers would corrupt it silently. A lock left by a dead process
// (kill -9, power loss) is taken over.
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from '../../shared/errors.js';

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `dir/<name>` for this process, or throws `unavailable` naming the process that holds it. */
export async function lockDirectory(dir: string, name = 'worker.lock'): Promise<DirLock> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, 'wx');
      await file.writeFile(String(process.pid));
      await file.close();
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          await rm(path, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
      throw new CodedError(
        'unavailable',
        `${dir} is in use by process ${holder}: PGlite serves one process; give each worker its own DATA_DIR or set DATABASE_URL`,
        { details: { dir, pid: holder } },
      );
    }
    await rm(path, { force: true });
  }
  throw new CodedError('unavailable', `could not lock ${dir}`, { details: { dir } });
}
