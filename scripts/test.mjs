// `npm test`: installs what is missing (setup.mjs: node modules, redis-server, Chromium), then runs
// the vitest suite with its scratch files on a RAM file system where there is one (scratch.mjs);
// arguments go to vitest (`npm test -- test/app`). The exit code is vitest's.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { scratchEnv } from './scratch.mjs';
import { ensure, findChromium, needsFor, ROOT } from './setup.mjs';

if (!ensure(needsFor('test'))) process.exit(1);
const chromium = findChromium();
const child = spawn(
  process.execPath,
  [join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    cwd: ROOT,
    env: { ...scratchEnv(process.env), ...(chromium === undefined ? {} : { CHROMIUM_PATH: chromium }) },
  },
);
// Ctrl-C reaches vitest directly (same process group): relaying it too would make it a second one.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGINT' ? 130 : 1)));
