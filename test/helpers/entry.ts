// How tests start one of the project's programs: as its npm scripts do (`npm run bot`, `npm run
// worker`...), compiled, through scripts/run.mjs.
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../scripts/run.mjs', import.meta.url));

/** Node's arguments that run `entry` (a path under src/, from the repository) with `args`. */
export function entryArgs(entry: string, ...args: string[]): string[] {
  return [RUN, entry, ...args];
}
