// Runs one of the project's entries compiled (scripts/build.mjs) in this very process:
//   node scripts/run.mjs src/bots/main.ts [args...]
// The entry sees its own path as process.argv[1] and its arguments after it, as if node ran it.
import { relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entryUrl } from './build.mjs';
import { ROOT } from './setup.mjs';

const [entry, ...args] = process.argv.slice(2);
const source = entry === undefined ? '' : relative(ROOT, resolve(entry));
if (!source.startsWith(`src${sep}`) || !source.endsWith('.ts')) {
  console.error('usage: node scripts/run.mjs src/<entry>.ts [args...]');
  process.exit(2);
}
const url = await entryUrl(source);
process.argv = [process.argv[0] ?? process.execPath, fileURLToPath(url), ...args];
await import(url);
