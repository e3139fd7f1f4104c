// Where `npm test` keeps the suite's scratch files (TMPDIR for vitest and every program it starts):
// a folder on a RAM file system (tmpfs, /dev/shm on Linux) when there is one with room, else the
// system's temporary folder as it is. Node built-ins only (runs before node_modules may exist).
//
// Why: the suite creates and deletes tens of thousands of files (some 60 DATA_DIRs are copies of a
// migrated PGlite of ~1,000 files; models, blobs, browser profiles). On ext4 a new inode skips
// every inode deleted in the last minute or so (`recently_deleted` in the inode allocator): `perf
// record -a` over the whole suite on 2 cores put ~33 s of CPU there (8% of it), in the vitest
// workers' file copies. On tmpfs that cost is gone: the suite took 176 s instead of 208 s.
import { mkdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';

/** statfs(2)'s f_type of tmpfs (TMPFS_MAGIC). */
export const TMPFS_MAGIC = 0x01021994;
/** Free space the RAM folder must have: the suite's files at their peak, with room to spare. */
export const SCRATCH_MIN_FREE_BYTES = 2 * 1024 ** 3;
/** The RAM file system looked at first, and the folder the suite uses in it. */
export const RAM_ROOT = '/dev/shm';
export const SCRATCH_NAME = 'vqclip-tests';

/**
 * The folder to give the suite as TMPDIR, with the reason to say, or undefined to leave TMPDIR as
 * it is: TMPDIR already set (the user chose), not Linux, no tmpfs at RAM_ROOT, or too little room.
 * `statfs` and `ramRoot` are injected by tests.
 */
export function chooseScratch({
  env = process.env,
  platform = process.platform,
  statfs = statfsSync,
  ramRoot = RAM_ROOT,
} = {}) {
  if (env.TMPDIR) return undefined;
  if (platform !== 'linux') return undefined;
  let facts;
  try {
    facts = statfs(ramRoot);
  } catch {
    return undefined;
  }
  if (Number(facts.type) !== TMPFS_MAGIC) return undefined;
  const free = Number(facts.bavail) * Number(facts.bsize);
  if (free < SCRATCH_MIN_FREE_BYTES) return undefined;
  const dir = join(ramRoot, SCRATCH_NAME);
  return {
    dir,
    why: `test scratch files in ${dir} (tmpfs, ${(free / 1024 ** 3).toFixed(0)} GiB free): creating files there is far cheaper than on disk`,
  };
}

/** The environment for the suite: TMPDIR set to the chosen folder (created), or `env` as it is. */
export function scratchEnv(env = process.env, log = (line) => console.log(line), options = {}) {
  const chosen = chooseScratch({ env, ...options });
  if (!chosen) return env;
  try {
    mkdirSync(chosen.dir, { recursive: true });
  } catch {
    return env;
  }
  log(chosen.why);
  return { ...env, TMPDIR: chosen.dir };
}
