// `npm run soak [-- <module...>] [-- --quick] [-- --follow] [-- --discord-users=N ...]`: faults and load at full scale, loopback only,
// bounded in time (a few minutes in all on two cores) and not part of `npm test` (whose
// test/reliability/ files check the same at small scale). Prints each module's table and writes
// bench/results/soak-<name>.json; docs/RELIABILITY.md records the figures. Exits 1 when a check
// did not hold (a job lost or posted twice, a quota broken...); a missed speed goal is a figure.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { formatTable } from '../lib.js';
import { aofSoak } from './aof.js';
import { burstSoak } from './burst-soak.js';
import { composeRedisSoak } from './compose-redis.js';
import type { SoakModule } from './lib.js';

const MODULES: readonly SoakModule[] = [aofSoak, burstSoak, composeRedisSoak];

async function main(argv: readonly string[]): Promise<boolean> {
  const quick = argv.includes('--quick');
  const flags: Record<string, string> = {};
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m) flags[m[1]!] = m[2] ?? 'true';
  }
  const names = argv.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !MODULES.some((m) => m.name === n));
  if (unknown.length > 0)
    throw new Error(
      `unknown soak module ${unknown.join(', ')}; known: ${MODULES.map((m) => m.name).join(', ')}`,
    );
  const selected = names.length > 0 ? MODULES.filter((m) => names.includes(m.name)) : MODULES;
  const outDir = resolve('bench', 'results');
  const dataRoot = join(outDir, 'soak-data');
  mkdirSync(dataRoot, { recursive: true });
  const failed: string[] = [];
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', node: process.version };
  for (const m of selected) {
    console.log(`\n== soak ${m.name}: ${m.description}`);
    const load = loadavg()[0]!;
    const t0 = performance.now();
    const result = await m.run({ quick, dataRoot, flags });
    const seconds = (performance.now() - t0) / 1000;
    for (const t of result.tables) console.log(`\n${t.title}\n${formatTable(t.rows)}`);
    console.log('');
    for (const note of result.notes) console.log(`- ${note}`);
    for (const failure of result.failures) console.log(`- FAILS: ${failure}`);
    if (result.failures.length > 0) failed.push(m.name);
    console.log(
      `(${seconds.toFixed(0)} s; load average ${load.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after)`,
    );
    const file = join(outDir, `soak-${m.name}.json`);
    const record = {
      name: m.name,
      date: new Date().toISOString(),
      machine,
      quick,
      seconds,
      loadBefore: load,
      ...result,
    };
    writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
    console.log(`wrote ${file}`);
  }
  // A check that did not hold fails the run (exit 1), after every selected module has reported.
  if (failed.length > 0) console.log(`\nsoak FAILS in ${failed.join(', ')}`);
  return failed.length === 0;
}

main(process.argv.slice(2)).then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
