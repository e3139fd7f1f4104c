// A pid file that keeps two processes from opening the same embedded PGlite folder (PGlite is one
// process's database, and two writers would corrupt it silently), and two `models pull` from writing
// one models folder. A lock left by a dead process (kill -9, power loss) is taken over.
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

export interface LockOptions {
  /** @defaultValue 'worker.lock' */
  readonly name?: string;
  /**
   * A lock file naming this very process: 'take-over' treats it as left by an earlier process that had
   * the same pid (a container's pid 1 after a restart); 'refuse' as held by this process (a second
   * holder in the same process waits its turn). @defaultValue 'take-over'
   */
  readonly ownPid?: 'take-over' | 'refuse';
  /** The error for a lock held by live process `holder`, or (undefined) one that could not be taken. */
  readonly busy?: (holder: number | undefined) => Error;
}

/** Takes `dir/<name>` for this process, or throws `unavailable` naming the process that holds it. */
export async function lockDirectory(dir: string, options: LockOptions = {}): Promise<DirLock> {
  const busy =
    options.busy ??
    ((holder: number | undefined) =>
      holder === undefined
        ? new CodedError('unavailable', `could not lock ${dir}`, { details: { dir } })
        : new CodedError(
            'unavailable',
            `${dir} is in use by process ${holder}: PGlite serves one process; give each worker its own DATA_DIR or set DATABASE_URL`,
            { details: { dir, pid: holder } },
          ));
  await mkdir(dir, { recursive: true });
  const path = join(dir, options.name ?? 'worker.lock');
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
    const mine = holder === process.pid && options.ownPid !== 'refuse';
    if (Number.isInteger(holder) && holder > 0 && !mine && alive(holder)) throw busy(holder);
    await rm(path, { force: true }); // stale: its process is gone
  }
  throw busy(undefined);
}
