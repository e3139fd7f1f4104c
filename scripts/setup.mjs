// What `npm start` and `npm test` need before they run, installed when missing: node modules
// (`npm ci` when node_modules is absent or older than package-lock.json), redis-server (the job
// queues) and, for the tests, Chromium (the playground's browser tests). System packages come from
// the system's package manager when this user may use it (root or passwordless sudo with apt-get
// on Debian/Ubuntu, Homebrew on macOS); otherwise one line says the exact command, and we exit 1.
// Every install is announced with its reason. Runs before node_modules exists: Node built-ins only.
//
//   node scripts/setup.mjs [start|test]     (what `npm start` / `npm test` call first)
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** What each system package is for, said when it is installed. */
const WHY = {
  'redis-server': 'the job queues: npm start and the tests run a private redis-server',
  chromium: 'the playground browser tests drive a headless Chromium',
};

/** Package names per package manager. */
const PACKAGES = {
  apt: { 'redis-server': 'redis-server', chromium: 'chromium' },
  brew: { 'redis-server': 'redis', chromium: '--cask chromium' },
};

/** The first executable called `name` on PATH, or undefined. */
export function which(name, path = process.env.PATH ?? '') {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Where a Chromium for the browser tests is: CHROMIUM_PATH, Debian's, PATH, or the macOS app. */
export function findChromium(env = process.env) {
  const candidates = [
    env.CHROMIUM_PATH,
    '/usr/bin/chromium',
    which('chromium', env.PATH),
    which('chromium-browser', env.PATH),
    '/Applications/Chromium.app/Contents/MacOS/Chromium',
  ];
  return candidates.find((c) => c !== undefined && c !== '' && existsSync(c));
}

/**
 * Whether node_modules matches package-lock.json: 'ok', 'missing' (no node_modules, or no npm
 * hidden lockfile in it), or 'stale' (the lock file is newer and names other versions).
 */
export function modulesState(root = ROOT) {
  const hidden = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (!existsSync(hidden)) return 'missing';
  if (statSync(lock).mtimeMs <= statSync(hidden).mtimeMs) return 'ok';
  // Newer by its time stamp (a checkout, a pull): stale only if it names other packages.
  try {
    const wanted = JSON.parse(readFileSync(lock, 'utf8')).packages ?? {};
    const have = JSON.parse(readFileSync(hidden, 'utf8')).packages ?? {};
    for (const [path, entry] of Object.entries(wanted)) {
      if (path === '' || entry.link) continue;
      const got = have[path];
      // Optional packages for other platforms (sharp's prebuilt binaries) are never installed here.
      if (got === undefined ? !entry.optional : got.version !== entry.version) return 'stale';
    }
    for (const path of Object.keys(have)) if (!(path in wanted)) return 'stale';
    return 'ok';
  } catch {
    return 'stale';
  }
}

/** Facts about this machine that decide how system packages can be installed. */
export function probeSystem(env = process.env) {
  const platform = process.platform;
  let osId = '';
  if (platform === 'linux') {
    try {
      const release = readFileSync('/etc/os-release', 'utf8');
      const field = (key) => new RegExp(`^${key}=(.*)$`, 'm').exec(release)?.[1]?.replaceAll('"', '') ?? '';
      osId = `${field('ID')} ${field('ID_LIKE')}`.trim();
    } catch {
      // unknown distribution
    }
  }
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const sudo = !isRoot && which('sudo', env.PATH) !== undefined;
  return {
    platform,
    osId,
    isRoot,
    // -n: never ask for a password; a sudo that would ask fails at once.
    passwordlessSudo: sudo && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0,
    aptGet: which('apt-get', env.PATH) !== undefined,
    brew: which('brew', env.PATH) !== undefined,
    aptListsEmpty: aptListsEmpty(),
  };
}

function aptListsEmpty() {
  try {
    return !readdirSync('/var/lib/apt/lists').some(
      (f) => f.endsWith('_Packages') || f.endsWith('_Packages.lz4'),
    );
  } catch {
    return true;
  }
}

/**
 * How to install `missing` (system package names as on Debian) on `system`: pure, so it is tested
 * for every kind of machine. Returns the commands to run, or the one line to print instead.
 */
export function planSystemInstall(missing, system) {
  if (missing.length === 0) return { kind: 'none', commands: [] };
  const debian = system.platform === 'linux' && /\b(debian|ubuntu)\b/.test(system.osId) && system.aptGet;
  if (debian) {
    const names = missing.map((m) => PACKAGES.apt[m]);
    const install = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...names];
    const exact = `sudo apt-get update && sudo apt-get install -y ${names.join(' ')}`;
    if (system.isRoot || system.passwordlessSudo) {
      const prefix = system.isRoot ? [] : ['sudo', '-n'];
      const env = ['env', 'DEBIAN_FRONTEND=noninteractive'];
      const update = [...prefix, 'apt-get', 'update', '-q'];
      return {
        kind: 'apt',
        // A fresh container has no package lists: update first; otherwise only if install fails.
        updateFirst: system.aptListsEmpty,
        update,
        commands: [[...prefix, ...env, ...install]],
        exact,
      };
    }
    return { kind: 'manual', commands: [], exact, reason: 'not root, and sudo asks for a password' };
  }
  if (system.platform === 'darwin') {
    const commands = missing.map((m) => ['brew', 'install', ...PACKAGES.brew[m].split(' ')]);
    const exact = commands.map((c) => c.join(' ')).join(' && ');
    if (system.brew) return { kind: 'brew', commands, exact };
    return { kind: 'manual', commands: [], exact, reason: 'Homebrew (https://brew.sh) is not installed' };
  }
  return {
    kind: 'manual',
    commands: [],
    exact: `install ${missing.map((m) => PACKAGES.apt[m]).join(' and ')} with your package manager`,
    reason: 'no apt-get or Homebrew here',
  };
}

/** The one line printed when we cannot install `missing` ourselves. */
export function manualLine(missing, plan, alternative) {
  const what = missing.join(' and ');
  const or = alternative ? ` (or ${alternative})` : '';
  return `setup: ${what} ${missing.length === 1 ? 'is' : 'are'} needed and cannot be installed from here (${plan.reason}). Run: ${plan.exact}${or}`;
}

function run(command, say, env) {
  say(`setup: $ ${command.join(' ')}`);
  // Output goes to stderr: stdout may be someone's pipe (`npm start | tee`), installs are noise there.
  const result = spawnSync(command[0], command.slice(1), { stdio: ['inherit', 2, 2], env });
  return result.status === 0;
}

/**
 * Installs what `needs` lists and is missing. Returns true when everything is there; false after
 * printing the line that says what to run (the caller exits 1).
 */
export function ensure(needs, options = {}) {
  const root = options.root ?? ROOT;
  const env = options.env ?? process.env;
  const say = options.say ?? ((line) => process.stderr.write(`${line}\n`));

  if (needs.modules) {
    const state = modulesState(root);
    if (state !== 'ok') {
      const why =
        state === 'missing' ? 'node_modules is missing' : 'node_modules is older than package-lock.json';
      const ort = env.ONNXRUNTIME_NODE_INSTALL ?? 'skip';
      say(
        `setup: ${why}: installing the node modules with npm ci (ONNXRUNTIME_NODE_INSTALL=${ort}${ort === 'skip' ? ': CPU only, no CUDA download' : ''})…`,
      );
      const npm = env.npm_execpath ? [process.execPath, env.npm_execpath] : ['npm'];
      const ok = run([...npm, 'ci', '--no-audit', '--no-fund'], say, {
        ...env,
        ONNXRUNTIME_NODE_INSTALL: ort,
      });
      if (!ok) {
        say(`setup: npm ci failed (see above). Run it yourself: ONNXRUNTIME_NODE_INSTALL=${ort} npm ci`);
        return false;
      }
    }
  }

  const missing = [];
  if (needs.redis && which('redis-server', env.PATH) === undefined) missing.push('redis-server');
  if (needs.chromium && findChromium(env) === undefined) missing.push('chromium');
  if (missing.length === 0) return true;

  const plan = planSystemInstall(missing, options.system ?? probeSystem(env));
  if (plan.kind === 'manual') {
    say(
      manualLine(
        missing,
        plan,
        needs.redis && missing.includes('redis-server') ? options.redisAlternative : undefined,
      ),
    );
    return false;
  }
  for (const name of missing)
    say(`setup: installing ${name} (${WHY[name]}) with ${plan.kind === 'apt' ? 'apt-get' : 'Homebrew'}…`);
  let ok = true;
  if (plan.kind === 'apt') {
    if (plan.updateFirst) run(plan.update, say, env);
    ok = run(plan.commands[0], say, env);
    if (!ok && !plan.updateFirst) ok = run(plan.update, say, env) && run(plan.commands[0], say, env);
  } else {
    for (const command of plan.commands) ok = ok && run(command, say, env);
  }
  const still = missing.filter(
    (m) => (m === 'chromium' ? findChromium(env) : which(m, env.PATH)) === undefined,
  );
  if (!ok || still.length > 0) {
    say(
      `setup: installing ${still.join(' and ') || missing.join(' and ')} failed (see above). Run: ${plan.exact}`,
    );
    return false;
  }
  return true;
}

/** `npm start` needs modules and, without REDIS_URL, redis-server; `npm test` all three. */
export function needsFor(command, env = process.env) {
  if (command === 'test') return { modules: true, redis: true, chromium: true };
  return { modules: true, redis: !env.REDIS_URL, chromium: false };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const command = process.argv[2] ?? 'start';
  const ok = ensure(needsFor(command), {
    redisAlternative: command === 'start' ? 'set REDIS_URL to a Redis you run' : undefined,
  });
  process.exit(ok ? 0 : 1);
}
