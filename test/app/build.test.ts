// scripts/build.mjs, the compiled copy of src/ that npm start, npm run bot/worker/models and the CLI
// run: on a small project of its own (a src/ with two modules and a static file), so that edits
// and concurrent builds can be tried without touching the real one.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildKey, compiledPath, ensureBuilt } from '../../scripts/build.mjs';

const run = promisify(execFile);
const REPO = new URL('../../', import.meta.url).pathname;
let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'vqclip-build-'));
  await mkdir(join(root, 'src/web/static'), { recursive: true });
  await symlink(join(REPO, 'node_modules'), join(root, 'node_modules'));
  await writeFile(join(root, 'package.json'), '{ "type": "module" }\n');
  await writeFile(
    join(root, 'src/main.ts'),
    [
      "import { readFileSync } from 'node:fs';",
      "import { word } from './word.js';",
      'const page: string = readFileSync(new URL("./web/static/page.html", import.meta.url), "utf8");',
      'console.log(word() + " " + page.trim());',
      "if (process.argv[2] === 'throw') throw new Error('thrown here');",
      '',
    ].join('\n'),
  );
  await writeFile(join(root, 'src/word.ts'), "export const word = (): string => 'first';\n");
  await writeFile(join(root, 'src/web/static/page.html'), '<p>static</p>\n');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const node = (file: string, ...args: string[]) =>
  run(process.execPath, ['--enable-source-maps', file, ...args], { cwd: root });

describe('the compiled build of src/', () => {
  it('runs the TypeScript as JavaScript, with the files beside it that the code reads', async () => {
    const dir = await ensureBuilt({ root });
    expect(dir).toBe(join(root, 'dist', `run-${buildKey(root)}`));
    expect((await node(compiledPath(dir, 'src/main.ts'))).stdout).toBe('first <p>static</p>\n');
  });

  it('is never stale: an edited file gets a build of its own, and an unchanged tree the same one', async () => {
    const first = await ensureBuilt({ root });
    expect(await ensureBuilt({ root })).toBe(first);
    await writeFile(join(root, 'src/word.ts'), "export const word = (): string => 'edited';\n");
    const second = await ensureBuilt({ root });
    expect(second).not.toBe(first);
    expect((await node(compiledPath(second, 'src/main.ts'))).stdout).toBe('edited <p>static</p>\n');
    // A static file counts as much as a module.
    await writeFile(join(root, 'src/web/static/page.html'), '<p>changed</p>\n');
    const third = await ensureBuilt({ root });
    expect((await node(compiledPath(third, 'src/main.ts'))).stdout).toBe('edited <p>changed</p>\n');
  });

  it('names the .ts file and line in a stack trace', async () => {
    const dir = await ensureBuilt({ root });
    const failed = await node(compiledPath(dir, 'src/main.ts'), 'throw').catch((e: { stderr: string }) => e);
    expect((failed as { stderr: string }).stderr).toMatch(/src\/main\.ts:5:\d+/);
  });

  it('runs the source through tsx, after one line that says why, when no build can be made', async () => {
    // dist is a file: no folder can be made in it (root ignores permissions, so no chmod here).
    await writeFile(join(root, 'dist'), 'not a folder');
    const script = `import(${JSON.stringify(join(REPO, 'scripts/build.mjs'))}).then(async (m) => import(await m.entryUrl('src/main.ts', { root: ${JSON.stringify(root)} })))`;
    const { stdout, stderr } = await run(process.execPath, ['-e', script], { cwd: root });
    expect(stdout).toBe('first <p>static</p>\n');
    expect(stderr.trim()).toMatch(
      new RegExp(
        `^could not build the compiled copy in ${join(root, 'dist')} \\(.*\\): running the TypeScript through tsx$`,
      ),
    );
  });

  it('is built once when processes ask for it at the same time, and old builds are pruned', async () => {
    const script = `import(${JSON.stringify(join(REPO, 'scripts/build.mjs'))}).then(async (m) => console.log(await m.ensureBuilt({ root: ${JSON.stringify(root)} })))`;
    const dirs = await Promise.all(
      [1, 2, 3].map(async () => (await run(process.execPath, ['-e', script])).stdout.trim()),
    );
    expect(new Set(dirs).size).toBe(1);
    expect(existsSync(join(dirs[0]!, 'ready'))).toBe(true);
    // No half-built folder is left behind by the two that lost the race.
    expect((await readdir(join(root, 'dist'))).filter((d) => d.startsWith('.building-'))).toEqual([]);
    for (let i = 0; i < 6; i++) {
      await writeFile(join(root, 'src/word.ts'), `export const word = (): string => 'v${i}';\n`);
      await ensureBuilt({ root });
    }
    const kept = (await readdir(join(root, 'dist'))).filter((d) => d.startsWith('run-'));
    // The newest and the four before it (a running program may still start a child from those).
    expect(kept).toHaveLength(5);
    expect(kept).toContain(`run-${buildKey(root)}`);
    expect(await readFile(join(root, 'dist', `run-${buildKey(root)}`, 'ready'), 'utf8')).toBe(
      `${buildKey(root)}\n`,
    );
  });
});
