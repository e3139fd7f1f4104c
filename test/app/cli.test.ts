// The CLI in process (runCli with captured streams) on tiny random models written once for the file:
// --json output of imagine, whatis and search checked against the processors' own numbers.

import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, joinNegativeValues, ProgressBar, runCli } from '../../src/app/cli.js';
import { cliLimits, cliPresets } from '../../src/app/cli-limits.js';
import { Library } from '../../src/bots/web/library.js';
import { Database, migrate, migrations, openDatabase } from '../../src/shared/db/index.js';
import { jobLimits, presets } from '../../src/shared/jobs.js';
import { writeRandomModels } from '../../src/worker/models/random.js';
import { MemoryBlobs } from '../../src/worker/processors/blobs.js';
import { runEmbedImage } from '../../src/worker/processors/embed-image.js';
import { loadModels, type WorkerModels } from '../../src/worker/runtime/models.js';
import { seedDataDir } from '../helpers/worker-process.js';

let dir: string;
let modelsDir: string;
let dataDir: string;
let imagesDir: string;
let models: WorkerModels;

const COLOURS = { red: [220, 20, 20], green: [20, 200, 40], blue: [30, 40, 230] } as const;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vqclip-cli-'));
  modelsDir = join(dir, 'models');
  dataDir = join(dir, 'data');
  imagesDir = join(dir, 'images');
  writeRandomModels({ preset: 'tiny', outDir: modelsDir, seed: 0 });
  await mkdir(imagesDir);
  for (const [name, [r, g, b]] of Object.entries(COLOURS)) {
    // A gradient, not a flat colour: flat images of different colours can embed almost alike.
    const px = Buffer.alloc(40 * 40 * 3);
    for (let i = 0; i < 1600; i++) px.set([r, g, Math.min(255, b + (i % 40) * 2)], i * 3);
    await sharp(px, { raw: { width: 40, height: 40, channels: 3 } })
      .png()
      .toFile(join(imagesDir, `${name}.png`));
  }
  await writeFile(join(imagesDir, 'notes.png'), 'not an image');
  models = await loadModels(modelsDir);
  // A migrated PGlite in DATA_DIR already (saves PGlite's initdb; `vqclip db` below opens its own).
  await seedDataDir(dataDir, models.embeddingDim);
});

afterAll(async () => {
  await models?.close();
  await rm(dir, { recursive: true, force: true });
});

/** runCli with `argv` as given, its output captured (no TTY, empty environment). */
async function capture(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    isTty: false,
    env: {},
  };
  const code = await runCli(argv, io);
  return { code, stdout, stderr };
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return capture([...args, '--models', modelsDir, '--data', dataDir]);
}

function unit(v: ArrayLike<number>): Float32Array {
  const n = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / n);
}

describe('vqclip imagine --json', () => {
  it('writes the PNG and timelapse and reports seed, steps, first and last loss and paths; same seed, same image', async () => {
    const out = join(dir, 'a.png');
    const timelapse = join(dir, 'a.webp');
    const args = [
      'imagine',
      'a red apple | blurry:-0.5',
      '--size',
      '64',
      '--steps',
      '3',
      '--preset',
      'draft',
    ];
    const first = await cli([...args, '--seed', '7', '--out', out, '--timelapse', timelapse, '--json']);
    expect(first.code).toBe(0);
    // The progress bar stays on stderr with --json too: stdout holds only the document.
    expect(first.stderr).toMatch(/Step 1\/3 · loss \d\.\d{3}/);
    const report = JSON.parse(first.stdout) as {
      seed: number;
      steps: number;
      lossFirst: number;
      lossLast: number;
      outputs: { image: string; timelapse: string };
      params: { width: number; height: number; preset: string };
    };
    expect(report.seed).toBe(7);
    expect(report.steps).toBe(3);
    expect(report.outputs).toEqual({ image: out, timelapse });
    expect(report.params).toMatchObject({ width: 64, height: 64, preset: 'draft' });
    // Spherical distances of unit vectors (weighted sum with weights 1 and -0.5) are bounded.
    for (const loss of [report.lossFirst, report.lossLast]) {
      expect(Number.isFinite(loss)).toBe(true);
      expect(Math.abs(loss)).toBeLessThan(4);
    }
    expect(report.lossLast).not.toBe(report.lossFirst);

    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    const stats = await sharp(out).stats();
    // Random weights paint noise, not a flat image.
    expect(stats.channels[0]!.stdev).toBeGreaterThan(1);
    expect((await sharp(timelapse).metadata()).format).toBe('webp');

    // Without a TTY the bar logs lines (every tenth of the run) on stderr, never on stdout.
    const again = await cli([...args, '--seed', '7', '--out', join(dir, 'b.png')]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/\] Step 3\/3 · loss \d\.\d{3}\n/);
    expect(again.stdout).toContain(join(dir, 'b.png'));
    expect(again.stdout).toMatch(/^Seed 7 · 3 steps · 64×64 · loss \d\.\d{3} → \d\.\d{3} · \d+\.\d s$/m);
    expect(await readFile(join(dir, 'b.png'))).toEqual(await readFile(out));
  });

  it('exits 2 on usage mistakes and 1 with the sentence on bad input', async () => {
    expect((await cli(['imagine'])).code).toBe(2);
    expect((await cli(['imagine', 'x', '--size', '65000'])).code).toBe(2);
    expect((await cli(['imagine', 'x', '--bogus'])).code).toBe(2);
    expect((await cli(['paint', 'x'])).code).toBe(2);
    const bad = await cli(['imagine', 'blurry:-1', '--steps', '1', '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toEqual({
      error: {
        code: 'bad_input',
        message: 'At least one part of the prompt needs a positive weight.',
      },
    });
  });
});

describe('vqclip whatis --json', () => {
  it('gives the labels with probabilities, best first, as the classifier computes them', async () => {
    const file = join(imagesDir, 'red.png');
    const { code, stdout } = await cli([
      'whatis',
      file,
      '--labels',
      'a cat, a red square, the sea',
      '--json',
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { file: string; labels: { label: string; prob: number }[] };
    expect(report.file).toBe(file);
    expect(report.labels.map((l) => l.label).sort()).toEqual(['a cat', 'a red square', 'the sea']);
    const probs = report.labels.map((l) => l.prob);
    expect(probs).toEqual([...probs].sort((a, b) => b - a));
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    // The same numbers as the classifier on the same image.
    const direct = await models.classifier.classify(await readFile(file), {
      labels: ['a cat', 'a red square', 'the sea'],
    });
    for (const p of direct.predictions) {
      expect(report.labels.find((l) => l.label === p.label)!.prob).toBeCloseTo(p.probability, 6);
    }
  });

  it('reports a file that is not an image', async () => {
    const { code, stderr } = await cli(['whatis', join(imagesDir, 'notes.png'), '--labels', 'a, b']);
    expect(code).toBe(1);
    expect(stderr).toContain('not an image');
  });
});

describe('vqclip search --json', () => {
  it('ranks a folder by cosine to the query and skips unreadable files', async () => {
    const { code, stdout, stderr } = await cli([
      'search',
      'a red square',
      '--dir',
      imagesDir,
      '--k',
      '3',
      '--json',
    ]);
    expect(code).toBe(0);
    expect(stderr).toMatch(/skipped notes\.png/);
    const report = JSON.parse(stdout) as { hits: { path: string; score: number }[] };
    expect(report.hits).toHaveLength(3);
    const [text] = await Promise.all([models.classifier.embedTexts(['a red square'])]);
    const q = unit(text);
    for (const hit of report.hits) {
      const e = unit(await models.images.embed(new Uint8Array(await readFile(hit.path))));
      const cosine = q.reduce((s, v, i) => s + v * e[i]!, 0);
      expect(hit.score).toBeCloseTo(cosine, 5);
    }
    const scores = report.hits.map((h) => h.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
  });

  it('searches a library channel through the PGlite index in DATA_DIR, never another channel', async () => {
    const db = await openDatabase(
      { dataDir },
      { embeddingDim: models.embeddingDim, embeddingModel: models.embeddingModel },
    );
    // A row another model wrote (same dimension): left out, and counted.
    const otherModel = new Database(db.driver, models.embeddingDim, {}, 'another-checkpoint');
    const blobs = new MemoryBlobs();
    try {
      for (const [channel, name, on] of [
        ['holiday', 'red', db],
        ['holiday', 'blue', db],
        ['work', 'green', db],
        ['holiday', 'green', otherModel],
      ] as const) {
        const image = await blobs.put(await readFile(join(imagesDir, `${name}.png`)), {
          contentType: 'image/png',
        });
        await runEmbedImage(
          models,
          { image, platform: 'web', workspace: 'local', channel, message: name, file: `${name}.png` },
          { blobs, db: on },
        );
      }
    } finally {
      await db.close();
    }
    // The playground's manifest names the files as they were uploaded.
    const library = new Library(join(dataDir, 'library'));
    for (const [name, shown] of [
      ['red', 'Red square.png'],
      ['blue', 'Blue sky.png'],
    ] as const) {
      await library.record('holiday', {
        imageId: name,
        file: `${name}.png`,
        name: shown,
        bytes: 1,
        addedAt: new Date(0).toISOString(),
      });
    }
    const { code, stdout } = await cli(['search', 'a red square', '--channel', 'Holiday', '--json']);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { hits: { path: string; score: number }[]; staleImages: number };
    expect(report.hits.map((h) => h.path.split('/').at(-1)).sort()).toEqual(['blue.png', 'red.png']);
    expect(report.staleImages).toBe(1);
    const text = await cli(['search', 'a red square', '--channel', 'holiday']);
    // Names as the playground shows them, not paths inside DATA_DIR.
    expect(
      text.stdout
        .trim()
        .split('\n')
        .map((l) => l.replace(/^-?\d\.\d{3}\s+/, ''))
        .sort(),
    ).toEqual(['Blue sky.png', 'Red square.png']);
    expect(text.stdout).not.toContain(dataDir);
    expect(text.stderr).toContain(
      '1 image was indexed with another model and is left out of searches. Re-index them',
    );
    expect(report.hits[0]!.path).toBe(
      join(dataDir, 'library', 'holiday', report.hits[0]!.path.split('/').at(-1)!),
    );
  });
});

describe('vqclip db', () => {
  it('reports a missing HNSW index of an older database and builds it', async () => {
    const data = join(dir, 'db-data');
    await seedDataDir(data, 'no model');
    const old = await openDatabase({ dataDir: data });
    // The release before migration 6: an images table without the index, holding images.
    await migrate(old.driver, { embeddingDim: 8, list: migrations.slice(0, 5) });
    await old.driver.query(
      `INSERT INTO images (platform, workspace, channel, message, file, content_hash, embedding)
       SELECT 'web', 'local', 'c', 'm', 'f', 'h' || g, '[1,2,3,4,5,6,7,8]'::vector FROM generate_series(1, 7) AS g`,
    );
    await old.close();
    const run = (args: string[]) => capture([...args, '--data', data]);
    const before = await run(['db', 'status', '--json']);
    expect(before.code).toBe(0);
    // Status only looks: opening for it built nothing, small as the table is.
    expect(JSON.parse(before.stdout)).toEqual({
      images: 7,
      index: 'missing',
      embeddingDim: 8,
      // Rows written before models were recorded.
      models: [{ model: null, images: 7 }],
    });
    const text = await run(['db', 'status']);
    expect(text.stdout).toContain('build it with: npx vqclip db index');
    const built = await run(['db', 'index', '--json']);
    expect(built.code).toBe(0);
    expect(JSON.parse(built.stdout)).toMatchObject({ images: 7, index: 'ready', embeddingDim: 8 });
    expect(JSON.parse((await run(['db', 'status', '--json'])).stdout)).toMatchObject({ index: 'ready' });
    expect((await run(['db', 'rebuild'])).code).toBe(2);
  });
});

describe('ProgressBar', () => {
  it('redraws one line on a terminal and logs tenths otherwise', () => {
    let tty = '';
    const bar = new ProgressBar({ isTty: true, stderr: (t) => (tty += t) }, 10);
    bar.update({ step: 5, steps: 10, loss: 1.23456, etaSeconds: 12 });
    bar.done();
    expect(tty).toBe('\r\x1b[2K[#####.....] Step 5/10 · loss 1.235 · about 12 s left\n');
    let log = '';
    const plain = new ProgressBar({ isTty: false, stderr: (t) => (log += t) }, 4);
    for (let step = 1; step <= 20; step++) plain.update({ step, steps: 20, loss: 1, etaSeconds: 20 - step });
    // Steps 1..20 of 20 cross tenths at 2, 4, ..., 20 and start in the first: 11 lines at most.
    const lines = log.trim().split('\n');
    expect(lines.length).toBe(11);
    expect(lines.at(-1)).toBe('[####] Step 20/20 · loss 1.000');
  });
});

// What a newcomer met in the CLI (issue 15): each failed before its fix.
describe('vqclip first run', () => {
  // No models there: a check that ran after loading them would report model_missing instead.
  const noModels = ['--models', '/nonexistent-models', '--data', '/nonexistent-data'];
  const run = (args: string[]) => capture([...args, ...noModels]);

  it('checks --out and --timelapse before any work, and names the real cause', async () => {
    const folder = await cli(['imagine', 'x', '--steps', '1', '--out', dir]);
    expect(folder.code).toBe(1);
    expect(folder.stderr).toBe(`vqclip imagine: ${dir}: is a folder; give a file name\n`);
    const missing = await run(['imagine', 'x', '--out', join(dir, 'no', 'such', 'a.png')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`vqclip imagine: ${join(dir, 'no', 'such')}: does not exist (ENOENT)\n`);
    expect(missing.stderr).not.toMatch(/Something went wrong/);
    const gif = await run(['imagine', 'x', '--timelapse', join(dir, 't.gif')]);
    expect(gif.code).toBe(2);
    expect(gif.stderr).toMatch(/^--timelapse .*t\.gif: a timelapse is an animated WebP: name it \.webp/);
    const bmp = await run(['imagine', 'x', '--out', join(dir, 'x.bmp')]);
    expect(bmp.code).toBe(2);
    expect(bmp.stderr).toMatch(/images are written as PNG, JPEG or WebP/);
    const nodir = await run(['search', 'cat', '--dir', join(dir, 'nope')]);
    expect(nodir.code).toBe(1);
    expect(nodir.stderr).toBe(`vqclip search: ${join(dir, 'nope')}: does not exist (ENOENT)\n`);
    const nofile = await run(['whatis', join(dir, 'nope.png')]);
    expect(nofile.stderr).toBe(`vqclip whatis: ${join(dir, 'nope.png')}: does not exist (ENOENT)\n`);
  });

  it('writes the format the file name asks for', async () => {
    for (const [name, format] of [
      ['c.jpg', 'jpeg'],
      ['c.webp', 'webp'],
    ] as const) {
      const out = join(dir, name);
      const r = await cli(['imagine', 'a cat', '--size', '64', '--steps', '1', '--seed', '1', '--out', out]);
      expect(r.code, r.stderr).toBe(0);
      expect((await sharp(out).metadata()).format).toBe(format);
    }
  });

  it('says the size rule for negative and odd sizes, and refuses an empty label list', async () => {
    expect(joinNegativeValues(['--size', '-64', 'x', '--k', '-1'])).toEqual(['--size=-64', 'x', '--k=-1']);
    for (const size of ['-64', '100', '2048']) {
      const r = await run(['imagine', 'x', '--size', size]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^--size must be 64 to 1024 pixels, a multiple of 16\n/);
      expect(r.stderr).not.toMatch(/ambiguous/);
    }
    expect((await run(['--help'])).stdout).toMatch(/64 to 1024 pixels, a multiple of 16/);
    const labels = await run(['whatis', join(imagesDir, 'red.png'), '--labels', ' , ']);
    expect(labels.code).toBe(2);
    expect(labels.stderr).toMatch(/^--labels needs at least one label/);
  });

  it("takes images up to the playground's limit, one limit for both", async () => {
    const big = join(dir, 'big.png');
    await writeFile(big, Buffer.alloc(10 * 1024 * 1024 + 1));
    const r = await run(['whatis', big]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'vqclip whatis: That image is 10 MiB; the limit is 10 MiB. Please send a smaller one.\n',
    );
  });

  it("keeps its limits equal to the job schema's", () => {
    for (const [key, value] of Object.entries(cliLimits))
      expect(value, key).toBe(jobLimits[key as keyof typeof jobLimits]);
    expect([...cliPresets]).toEqual([...presets]);
  });

  it('loads nothing heavy before it has something to do', async () => {
    // Every module the process resolves, logged by a loader hook: --help and a usage mistake must
    // not pay for ONNX Runtime, BullMQ, zod, sharp or PGlite (about two seconds on these machines).
    const hooks = join(dir, 'hooks.mjs');
    const log = join(dir, 'resolved.txt');
    await writeFile(
      hooks,
      `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
}`,
    );
    const register = join(dir, 'register.mjs');
    await writeFile(
      register,
      `import { register } from 'node:module'; register(${JSON.stringify(`file://${hooks}`)});`,
    );
    const root = new URL('../../', import.meta.url).pathname;
    for (const args of [['--help'], ['imagine', 'x', '--size', '-64']]) {
      const r = spawnSync(process.execPath, ['--import', register, join(root, 'bin/vqclip.js'), ...args], {
        cwd: root,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(args[0] === '--help' ? 0 : 2);
    }
    const resolved = await readFile(log, 'utf8');
    // The compiled CLI (scripts/build.mjs), from a build already made: not even the compiler loads.
    expect(resolved).toMatch(/\/dist\/run-[0-9a-f]+\/src\/app\/cli\.js\n/);
    for (const heavy of [
      'onnxruntime-node',
      'bullmq',
      '/zod/',
      '/sharp/',
      '@electric-sql/pglite',
      'ioredis',
      '/esbuild/',
    ])
      expect(resolved, heavy).not.toContain(heavy);
  });
});
