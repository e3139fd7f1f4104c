// `npx vqclip <command>`: imagine, whatis, search and db (status, index) from a terminal. Runs the worker's processor
// functions in this process (no Redis, blobs in memory), prints a progress bar on stderr, and with
// --json prints one machine-readable JSON document on stdout instead of text. Arguments and the
// files named are checked before anything heavy loads (models, ONNX Runtime, the database): a
// mistake is reported at once, with the real cause (the path, the system's error), not after a run.
import { access, constants, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  renderChannelRule,
  renderError,
  renderFileProblem,
  renderImagineProgress,
  renderImagineResult,
  renderLabels,
  renderSearchHits,
  renderSizeRule,
  renderStaleNote,
} from '../bots/core/render.js';
import { channelFromName, libraryScope, UPLOAD_MAX_BYTES } from '../bots/web/channels.js';
import type { Database, OpenDatabaseOptions } from '../shared/db/index.js';
import { asCodedError, BadInputError, CodedError, ImageTooLargeError } from '../shared/errors.js';
import type { ImagineProgress } from '../shared/jobs.js';
import type { LoadModelsOptions, WorkerModels } from '../worker/runtime/models.js';
import { cliDrawers as drawers, cliLimits as jobLimits, cliPresets as presets } from './cli-limits.js';

const USAGE = `usage: vqclip <command> [options]

  imagine "PROMPT" [--out FILE] [--steps N] [--size N | --width N --height N]
                   [--preset draft|normal|better] [--seed N] [--timelapse FILE.webp]
                   [--drawer vqgan-clip|dalle] [--candidates N]
      Paints PROMPT (syntax: "a red bicycle:1.5 | rain | blurry:-0.5") into FILE: .png (the
      default, imagine-SEED.png), .jpg or .webp. --timelapse writes an animated WebP.
      --drawer dalle writes the image with minDALL-E (MODELS_DIR/dalle): N candidates (1 to
      ${jobLimits.maxCandidates}, default 4), the one CLIP scores best is kept; no steps or size.
      Sizes: ${jobLimits.minSide} to ${jobLimits.maxSide} pixels, a multiple of 16 (--size 256, or --width 256 --height 192).
      Steps: 1 to ${jobLimits.maxSteps}; the preset sets them when not given.
  whatis FILE [--labels "cat, dog, human"] [--top N]
      The top labels of an image (at most ${UPLOAD_MAX_BYTES / 1024 / 1024} MiB; default vocabulary: 1000+ everyday and
      ImageNet labels).
  search "QUERY" (--dir FOLDER | --channel NAME) [--k N]
      Images that match QUERY: the image files of FOLDER (embedded now), or a playground
      library channel (its display name or id) from the index in DATA_DIR (stop \`npm start\`
      first: PGlite has one user).
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

/** A local file or folder that cannot be used, said with its path and the system's reason. */
class LocalFileError extends Error {
  constructor(path: string, problem: string) {
    super(renderFileProblem(path, problem));
  }
}

/** `ENOENT` -> `does not exist (ENOENT)`: the system's words, for a person. */
function errnoProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOENT: 'does not exist',
    ENOTDIR: 'is not a folder',
    EISDIR: 'is a folder, not a file',
    EACCES: 'cannot be written or read here (permission denied)',
    EPERM: 'is not allowed here',
    EROFS: 'is on a read-only file system',
    ENOSPC: 'the disk is full',
  };
  return code === undefined
    ? (error as Error).message
    : `${words[code] ?? (error as Error).message} (${code})`;
}

/** Options that take a value: `--size -64` is theirs, not an unknown flag `-6`. */
const VALUE_OPTIONS = new Set([
  '--out',
  '-o',
  '--steps',
  '--size',
  '--width',
  '--height',
  '--seed',
  '--candidates',
  '--top',
  '--k',
]);

/** Joins `--size -64` into `--size=-64`, so parseArgs reports a bad value instead of an ambiguity. */
export function joinNegativeValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (VALUE_OPTIONS.has(arg) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** Output formats by file extension: what `--out` may end in. */
const IMAGE_OUTPUTS: Readonly<Record<string, 'png' | 'jpeg' | 'webp'>> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

/**
 * Checks, before any work, that `path` can be written: a known extension, not a folder, in a folder
 * that exists and is writable.
 */
async function checkOutput(path: string, option: string, extensions: readonly string[]): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (info?.isDirectory()) throw new LocalFileError(path, 'is a folder; give a file name');
  const ext = extname(path).toLowerCase();
  if (!extensions.includes(ext)) {
    const names = extensions.join(', ');
    throw new UsageError(
      `${option} ${path}: ${option === '--timelapse' ? 'a timelapse is an animated WebP' : 'images are written as PNG, JPEG or WebP'}: name it ${names}`,
    );
  }
  const dir = dirname(path);
  const dirInfo = await stat(dir).catch((error: unknown) => {
    throw new LocalFileError(dir, errnoProblem(error));
  });
  if (!dirInfo.isDirectory()) throw new LocalFileError(dir, 'is not a folder (ENOTDIR)');
  await access(dir, constants.W_OK).catch((error: unknown) => {
    throw new LocalFileError(dir, errnoProblem(error));
  });
}

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
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
  return n;
}

function sideOption(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < jobLimits.minSide || n > jobLimits.maxSide || n % 16 !== 0)
    throw new UsageError(`--${name} ${renderSizeRule(jobLimits)}`);
  return n;
}

async function openModels(c: Common, io: CliIo): Promise<WorkerModels> {
  const { hasModels } = await import('./models-setup.js');
  if (!(await hasModels(c.modelsDir))) {
    throw new CodedError(
      'model_missing',
      `no models in ${c.modelsDir}: pass --models DIR, or write tiny random ones with ` +
        `\`npm run models -- random --preset tiny --out ${c.modelsDir}\` (npm start does this on first run)`,
    );
  }
  const { loadModels } = await import('../worker/runtime/models.js');
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
    args: joinNegativeValues(args),
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
      drawer: { type: 'string' },
      candidates: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('imagine takes one prompt (quote it)');
  const drawer = values.drawer;
  if (drawer !== undefined && !(drawers as readonly string[]).includes(drawer)) {
    throw new UsageError(`--drawer must be one of ${drawers.join(', ')}`);
  }
  const candidates = intOption('candidates', values.candidates, 1, jobLimits.maxCandidates);
  const c = common(values, io.env);
  const size = sideOption('size', values.size);
  const width = sideOption('width', values.width) ?? size;
  const height = sideOption('height', values.height) ?? size;
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
    ...(drawer === undefined || drawer === 'vqgan-clip' ? {} : { drawer }),
    ...(candidates === undefined ? {} : { candidates }),
    origin: { platform: 'cli', user: localUser() },
  };
  // Where the results go is checked now, not after the whole generation. Without --out the name
  // needs the seed, which the run draws; its folder (the current one) is checked all the same.
  const outGiven = values.out === undefined ? undefined : resolve(values.out);
  await checkOutput(outGiven ?? resolve('imagine.png'), '--out', Object.keys(IMAGE_OUTPUTS));
  const timelapse = values.timelapse === undefined ? undefined : resolve(values.timelapse);
  if (timelapse !== undefined) await checkOutput(timelapse, '--timelapse', ['.webp']);
  if (timelapse !== undefined && timelapse === outGiven)
    throw new UsageError('--out and --timelapse name the same file');

  const models = await openModels(c, io);
  const bar = new ProgressBar(io);
  try {
    const [{ MemoryBlobs }, { runImagine }] = await Promise.all([
      import('../worker/processors/blobs.js'),
      import('../worker/processors/imagine.js'),
    ]);
    const blobs = new MemoryBlobs();
    const result = await runImagine(models, data, {
      blobs,
      ...(io.signal === undefined ? {} : { signal: io.signal }),
      onProgress: (p) => bar.update(p),
    });
    bar.done();
    const out = outGiven ?? resolve(`imagine-${result.seed}.png`);
    const png = (await blobs.get(result.finalBlob))!.bytes;
    await writeFile(out, await encodeAs(IMAGE_OUTPUTS[extname(out).toLowerCase()] ?? 'png', png)).catch(
      (error: unknown) => {
        throw new LocalFileError(out, errnoProblem(error));
      },
    );
    let wroteTimelapse: string | undefined;
    if (timelapse !== undefined && result.timelapseBlob !== undefined) {
      await writeFile(timelapse, (await blobs.get(result.timelapseBlob))!.bytes);
      wroteTimelapse = timelapse;
    }
    if (c.json) {
      io.stdout(
        `${JSON.stringify({
          seed: result.seed,
          steps: result.steps,
          lossFirst: result.lossFirst,
          lossLast: result.lossLast,
          outputs: { image: out, ...(wroteTimelapse === undefined ? {} : { timelapse: wroteTimelapse }) },
          params: result.params,
          timingsMs: result.timings,
        })}\n`,
      );
    } else {
      io.stdout(`${out}\n${renderImagineResult(result)}\n`);
      if (wroteTimelapse) io.stdout(`${wroteTimelapse}\n`);
    }
  } finally {
    bar.done();
    await models.close();
  }
}

/** The worker's PNG in the format the file name asks for. */
async function encodeAs(format: 'png' | 'jpeg' | 'webp', png: Uint8Array): Promise<Uint8Array> {
  if (format === 'png') return png;
  const [{ decodeImage }, { encodeJpeg, encodeWebp }] = await Promise.all([
    import('../shared/image/decode.js'),
    import('../shared/image/encode.js'),
  ]);
  const img = await decodeImage(png);
  return format === 'jpeg' ? encodeJpeg(img) : encodeWebp(img);
}

/** An image file's bytes: the path's real problem when it cannot be read, the one upload limit. */
async function readImageFile(path: string): Promise<Uint8Array> {
  const info = await stat(path).catch((error: unknown) => {
    throw new LocalFileError(path, errnoProblem(error));
  });
  if (!info.isFile()) throw new LocalFileError(path, 'is not a file');
  // The cap is checked before the file is read, as uploads are checked before their body is.
  if (info.size > UPLOAD_MAX_BYTES) {
    throw new ImageTooLargeError({ bytes: info.size, maxBytes: UPLOAD_MAX_BYTES });
  }
  return new Uint8Array(await readFile(path));
}

async function whatis(args: string[], io: CliIo): Promise<void> {
  const { values, positionals } = parseArgs({
    args: joinNegativeValues(args),
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
  if (labels !== undefined && labels.length === 0) {
    // An empty list is a slip, not a wish for the default vocabulary (which is leaving --labels out).
    throw new UsageError('--labels needs at least one label ("cat, dog"); leave it out for everyday objects');
  }
  const bytes = await readImageFile(file);
  const models = await openModels(c, io);
  try {
    const [{ MemoryBlobs }, { runClassify }] = await Promise.all([
      import('../worker/processors/blobs.js'),
      import('../worker/processors/classify.js'),
    ]);
    const blobs = new MemoryBlobs();
    const image = await blobs.put(bytes, { contentType: 'application/octet-stream' });
    if (!labels && !c.json)
      io.stderr('using the default vocabulary (the first run embeds it, then it is cached)…\n');
    const result = await runClassify(
      models,
      { image, topK, ...(labels ? { labels } : {}) },
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
    args: joinNegativeValues(args),
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
  // The folder, or the channel's name, is checked before the models load.
  const dir = values.dir === undefined ? undefined : resolve(values.dir);
  let names: string[] = [];
  if (dir !== undefined) names = await imageFiles(dir);
  const channel = values.channel === undefined ? undefined : channelFromName(values.channel);
  if (values.channel !== undefined && channel === undefined)
    throw new UsageError(`--channel ${values.channel}: ${renderChannelRule()}`);
  const models = await openModels(c, io);
  let hits: { path: string; name: string; score: number }[];
  let staleImages = 0;
  try {
    if (dir !== undefined) {
      hits = await searchFolder(models, dir, names, query, k, io);
    } else {
      ({ hits, staleImages } = await searchIndex(models, c.dataDir, channel!, query, k, io));
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
    io.stdout(`${renderSearchHits(hits.map((h) => ({ score: h.score, name: h.name })))}\n`);
  }
}

/** The image files of a folder, by name; the folder's real problem when it cannot be listed. */
async function imageFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
    throw new LocalFileError(dir, errnoProblem(error));
  });
  return entries
    .filter((d) => d.isFile() && IMAGE_EXTENSIONS.has(extname(d.name).toLowerCase()))
    .map((d) => d.name)
    .sort();
}

/** Embeds every image file of a folder now and ranks them by cosine to the query. */
async function searchFolder(
  models: WorkerModels,
  dir: string,
  names: readonly string[],
  query: string,
  k: number,
  io: CliIo,
): Promise<{ path: string; name: string; score: number }[]> {
  const [text] = [await models.classifier.embedTexts([query], io.signal)];
  const q = unit(text!);
  const scored: { path: string; name: string; score: number }[] = [];
  for (const [i, name] of names.entries()) {
    const path = join(dir, name);
    if (io.isTty) io.stderr(`\r\x1b[2Kembedding ${i + 1}/${names.length} ${name}`);
    try {
      const embedding = unit(await models.images.embed(await readImageFile(path), io.signal));
      scored.push({ path, name: path, score: dot(q, embedding) });
    } catch (error) {
      const coded = asCodedError(error);
      if (coded.code === 'cancelled') throw coded;
      // One unreadable file must not spoil the search of a whole folder.
      const why = error instanceof LocalFileError ? error.message : renderError(coded);
      io.stderr(`${io.isTty ? '\n' : ''}skipped ${name}: ${why}\n`);
    }
  }
  if (io.isTty && names.length > 0) io.stderr('\n');
  return scored.sort((a, b) => b.score - a.score).slice(0, k);
}

/**
 * Searches a playground library channel through the database index in DATA_DIR. Hits are named as
 * the playground names them (the uploaded file's name, from the library's manifest).
 */
async function searchIndex(
  models: WorkerModels,
  dataDir: string,
  channel: string,
  query: string,
  k: number,
  io: CliIo,
): Promise<{ hits: { path: string; name: string; score: number }[]; staleImages: number }> {
  const options = { embeddingDim: models.embeddingDim, embeddingModel: models.embeddingModel };
  const [{ runSearch }, { Library }] = await Promise.all([
    import('../worker/processors/search.js'),
    import('../bots/web/library.js'),
  ]);
  const library = new Library(join(resolve(dataDir), 'library'));
  const names = new Map((await library.list(channel)).map((e) => [e.file, e.name]));
  return withDatabase(dataDir, io, options, async (db) => {
    const result = await runSearch(
      models,
      { query, ...libraryScope(channel), k },
      { db, ...(io.signal === undefined ? {} : { signal: io.signal }) },
    );
    return {
      hits: result.hits.map((h) => ({
        path: join(library.dir(channel), h.file),
        name: names.get(h.file) ?? h.file,
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
  const [{ lockDirectory }, { openDatabase }] = await Promise.all([
    import('../worker/runtime/dir-lock.js'),
    import('../shared/db/index.js'),
  ]);
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
    if (error instanceof LocalFileError) return fail(error.message, 'bad_input');
    // A local tool shows the real cause: operator-facing messages (model_missing, unavailable) say
    // what to do, user mistakes get their sentence, and anything else its own message (the chat
    // bots' "something went wrong on our side" tells someone at their own terminal nothing).
    const text =
      coded.code === 'model_missing' || coded.code === 'unavailable'
        ? coded.message
        : coded.code === 'internal'
          ? `${(error as Error).message ?? coded.message}${io.env.DEBUG ? '' : ' (DEBUG=1 shows where)'}`
          : renderError(coded);
    const code = fail(text, coded.code);
    if (coded.code === 'internal' && error instanceof Error && error.stack && io.env.DEBUG)
      io.stderr(`${error.stack}\n`);
    return code;
  }

  function fail(text: string, code: string): number {
    if (argv.includes('--json')) io.stdout(`${JSON.stringify({ error: { code, message: text } })}\n`);
    io.stderr(`vqclip ${name}: ${text}\n`);
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
