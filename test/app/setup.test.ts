// scripts/setup.mjs, what `npm start` and `npm test` run first on a fresh machine: the install plan
// for every kind of machine (pure), the node_modules check on real folders, and ensure() end to end
// with stand-ins for npm and apt-get on PATH, so nothing is really installed.
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseScratch, SCRATCH_MIN_FREE_BYTES, scratchEnv, TMPFS_MAGIC } from '../../scripts/scratch.mjs';
import {
  ensure,
  manualLine,
  modulesState,
  needsFor,
  planSystemInstall,
  type SystemFacts,
} from '../../scripts/setup.mjs';

const debian: SystemFacts = {
  platform: 'linux',
  osId: 'debian',
  isRoot: true,
  passwordlessSudo: false,
  aptGet: true,
  brew: false,
  aptListsEmpty: false,
};

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
async function temp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vqclip-setup-'));
  dirs.push(d);
  return d;
}

describe('planSystemInstall', () => {
  it('uses apt-get as root, with sudo -n when sudo needs no password, updating a fresh machine first', () => {
    expect(planSystemInstall(['redis-server'], { ...debian, aptListsEmpty: true })).toEqual({
      kind: 'apt',
      updateFirst: true,
      update: ['apt-get', 'update', '-q'],
      commands: [
        [
          'env',
          'DEBIAN_FRONTEND=noninteractive',
          'apt-get',
          'install',
          '-y',
          '-q',
          '--no-install-recommends',
          'redis-server',
        ],
      ],
      exact: 'sudo apt-get update && sudo apt-get install -y redis-server',
    });
    const sudo = planSystemInstall(['redis-server', 'chromium'], {
      ...debian,
      osId: 'ubuntu debian',
      isRoot: false,
      passwordlessSudo: true,
    });
    expect(sudo.kind).toBe('apt');
    expect(sudo.commands[0]!.slice(0, 2)).toEqual(['sudo', '-n']);
    expect(sudo.commands[0]!.slice(-2)).toEqual(['redis-server', 'chromium']);
  });

  it('says the exact command when it may not install, and uses Homebrew on macOS', () => {
    const user = planSystemInstall(['redis-server'], { ...debian, isRoot: false });
    expect(user).toMatchObject({ kind: 'manual', reason: 'not root, and sudo asks for a password' });
    expect(manualLine(['redis-server'], user as never, 'set REDIS_URL to a Redis you run')).toBe(
      'setup: redis-server is needed and cannot be installed from here (not root, and sudo asks for a password). ' +
        'Run: sudo apt-get update && sudo apt-get install -y redis-server (or set REDIS_URL to a Redis you run)',
    );
    const mac = { ...debian, platform: 'darwin' as const, osId: '', aptGet: false, brew: true };
    expect(planSystemInstall(['redis-server', 'chromium'], mac)).toMatchObject({
      kind: 'brew',
      commands: [
        ['brew', 'install', 'redis'],
        ['brew', 'install', '--cask', 'chromium'],
      ],
    });
    expect(planSystemInstall(['redis-server'], { ...mac, brew: false })).toMatchObject({
      kind: 'manual',
      exact: 'brew install redis',
    });
    expect(planSystemInstall(['redis-server'], { ...debian, osId: 'fedora' }).kind).toBe('manual');
  });

  it('needs redis-server for npm start only without REDIS_URL, and everything for npm test', () => {
    expect(needsFor('start', {})).toEqual({ modules: true, redis: true, chromium: false });
    expect(needsFor('start', { REDIS_URL: 'redis://x:6379' }).redis).toBe(false);
    expect(needsFor('test', { REDIS_URL: 'redis://x:6379' })).toEqual({
      modules: true,
      redis: true,
      chromium: true,
    });
  });
});

describe('modulesState', () => {
  it('is missing without node_modules, stale when the lock file is newer and names other versions', async () => {
    const root = await temp();
    const lock = (version: string) => ({ packages: { '': { name: 'x' }, 'node_modules/a': { version } } });
    await writeFile(join(root, 'package-lock.json'), JSON.stringify(lock('1.0.0')));
    expect(modulesState(root)).toBe('missing');
    await mkdir(join(root, 'node_modules'));
    expect(modulesState(root)).toBe('missing');
    const hidden = join(root, 'node_modules', '.package-lock.json');
    await writeFile(hidden, JSON.stringify({ packages: { 'node_modules/a': { version: '1.0.0' } } }));
    const old = new Date(Date.now() - 60_000);
    await utimes(hidden, old, old);
    // Newer by its time stamp only (a fresh checkout): nothing to do.
    expect(modulesState(root)).toBe('ok');
    await writeFile(join(root, 'package-lock.json'), JSON.stringify(lock('2.0.0')));
    expect(modulesState(root)).toBe('stale');
    await writeFile(hidden, JSON.stringify({ packages: { 'node_modules/a': { version: '2.0.0' } } }));
    expect(modulesState(root)).toBe('ok');
  });
});

describe('ensure', () => {
  /** A PATH holding only `env` and the given stand-in scripts. */
  async function fakePath(scripts: Record<string, string>): Promise<string> {
    const bin = await temp();
    await symlink('/usr/bin/env', join(bin, 'env'));
    for (const [name, body] of Object.entries(scripts)) {
      await writeFile(join(bin, name), `#!/bin/sh\n${body}\n`);
      await chmod(join(bin, name), 0o755);
    }
    return bin;
  }

  it('runs npm ci with ONNXRUNTIME_NODE_INSTALL=skip when node_modules is missing, and says why', async () => {
    const root = await temp();
    await writeFile(join(root, 'package-lock.json'), JSON.stringify({ packages: {} }));
    const npm = join(root, 'fake-npm.cjs');
    await writeFile(
      npm,
      `const fs = require('fs'); fs.mkdirSync('node_modules', { recursive: true });
       fs.writeFileSync('node_modules/.package-lock.json', JSON.stringify({ packages: {} }));
       fs.writeFileSync('args.json', JSON.stringify({ argv: process.argv.slice(2), ort: process.env.ONNXRUNTIME_NODE_INSTALL }));`,
    );
    const said: string[] = [];
    const cwd = process.cwd();
    process.chdir(root);
    try {
      const ok = ensure(
        { modules: true },
        { root, env: { ...process.env, npm_execpath: npm }, say: (l) => said.push(l) },
      );
      expect(ok).toBe(true);
    } finally {
      process.chdir(cwd);
    }
    expect(JSON.parse(await readFile(join(root, 'args.json'), 'utf8'))).toEqual({
      argv: ['ci', '--no-audit', '--no-fund'],
      ort: 'skip',
    });
    expect(said[0]).toBe(
      'setup: node_modules is missing: installing the node modules with npm ci (ONNXRUNTIME_NODE_INSTALL=skip: CPU only, no CUDA download)…',
    );
    // Installed now: a second run has nothing to say.
    said.length = 0;
    expect(ensure({ modules: true }, { root, say: (l) => said.push(l) })).toBe(true);
    expect(said).toEqual([]);
  });

  it('installs a missing redis-server with apt-get as root, saying what and why', async () => {
    const bin = await fakePath({});
    await writeFile(
      join(bin, 'apt-get'),
      `#!/bin/sh\necho "$@" >> ${bin}/apt.log\nprintf '#!/bin/sh\\n' > ${bin}/redis-server; /bin/chmod +x ${bin}/redis-server\n`,
    );
    await chmod(join(bin, 'apt-get'), 0o755);
    const said: string[] = [];
    const ok = ensure({ redis: true }, { env: { PATH: bin }, system: debian, say: (l) => said.push(l) });
    expect(ok).toBe(true);
    expect(said[0]).toBe(
      'setup: installing redis-server (the job queues: npm start and the tests run a private redis-server) with apt-get…',
    );
    expect((await readFile(join(bin, 'apt.log'), 'utf8')).trim()).toBe(
      'install -y -q --no-install-recommends redis-server',
    );
  });

  it('prints one line with the exact command and fails when it may not install', async () => {
    const bin = await fakePath({});
    const said: string[] = [];
    const ok = ensure(
      { redis: true },
      {
        env: { PATH: bin },
        system: { ...debian, isRoot: false },
        say: (l) => said.push(l),
        redisAlternative: 'set REDIS_URL',
      },
    );
    expect(ok).toBe(false);
    expect(said).toEqual([
      'setup: redis-server is needed and cannot be installed from here (not root, and sudo asks for a password). Run: sudo apt-get update && sudo apt-get install -y redis-server (or set REDIS_URL)',
    ]);
  });
});

describe('the suite scratch folder (scratch.mjs)', () => {
  const EXT4 = 0xef53;
  const facts = (type: number, freeBytes: number) => () => ({ type, bavail: freeBytes / 4096, bsize: 4096 });
  const roomy = SCRATCH_MIN_FREE_BYTES * 4;

  it('puts TMPDIR on tmpfs at /dev/shm with room, and leaves it alone otherwise', () => {
    expect(chooseScratch({ env: {}, platform: 'linux', statfs: facts(TMPFS_MAGIC, roomy) })?.dir).toBe(
      '/dev/shm/vqclip-tests',
    );
    // The user's TMPDIR wins; /dev/shm on disk, too small, missing, or another system: as it is.
    expect(
      chooseScratch({ env: { TMPDIR: '/x' }, platform: 'linux', statfs: facts(TMPFS_MAGIC, roomy) }),
    ).toBe(undefined);
    expect(chooseScratch({ env: {}, platform: 'linux', statfs: facts(EXT4, roomy) })).toBe(undefined);
    expect(
      chooseScratch({ env: {}, platform: 'linux', statfs: facts(TMPFS_MAGIC, SCRATCH_MIN_FREE_BYTES / 2) }),
    ).toBe(undefined);
    const missing = () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    expect(chooseScratch({ env: {}, platform: 'linux', statfs: missing })).toBe(undefined);
    expect(chooseScratch({ env: {}, platform: 'darwin', statfs: facts(TMPFS_MAGIC, roomy) })).toBe(undefined);
  });

  it('gives the suite TMPDIR (made), says where and why, and keeps the rest of the environment', async () => {
    const ramRoot = await temp();
    const said: string[] = [];
    const env = scratchEnv({ PATH: '/bin' }, (l) => said.push(l), {
      platform: 'linux',
      statfs: facts(TMPFS_MAGIC, roomy),
      ramRoot,
    });
    const dir = join(ramRoot, 'vqclip-tests');
    expect(env).toEqual({ PATH: '/bin', TMPDIR: dir });
    expect((await stat(dir)).isDirectory()).toBe(true);
    expect(said).toEqual([
      `test scratch files in ${dir} (tmpfs, 8 GiB free): creating files there is far cheaper than on disk`,
    ]);
    const quiet: string[] = [];
    expect(scratchEnv({ PATH: '/bin' }, (l) => quiet.push(l), { platform: 'darwin' })).toEqual({
      PATH: '/bin',
    });
    expect(quiet).toEqual([]);
  });
});
