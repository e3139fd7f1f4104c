// How tests start one of the project's programs: as its npm scripts do (`npm run bot`, `npm run
// worker`...), compiled, through scripts/run.mjs.
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../scripts/run.mjs', import.meta.url));

/** Node's arguments that run `entry` (a path under src/, from the repository) with `args`. */
export function entryArgs(entry: string, ...args: string[]): string[] {
  return [RUN, entry, ...args];
}

/**
 * The compiled file of `entry` (a path under src/) in the build the suite made (test/global-setup.ts),
 * for code that starts it itself (startStack's worker child).
 */
export async function compiledEntry(entry: string): Promise<string> {
  const { entryUrl } = await import('../../scripts/build.mjs');
  return fileURLToPath(await entryUrl(entry));
}
