// `npm run models -- <command>`: writes random-weight model folders (tiny for tests and the offline
// demo, full-size for benchmarks) and checks a model folder's weights against its config.
//   random --preset tiny|full --out DIR [--seed N] [--dtype f32|f16]
//   check DIR
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { clipParameterShapes, countParameters, loadModelConfig, vqganParameterShapes } from './config.js';
import { writeRandomModels } from './random.js';
import { Weights } from './weights.js';

const USAGE = `usage:
  models random --preset tiny|full --out DIR [--seed N] [--dtype f32|f16]
  models check DIR`;

class UsageError extends Error {}

function random(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      dtype: { type: 'string', default: 'f32' },
    },
  });
  if (values.preset !== 'tiny' && values.preset !== 'full')
    throw new UsageError('--preset must be tiny or full');
  if (!values.out) throw new UsageError('--out DIR is required');
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new UsageError(`--seed must be an integer in [0, 2^32), got ${values.seed}`);
  }
  if (values.dtype !== 'f32' && values.dtype !== 'f16') throw new UsageError('--dtype must be f32 or f16');
  const started = Date.now();
  const r = writeRandomModels({
    preset: values.preset,
    outDir: values.out,
    seed,
    dtype: values.dtype === 'f16' ? 'F16' : 'F32',
  });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`wrote ${r.clipDir} (${r.clipParameters.toLocaleString('en')} parameters)`);
  console.log(`wrote ${r.vqganDir} (${r.vqganParameters.toLocaleString('en')} parameters) in ${secs} s`);
}

/** Every parameter the config implies must be in the file with its shape; extra tensors are listed. */
async function check(args: string[]): Promise<boolean> {
  const dir = args[0];
  if (!dir || args.length !== 1) throw new UsageError('check takes one model folder');
  const model = await loadModelConfig(dir);
  const shapes =
    model.kind === 'clip' ? clipParameterShapes(model.config) : vqganParameterShapes(model.config);
  const weights = Weights.fromFile(join(dir, 'model.safetensors'));
  try {
    const problems: string[] = [];
    const expected = new Set<string>();
    for (const [name, shape] of shapes) {
      expected.add(name);
      if (!weights.has(name)) problems.push(`missing ${name} ${JSON.stringify(shape)}`);
      else if (JSON.stringify(weights.shape(name)) !== JSON.stringify(shape)) {
        problems.push(
          `${name}: shape ${JSON.stringify(weights.shape(name))}, expected ${JSON.stringify(shape)}`,
        );
      }
    }
    const extra = weights.names().filter((n) => !expected.has(n));
    console.log(`${dir}: ${model.kind}, ${countParameters(shapes).toLocaleString('en')} parameters expected`);
    for (const p of problems) console.log(`  ${p}`);
    // Checkpoints carry buffers (position_ids) and training-only tensors (loss.*): worth seeing, not errors.
    if (extra.length)
      console.log(
        `  ${extra.length} tensors not used: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
      );
    console.log(problems.length ? `  ${problems.length} problems` : '  ok');
    return problems.length === 0;
  } finally {
    weights.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'random') {
      random(rest);
      return 0;
    }
    if (command === 'check') return (await check(rest)) ? 0 : 1;
    throw new UsageError(command ? `unknown command ${command}` : 'no command');
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      console.error(`${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    console.error((err as Error).message);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
