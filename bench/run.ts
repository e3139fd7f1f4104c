// Benchmark entry (`npm run bench [-- <module...>] [-- --flag ...]`): runs each listed module,
// prints its table and notes, and writes bench/results/<name>.json (git-ignored).
// Arguments that start with `--` go to the modules; bare words pick modules by name.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { classifyBench } from './classify.js';
import { comparePytorchBench } from './compare-pytorch.js';
import { dalleBench } from './dalle.js';
import { dbInsertBench } from './db-insert.js';
import { generateBench } from './generate.js';
import { graphBench } from './graph.js';
import { type BenchModule, formatTable } from './lib.js';
import { pipelineBench } from './pipeline.js';
import { playgroundBench } from './playground.js';
import { redisMemoryBench } from './redis-memory.js';
import { suiteBench } from './suite.js';
import { tinyStepBench } from './tiny-step.js';
import { winogradBench } from './winograd.js';

const MODULES: readonly BenchModule[] = [
  graphBench,
  classifyBench,
  generateBench,
  tinyStepBench,
  pipelineBench,
  playgroundBench,
  dbInsertBench,
  comparePytorchBench,
  winogradBench,
  redisMemoryBench,
  dalleBench,
  suiteBench,
];

async function main(argv: readonly string[]): Promise<void> {
  const flags = argv.filter((a) => a.startsWith('--'));
  const names = argv.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !MODULES.some((m) => m.name === n));
  if (unknown.length > 0) {
    throw new Error(
      `unknown benchmark ${unknown.join(', ')}; known: ${MODULES.map((m) => m.name).join(', ')}`,
    );
  }
  const selected = names.length > 0 ? MODULES.filter((m) => names.includes(m.name)) : MODULES;
  const outDir = join('bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', node: process.version };
  for (const m of selected) {
    console.log(`\n== ${m.name}: ${m.description}`);
    const t0 = performance.now();
    const result = await m.run(flags);
    const seconds = (performance.now() - t0) / 1000;
    for (const t of result.tables) console.log(`\n${t.title}\n${formatTable(t.rows)}`);
    console.log('');
    for (const note of result.notes) console.log(`- ${note}`);
    console.log(`(${seconds.toFixed(0)} s)`);
    const file = join(outDir, `${m.name}.json`);
    const record = { name: m.name, date: new Date().toISOString(), machine, seconds, flags, ...result };
    writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
    console.log(`wrote ${file}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
