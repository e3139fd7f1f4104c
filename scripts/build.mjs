// The project's TypeScript as plain JavaScript for the processes it starts: `npm start`, its worker
// child, `npm run bot`, `npm run models`, the CLI. tsx compiles each file on the fly through a
// loader thread that every import crosses, which costs ~1.2 s of CPU per process start on these
// cores; node on compiled files starts ~3x faster. This is a cache, not a release step: each build
// lives in dist/run-<key>/, where the key hashes every file under src/ (and the compiler's
// version), so an edited file is never run stale; a build takes ~0.3 s, and is made the first
// time a process asks for it. Files other than .ts (the playground's static files, the Redis
// watchdog) are copied beside the compiled ones, as the code finds them next to itself.
//
//   const dir = await ensureBuilt();  compiledPath(dir, 'src/app/start.ts')  -> dir/src/app/start.js
import { createHash, randomUUID } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './setup.mjs';

/** Builds kept beside the newest one (a running process may still spawn from an older one). */
const KEEP = 4;

function sourceFiles(root) {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) files.push(relative(root, path));
    }
  };
  walk(join(root, 'src'));
  return files.sort();
}

/** The build's key: every file under src/ (path and bytes) and esbuild's version. */
export function buildKey(root = ROOT, files = sourceFiles(root)) {
  const hash = createHash('sha256');
  const esbuild = JSON.parse(readFileSync(join(root, 'node_modules/esbuild/package.json'), 'utf8'));
  hash.update(`esbuild ${esbuild.version}\0`);
  for (const file of files) {
    hash.update(`${file}\0`);
    hash.update(readFileSync(join(root, file)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Where `src/…/x.ts` is in the build `dir`. */
export function compiledPath(dir, sourcePath) {
  return join(dir, sourcePath.replace(/\.ts$/, '.js'));
}

/** The build of src/ as it is now: made (atomically: a folder renamed into place) when missing. */
export async function ensureBuilt({ root = ROOT } = {}) {
  const files = sourceFiles(root);
  const key = buildKey(root, files);
  const dist = join(root, 'dist');
  const dir = join(dist, `run-${key}`);
  if (existsSync(join(dir, 'ready'))) return dir;
  const temp = join(dist, `.building-${randomUUID()}`);
  const { build } = await import('esbuild');
  await build({
    absWorkingDir: root,
    entryPoints: files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')),
    outdir: join(temp, 'src'),
    outbase: 'src',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Stack traces name the .ts files and lines (the entries turn source maps on).
    sourcemap: 'linked',
    sourcesContent: false,
    // A failure is said once, by entryUrl (or by tsx, for an error in the code itself).
    logLevel: 'silent',
  });
  for (const file of files.filter((f) => !f.endsWith('.ts'))) {
    mkdirSync(dirname(join(temp, file)), { recursive: true });
    cpSync(join(root, file), join(temp, file));
  }
  writeFileSync(join(temp, 'ready'), `${key}\n`);
  try {
    renameSync(temp, dir);
  } catch (error) {
    // Another process built the same key meanwhile: theirs is as good.
    rmSync(temp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'ready'))) throw error;
  }
  prune(dist, dir);
  return dir;
}

/** Removes all but the newest KEEP builds (and leftovers of interrupted ones over an hour old). */
function prune(dist, current) {
  const entries = readdirSync(dist, { withFileTypes: true })
    .filter((e) => e.isDirectory() && (e.name.startsWith('run-') || e.name.startsWith('.building-')))
    .map((e) => ({ path: join(dist, e.name), mtime: statSync(join(dist, e.name)).mtimeMs }))
    .filter((e) => e.path !== current)
    .sort((a, b) => b.mtime - a.mtime);
  const hourAgo = Date.now() - 3_600_000;
  entries.forEach((e, i) => {
    const building = e.path.includes('.building-');
    if (building ? e.mtime < hourAgo : i >= KEEP) rmSync(e.path, { recursive: true, force: true });
  });
}

/**
 * The URL to import for `sourcePath` (`src/…/x.ts`): its compiled copy, or, when no build can be
 * made here (dist/ not writable, disk full), the source itself through tsx's loader (registered
 * here), after one line on stderr that says why. Both run the same code; only the start is slower.
 */
export async function entryUrl(
  sourcePath,
  { root = ROOT, say = (line) => process.stderr.write(`${line}\n`) } = {},
) {
  let dir;
  try {
    dir = await ensureBuilt({ root });
  } catch (error) {
    // esbuild's errors carry their text apart; others say it in their first line.
    const reason =
      error?.errors?.[0]?.text ?? (error instanceof Error ? error.message.split('\n')[0] : String(error));
    say(
      `could not build the compiled copy in ${join(root, 'dist')} (${reason}): running the TypeScript through tsx`,
    );
    const { register } = await import('tsx/esm/api');
    register();
    return pathToFileURL(join(root, sourcePath)).href;
  }
  process.setSourceMapsEnabled(true);
  return pathToFileURL(compiledPath(dir, sourcePath)).href;
}
