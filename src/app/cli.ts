// `npx vqclip <command>`: imagine, whatis, search and db (status, index) from a terminal. Runs the worker's processor
// functions in this process (no Redis, blobs in memory), prints a progress bar on stderr, and with
// --json prints one machine-readable JSON document on stdout instead of text.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  renderError,
  renderImagineProgress,
  renderImagineResult,
  renderLabels,
  renderSearchHits,
  renderStaleNote,
} from '../bots/core/render.js';
import { libraryScope } from '../bots/web/library.js';
import { type Database, type OpenDatabaseOptions, openDatabase } from '../shared/db/index.js';
import { asCodedError, BadInputError, CodedError, ImageTooLargeError } from '../shared/errors.js';
import { DefaultImageLimits } from '../shared/image/decode.js';
import { type ImagineProgress, jobLimits, presets } from '../shared/jobs.js';
import { MemoryBlobs } from '../worker/processors/blobs.js';
import { runClassify } from '../worker/processors/classify.js';
import { runImagine } from '../worker/processors/imagine.js';
import { runSearch } from '../worker/processors/search.js';
import { lockDirectory } from '../worker/runtime/dir-lock.js';
import { type LoadModelsOptions, loadModels, type WorkerModels } from '../worker/runtime/models.js';
import { hasModels } from './models-setup.js';

const USAGE = `usage: vqclip <command> [options]

  imagine "PROMPT" [--out FILE] [--steps N] [--size N | --width N --height N]
                   [--preset draft|normal|better] [--seed N] [--timelapse FILE]
      Paints PROMPT (syntax: "a red bicycle:1.5 | rain | blurry:-0.5") into a PNG.
  whatis FILE [--labels "cat, dog, human"] [--top N]
      The top labels of an image (default vocabulary: 1000+ everyday and ImageNet labels).
  search "QUERY" (--dir FOLDER | --channel NAME) [--k N]
      Images that match QUERY: the image files of FOLDER (embedded now), or a playground
      library channel from the index in DATA_DIR (stop \`npm start\` first: PGlite has one user).
  db status | db index
      status: images (per embedding model), the HNSW index's state. index: builds the HNSW index that searches of
      channels over 2,000 images walk, when an older database lacks it (PGlite: minutes per 100k
      images, with nothing else using DATA_DIR; Postgres via DATABASE_URL: concurrently, while the
      bots run).

common options:
  --models DIR   model folder (default: $MODELS_DIR or ./models)
  --data DIR     data folder for the index and caches (default: $DATA_DIR or ./data)
  --json         print one JSON document on stdout instead of text
  -h, --help     this help`;

/** A mistake on the command line: exit code 2 and the usage. */
class UsageError extends Error {}

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (the progress bar redraws one line then). */
  isTty: boolean;
  env: Readonly<Record<string, string | undefined>>;
  /** Aborts a running command (Ctrl-C). */
  signal?: AbortSignal;
  /** Overrides of loadModels' options (tests). */
  models?: Partial<LoadModelsOptions>;
}

interface Common {
  json: boolean;
  modelsDir: string;
  dataDir: string;
}

const commonOptions = {
  models: { type: 'string' },
  data: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function common(values: { models?: string; data?: string; json?: boolean }, env: CliIo['env']): Common {
  return {
    json: values.json === true,
    modelsDir: values.models ?? env.MODELS_DIR ?? './models',
    dataDir: values.data ?? env.DATA_DIR ?? './data',
  };
}

function intOption(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}]`);
  return n;
}

async function openModels(c: Common, io: CliIo): Promise<WorkerModels> {
  if (!(await hasModels(c.modelsDir))) {
    throw new CodedError(
      'model_missing',
      `no models in ${c.modelsDir}: pass --models DIR, or write tiny random ones with ` +
        `\`npm run models -- random --preset tiny --out ${c.modelsDir}\` (npm start does this on first run)`,
    );
  }
  return loadModels(c.modelsDir, {
    providers: (io.env.ORT_PROVIDERS ?? 'cpu').split(',').includes('cuda') ? ['cuda', 'cpu'] : ['cpu'],
    labelCacheDir: join(c.dataDir, 'label-cache'),
    // One image at a time: waiting for a micro-batch to fill only adds latency here.
    batchWaitMs: 0,
    ...io.models,
  });
}

/** Draws `[#####.....] Step 12/50 · loss 1.234 · about 20 s left` on one line, or logs every 10%. */
export class ProgressBar {
  #lastDecile = -1;
  #drawn = false;

  constructor(
    private readonly io: Pick<CliIo, 'stderr' | 'isTty'>,
    private readonly width = 24,
  ) {}

  update(p: ImagineProgress): void {
    const fraction = Math.min(1, p.step / p.steps);
    const filled = Math.round(fraction * this.width);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(this.width - filled)}] ${renderImagineProgress(p)}`;
    if (this.io.isTty) {
      this.io.stderr(`\r\x1b[2K${line}`);
      this.#drawn = true;
      return;
    }
    const decile = Math.floor(fraction * 10);
    if (decile !== this.#lastDecile) {
      this.#lastDecile = decile;
      this.io.stderr(`${line}\n`);
    }
  }

  done(): void {
    if (this.#drawn) this.io.stderr('\n');
    this.#drawn = false;
  }
}

async function imagine(args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...commonOptions,
      out: { type: 'string', short: 'o' },
      steps: { type: 'string' },
      size: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      preset: { type: 'string' },
      seed: { type: 'string' },
      timelapse: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('imagine takes one prompt (quote it)');
  const c = common(values, io.env);
  const size = intOption('size', values.size, jobLimits.minSide, jobLimits.maxSide);
  const width = intOption('width', values.width, jobLimits.minSide, jobLimits.maxSide) ?? size;
  const height = intOption('height', values.height, jobLimits.minSide, jobLimits.maxSide) ?? size;
  if ((width === undefined) !== (height === undefined))
    throw new UsageError('give --size, or both --width and --height');
  const preset = values.preset;
  if (preset !== undefined && !(presets as readonly string[]).includes(preset)) {
    throw new UsageError(`--preset must be one of ${presets.join(', ')}`);
  }
  const steps = intOption('steps', values.steps, 1, jobLimits.maxSteps);
  const seed = intOption('seed', values.seed, 0, 2 ** 32 - 1);
  const data = {
    prompt: positionals[0]!,
    ...(seed === undefined ? {} : { seed }),
    ...(steps === undefined ? {} : { steps }),
    ...(preset === undefined ? {} : { preset }),
    ...(width === undefined || height === undefined ? {} : { size: { width, height } }),
    origin: { platform: 'cli', user: localUser() },
  };

  const models = await openModels(c, io);
  const bar = new ProgressBar(io);
  try {
    const blobs = new MemoryBlobs();
    const result = await runImagine(models, data, {
      blobs,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      onProgress: (p) => bar.update(p),
    });
    bar.done();
    const out = resolve(values.out ?? `imagine-${result.seed}.png`);
    await writeFile(out, (await blobs.get(result.finalBlob))!.bytes);
    let timelapse: string | undefined;
    if (values.timelapse !== undefined && result.timelapseBlob !== undefined) {
      timelapse = resolve(values.timelapse);
      await writeFile(timelapse, (await blobs.get(result.timelapseBlob))!.bytes);
    }
    if (c.json) {
      io.stdout(
        `${JSON.stringify({
          seed: result.seed,
          steps: result.steps,
          lossFirst: result.lossFirst,
          lossLast: result.lossLast,
          outputs: { image: out, ...(timelapse === undefined ? {} : { timelapse }) },
          params: result.params,
          timingsMs: result.timings,
        })}\n`,
      );
    } else {
      io.stdout(`${out}\n${renderImagineResult(result)}\n`);
      if (timelapse) io.stdout(`${timelapse}\n`);
    }
  } finally {
    bar.done();
    await models.close();
  }
}

async function readImageFile(path: string): Promise<Uint8Array> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new BadInputError(`${path} is not a file`);
  // The cap is checked before the file is read, as uploads are checked before their body is.
  if (info.size > DefaultImageLimits.maxBytes) {
    throw new ImageTooLargeError({ bytes: info.size, maxBytes: DefaultImageLimits.maxBytes });
  }
  return new Uint8Array(await readFile(path));
}

async function whatis(args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...commonOptions, labels: { type: 'string' }, top: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new UsageError('whatis takes one image file');
  const c = common(values, io.env);
  const file = resolve(positionals[0]!);
  const topK = intOption('top', values.top, 1, jobLimits.maxTopK) ?? 5;
  const labels = values.labels
    ?.split(',')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const bytes = await readImageFile(file);
  const models = await openModels(c, io);
  try {
    const blobs = new MemoryBlobs();
    const image = await blobs.put(bytes, { contentType: 'application/octet-stream' });
    if (!labels && !c.json)
      io.stderr('using the default vocabulary (the first run embeds it, then it is cached)…\n');
    const result = await runClassify(
      models,
      { image, topK, ...(labels && labels.length > 0 ? { labels } : {}) },
      { blobs, ...(io.signal === undefined ? {} : { signal: io.signal }) },
    );
    if (c.json) {
      io.stdout(`${JSON.stringify({ file, labels: result.labels })}\n`);
    } else {
      io.stdout(`${renderLabels(result.labels)}\n`);
    }
  } finally {
    await models.close();
  }
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.avif', '.tif', '.tiff']);

async function search(args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...commonOptions,
      dir: { type: 'string' },
      channel: { type: 'string' },
      k: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('search takes one query (quote it)');
  if ((values.dir === undefined) === (values.channel === undefined)) {
    throw new UsageError('search needs --dir FOLDER or --channel NAME');
  }
  const c = common(values, io.env);
  const query = positionals[0]!.trim();
  if (query.length === 0 || query.length > jobLimits.queryChars) {
    throw new BadInputError(`the query must have 1 to ${jobLimits.queryChars} characters`);
  }
  const k = intOption('k', values.k, 1, jobLimits.maxSearchK) ?? 5;
  const models = await openModels(c, io);
  let hits: { path: string; score: number }[];
  let staleImages = 0;
  try {
    if (values.dir !== undefined) {
      hits = await searchFolder(models, resolve(values.dir), query, k, io);
    } else {
      ({ hits, staleImages } = await searchIndex(models, c.dataDir, values.channel!, query, k, io));
    }
  } finally {
    await models.close();
  }
  const stale = renderStaleNote(staleImages);
  if (stale && !c.json) {
    io.stderr(`${stale} Re-index them (the playground's Re-index button, or upload them again).\n`);
  }
  if (c.json) {
    io.stdout(`${JSON.stringify({ query, hits, ...(staleImages > 0 ? { staleImages } : {}) })}\n`);
  } else if (hits.length === 0) {
    io.stdout('no images\n');
  } else {
    io.stdout(`${renderSearchHits(hits.map((h) => ({ score: h.score, name: h.path })))}\n`);
  }
}

/** Embeds every image file of a folder now and ranks them by cosine to the query. */
async function searchFolder(
  models: WorkerModels,
  dir: string,
  query: string,
  k: number,
  io: CliIo,
): Promise<{ path: string; score: number }[]> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isFile() && IMAGE_EXTENSIONS.has(extname(d.name).toLowerCase()))
    .map((d) => d.name)
    .sort();
  const [text] = [await models.classifier.embedTexts([query], io.signal)];
  const q = unit(text!);
  const scored: { path: string; score: number }[] = [];
  for (const [i, name] of names.entries()) {
    const path = join(dir, name);
    if (io.isTty) io.stderr(`\r\x1b[2Kembedding ${i + 1}/${names.length} ${name}`);
    try {
      const embedding = unit(await models.images.embed(await readImageFile(path), io.signal));
      scored.push({ path, score: dot(q, embedding) });
    } catch (error) {
      const coded = asCodedError(error);
      if (coded.code === 'cancelled') throw coded;
      // One unreadable file must not spoil the search of a whole folder.
      io.stderr(`${io.isTty ? '\n' : ''}skipped ${name}: ${renderError(coded)}\n`);
    }
  }
  if (io.isTty && names.length > 0) io.stderr('\n');
  return scored.sort((a, b) => b.score - a.score).slice(0, k);
}

/** Searches a playground library channel through the database index in DATA_DIR. */
async function searchIndex(
  models: WorkerModels,
  dataDir: string,
  channel: string,
  query: string,
  k: number,
  io: CliIo,
): Promise<{ hits: { path: string; score: number }[]; staleImages: number }> {
  const options = { embeddingDim: models.embeddingDim, embeddingModel: models.embeddingModel };
  return withDatabase(dataDir, io, options, async (db) => {
    const result = await runSearch(
      models,
      { query, ...libraryScope(channel), k },
      { db, ...(io.signal === undefined ? {} : { signal: io.signal }) },
    );
    return {
      hits: result.hits.map((h) => ({
        path: join(resolve(dataDir), 'library', channel, h.file),
        score: h.score,
      })),
      staleImages: result.staleImages ?? 0,
    };
  });
}

/** Opens the database (DATABASE_URL, else PGlite in `dataDir` under its directory lock), runs `fn`, closes it. */
async function withDatabase<T>(
  dataDir: string,
  io: CliIo,
  options: OpenDatabaseOptions,
  fn: (db: Database) => Promise<T>,
): Promise<T> {
  const databaseUrl = io.env.DATABASE_URL || undefined;
  const lock = databaseUrl === undefined ? await lockDirectory(dataDir) : undefined;
  try {
    const db = await openDatabase({ dataDir, databaseUrl }, options);
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  } finally {
    await lock?.release();
  }
}

/** `db status` and `db index`: the database alone, no models. */
async function db(args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: commonOptions });
  const action = positionals[0];
  if (positionals.length !== 1 || (action !== 'index' && action !== 'status'))
    throw new UsageError('db takes one of: status, index');
  const c = common(values, io.env);
  // Nothing is built at open: `index` builds in the foreground, saying so first.
  await withDatabase(c.dataDir, io, { vectorIndex: { autoBuildMaxRows: -1 } }, async (database) => {
    if (database.embeddingDim === undefined) {
      if (c.json) io.stdout(`${JSON.stringify({ images: 0, index: 'missing', embeddingDim: null })}\n`);
      else io.stdout('no images table yet (a worker creates it with its model)\n');
      return;
    }
    const images = await database.countImages();
    // Which models embedded them: a search ranks only the current model's rows.
    const models = await database.countImagesByModel();
    let index = await database.vectorIndexState();
    let seconds: number | undefined;
    if (action === 'index' && index !== 'ready') {
      if (index === 'building') {
        throw new CodedError('unavailable', 'another process is building the HNSW index now');
      }
      if (!c.json) {
        io.stderr(
          `building the HNSW index over ${images} images${database.info.kind === 'pglite' ? ' (PGlite: minutes per 100k images)' : ' (concurrently)'}…\n`,
        );
      }
      const started = performance.now();
      await database.ensureVectorIndex({ minRows: 0 });
      seconds = (performance.now() - started) / 1000;
      index = await database.vectorIndexState();
    }
    if (c.json) {
      io.stdout(
        `${JSON.stringify({ images, index, embeddingDim: database.embeddingDim, models, ...(seconds === undefined ? {} : { seconds }) })}\n`,
      );
    } else {
      io.stdout(`images: ${images}\nembedding dimension: ${database.embeddingDim}\nHNSW index: ${index}\n`);
      for (const m of models) {
        io.stdout(
          `  ${m.images} embedded by ${m.model === null ? 'an unknown model (indexed before models were recorded)' : `model ${m.model.slice(0, 16)}`}\n`,
        );
      }
      if (seconds !== undefined) io.stdout(`built in ${seconds.toFixed(1)} s\n`);
      else if (index !== 'ready') io.stdout('build it with: npx vqclip db index\n');
    }
  });
}

function unit(v: ArrayLike<number>): Float32Array {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!;
  const s = n > 0 ? 1 / Math.sqrt(n) : 0;
  return Float32Array.from(v, (x) => x * s);
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function localUser(): string {
  try {
    return userInfo().username || 'local';
  } catch {
    return 'local';
  }
}

const commands: Record<string, (args: string[], io: CliIo) => Promise<void>> = {
  imagine,
  whatis,
  search,
  db,
};

/** Runs one command line; returns the exit code (0 ok, 1 failed, 2 usage, 130 interrupted). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.stdout(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.stderr(`unknown command "${name}"\n\n${USAGE}\n`);
    return 2;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    io.stdout(`${USAGE}\n`);
    return 0;
  }
  try {
    await command(rest, io);
    return 0;
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`${(error as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    const coded = asCodedError(error);
    if (coded.code === 'cancelled') {
      io.stderr('\ncancelled\n');
      return 130;
    }
    // Operator-facing messages (model_missing, unavailable) say what to do; users' get the sentence.
    const text =
      coded.code === 'model_missing' || coded.code === 'unavailable' ? coded.message : renderError(coded);
    if (argv.includes('--json')) {
      io.stdout(`${JSON.stringify({ error: { code: coded.code, message: text } })}\n`);
    }
    io.stderr(`vqclip ${name}: ${text}\n`);
    if (coded.code === 'internal' && error instanceof Error && error.stack && io.env.DEBUG)
      io.stderr(`${error.stack}\n`);
    return 1;
  }
}

/** The program: process arguments, streams and Ctrl-C (a second Ctrl-C exits at once). */
export async function cliMain(): Promise<void> {
  const controller = new AbortController();
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    controller.abort();
  });
  process.exitCode = await runCli(process.argv.slice(2), {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    isTty: process.stderr.isTTY === true,
    env: process.env,
    signal: controller.signal,
  });
}

// `tsx src/app/cli.ts ...` runs it; bin/vqclip.js imports it and calls cliMain.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  void cliMain();
}
