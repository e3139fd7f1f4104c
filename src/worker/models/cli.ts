// `npm run models -- <command>`: writes random-weight model folders (tiny for tests and the offline
// demo, full-size for benchmarks), downloads and converts real weights, and checks a model folder's
// weights against its config.
//   random --preset tiny|full --out DIR [--seed N] [--dtype f32|f16] [--dalle]
//   pull [--clip REPO] [--vqgan NAME] [--only clip|vqgan|dalle] [--dalle] [--out DIR] ...
//   check DIR
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MINDALLE_13B, pullDalle } from '../dalle/pull.js';
import { writeRandomDallePreset } from '../dalle/random.js';
import { checkModelFolder } from './check.js';
import type { DownloadProgress } from './pull/download.js';
import {
  KNOWN_VQGANS,
  type PullOptions,
  pullClip,
  pullVqgan,
  type VqganSource,
  withPullLock,
} from './pull/pull.js';
import { writeRandomModels } from './random.js';

const USAGE = `usage:
  models random --preset tiny|full --out DIR [--seed N] [--dtype f32|f16] [--dalle]
      --dalle also writes DIR/dalle, a random minDALL-E stage 2 (full: 1.3B parameters, 5.2 GB in f32)
  models pull [--out DIR] [--only clip|vqgan|dalle] [--dalle] [--dtype f32|f16] [--keep-downloads]
              [--clip REPO] [--clip-revision REV]
              [--vqgan NAME] [--vqgan-url URL --vqgan-config-url URL] [--vqgan-sha256 HEX]
      DIR defaults to $MODELS_DIR or ./models; REPO to openai/clip-vit-base-patch32 (from $HF_ENDPOINT,
      default https://huggingface.co, with $HF_TOKEN when set); NAME to vqgan_imagenet_f16_16384
      (known: ${Object.keys(KNOWN_VQGANS).join(', ')}). An interrupted pull resumes when run again.
      --dalle (or --only dalle) also pulls minDALL-E 1.3B (Kakao Brain's archive, ~5 GB) into DIR/dalle,
      [--dalle-url URL] [--dalle-sha256 HEX] for another copy of it.
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
      dalle: { type: 'boolean', default: false },
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
  const dalleDir = join(values.out, 'dalle');
  const dalle = values.dalle
    ? writeRandomDallePreset(dalleDir, values.preset, { seed, dtype: values.dtype === 'f16' ? 'F16' : 'F32' })
    : undefined;
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`wrote ${r.clipDir} (${r.clipParameters.toLocaleString('en')} parameters)`);
  if (dalle) console.log(`wrote ${dalleDir} (${dalle.parameters.toLocaleString('en')} parameters)`);
  console.log(`wrote ${r.vqganDir} (${r.vqganParameters.toLocaleString('en')} parameters) in ${secs} s`);
}

/** Every parameter the config implies must be in the file with its shape; extra tensors are listed. */
async function check(args: string[]): Promise<boolean> {
  const dir = args[0];
  if (!dir || args.length !== 1) throw new UsageError('check takes one model folder');
  const { model, expectedParameters, problems, unused: extra } = await checkModelFolder(dir);
  console.log(`${dir}: ${model.kind}, ${expectedParameters.toLocaleString('en')} parameters expected`);
  for (const p of problems) console.log(`  ${p}`);
  // Checkpoints carry buffers (position_ids) and training-only tensors (loss.*): worth seeing, not errors.
  if (extra.length)
    console.log(
      `  ${extra.length} tensors not used: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
    );
  console.log(problems.length ? `  ${problems.length} problems` : '  ok');
  return problems.length === 0;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** Progress on stderr: one updating line on a terminal, a line every 10 s (and at the end) otherwise. */
function progressPrinter(stream: NodeJS.WriteStream): (p: DownloadProgress) => void {
  const started = new Map<string, { at: number; from: number; printed: number }>();
  return (p) => {
    const now = Date.now();
    let s = started.get(p.label);
    if (!s) {
      s = { at: now, from: p.received, printed: 0 };
      started.set(p.label, s);
    }
    if (!stream.isTTY && !p.done && now - s.printed < 10_000) return;
    s.printed = now;
    const rate = (p.received - s.from) / Math.max(0.001, (now - s.at) / 1000);
    const of =
      p.total === undefined ? '' : ` / ${mb(p.total)} (${((100 * p.received) / p.total).toFixed(0)}%)`;
    const resumed = p.resumedFrom ? `, resumed at ${mb(p.resumedFrom)}` : '';
    const line = `${p.label}: ${mb(p.received)}${of}, ${mb(rate)}/s${resumed}${p.done ? ', done' : ''}`;
    if (stream.isTTY) stream.write(`\r\x1b[K${line}${p.done ? '\n' : ''}`);
    else stream.write(`${line}\n`);
  };
}

async function pull(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      out: { type: 'string' },
      only: { type: 'string' },
      clip: { type: 'string', default: 'openai/clip-vit-base-patch32' },
      'clip-revision': { type: 'string', default: 'main' },
      vqgan: { type: 'string', default: 'vqgan_imagenet_f16_16384' },
      'vqgan-url': { type: 'string' },
      'vqgan-config-url': { type: 'string' },
      'vqgan-sha256': { type: 'string' },
      dtype: { type: 'string', default: 'f32' },
      'keep-downloads': { type: 'boolean', default: false },
      dalle: { type: 'boolean', default: false },
      'dalle-url': { type: 'string' },
      'dalle-sha256': { type: 'string' },
    },
  });
  if (
    values.only !== undefined &&
    values.only !== 'clip' &&
    values.only !== 'vqgan' &&
    values.only !== 'dalle'
  ) {
    throw new UsageError('--only must be clip, vqgan or dalle');
  }
  const dalleSha = values['dalle-sha256']?.toLowerCase();
  if (dalleSha !== undefined && !/^[0-9a-f]{64}$/.test(dalleSha))
    throw new UsageError('--dalle-sha256 must be 64 hex digits');
  if (values.dtype !== 'f32' && values.dtype !== 'f16') throw new UsageError('--dtype must be f32 or f16');
  if (!/^[\w.-]+\/[\w.-]+$/.test(values.clip))
    throw new UsageError(`--clip must be OWNER/NAME, got ${values.clip}`);
  const sha = values['vqgan-sha256']?.toLowerCase();
  if (sha !== undefined && !/^[0-9a-f]{64}$/.test(sha))
    throw new UsageError('--vqgan-sha256 must be 64 hex digits');
  const known = KNOWN_VQGANS[values.vqgan];
  const ckptUrl = values['vqgan-url'] ?? known?.checkpointUrl;
  const configUrl = values['vqgan-config-url'] ?? known?.configUrl;
  if (!ckptUrl || !configUrl) {
    throw new UsageError(
      `unknown VQGAN ${values.vqgan}: give --vqgan-url and --vqgan-config-url (taming's last.ckpt and model.yaml)`,
    );
  }
  const vqgan: VqganSource = { checkpointUrl: ckptUrl, configUrl, ...(sha ? { sha256: sha } : {}) };
  const outDir = values.out ?? env.MODELS_DIR ?? './models';
  const options: PullOptions = {
    outDir,
    hfEndpoint: env.HF_ENDPOINT || 'https://huggingface.co',
    revision: values['clip-revision'],
    dtype: values.dtype === 'f16' ? 'F16' : 'F32',
    keepDownloads: values['keep-downloads'],
    onProgress: progressPrinter(process.stderr),
    log: (line) => console.error(line),
    ...(env.HF_TOKEN ? { hfToken: env.HF_TOKEN } : {}),
  };
  await withPullLock(outDir, async () => {
    if (values.only === 'dalle' || (values.only === undefined && values.dalle)) {
      const url = values['dalle-url'] ?? MINDALLE_13B.archiveUrl;
      const r = await pullDalle({ archiveUrl: url, ...(dalleSha ? { sha256: dalleSha } : {}) }, options);
      console.log(
        `wrote ${r.dir} (${r.parameters.toLocaleString('en')} parameters, with its VQGAN) from ${url}`,
      );
      if (values.only === 'dalle') return;
    }
    if (values.only !== 'vqgan') {
      const r = await pullClip(values.clip, options);
      console.log(`wrote ${r.dir} (${r.parameters.toLocaleString('en')} parameters) from ${values.clip}`);
    }
    if (values.only !== 'clip') {
      const r = await pullVqgan(vqgan, options);
      console.log(`wrote ${r.dir} (${r.parameters.toLocaleString('en')} parameters) from ${ckptUrl}`);
    }
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'random') {
      random(rest);
      return 0;
    }
    if (command === 'check') return (await check(rest)) ? 0 : 1;
    if (command === 'pull') {
      await pull(rest, process.env);
      return 0;
    }
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
