// Label set -> text embeddings for zero-shot classification: every label filled into every template,
// encoded by the text tower, averaged per label (zero-shot.ts). The default vocabulary is 80,000
// prompts, minutes of CPU, so results are cached on disk under a key of model, labels and templates.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TextBatch } from './clip-encoders.js';
import { TemplateEnsemble } from './zero-shot.js';

/** What embeds prompts: ClipEncoders, or a stand-in in tests. */
export interface PromptEncoder {
  readonly dim: number;
  encodeTextBatches(
    prompts: readonly string[],
    onBatch: (batch: TextBatch) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<{ truncated: number }>;
}

export interface LabelEmbeddingOptions {
  /**
   * Identifies everything the embeddings depend on besides labels and templates: weights, config
   * and tokenizer (see `modelFingerprint`).
   */
  readonly modelKey: string;
  /** Directory for cached label sets; none means no disk cache. @defaultValue undefined */
  readonly cacheDir?: string;
  readonly signal?: AbortSignal;
}

export interface LabelEmbeddings {
  readonly labels: readonly string[];
  readonly dim: number;
  /** [labels, dim], unit rows. */
  readonly embeds: Float32Array;
  /** The cache key (hex SHA-256). */
  readonly key: string;
  /** Whether the embeddings came from the disk cache. */
  readonly fromCache: boolean;
  /** Prompts the tokenizer had to cut to fit the context (0 when read from the cache). */
  readonly truncatedPrompts: number;
}

/** Bumped when anything that changes the numbers without changing the inputs changes (e.g. prompt cleanup). */
const CACHE_FORMAT = 'clip-label-embeddings/1';
const MAGIC = 'CLIPLBL1';
const HEADER_BYTES = 16;

/** The prompt for a label: every "{}" in the template becomes the label ("{}" alone: the label itself). */
export function fillTemplate(template: string, label: string): string {
  return template.replaceAll('{}', label);
}

export function labelSetKey(
  modelKey: string,
  labels: readonly string[],
  templates: readonly string[],
): string {
  return createHash('sha256')
    .update(JSON.stringify({ format: CACHE_FORMAT, modelKey, labels, templates }))
    .digest('hex');
}

/** SHA-256 over the files that define a model (config, weights, tokenizer), streamed. */
export async function modelFingerprint(paths: readonly string[]): Promise<string> {
  const all = createHash('sha256');
  for (const path of paths) {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
    // Per-file digests, so moving bytes from one file to the next cannot give the same key.
    all.update(h.digest());
  }
  return all.digest('hex');
}

function cachePath(dir: string, key: string): string {
  return join(dir, `labels-${key}.bin`);
}

/** Reads a cached set; any mismatch (size, header, short file) counts as a miss. */
export async function readCachedLabelEmbeddings(
  dir: string,
  key: string,
  labels: number,
  dim: number,
): Promise<Float32Array | undefined> {
  let buf: Buffer;
  try {
    buf = await readFile(cachePath(dir, key));
  } catch {
    return undefined;
  }
  if (buf.length !== HEADER_BYTES + labels * dim * 4) return undefined;
  if (buf.toString('latin1', 0, 8) !== MAGIC) return undefined;
  if (buf.readUInt32LE(8) !== labels || buf.readUInt32LE(12) !== dim) return undefined;
  const out = new Float32Array(labels * dim);
  new Uint8Array(out.buffer).set(buf.subarray(HEADER_BYTES));
  return out;
}

/** Writes atomically (temp file + rename): a reader in another process never sees half a file. */
export async function writeCachedLabelEmbeddings(
  dir: string,
  key: string,
  embeds: Float32Array,
  labels: number,
  dim: number,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeUInt32LE(labels, 8);
  header.writeUInt32LE(dim, 12);
  const target = cachePath(dir, key);
  const tmp = `${target}.${randomUUID()}.tmp`;
  try {
    await writeFile(
      tmp,
      Buffer.concat([header, Buffer.from(embeds.buffer, embeds.byteOffset, embeds.byteLength)]),
    );
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Embeddings of `labels` under `templates`, from the disk cache when present, else computed
 * (streaming: prompts are reduced per label as batches finish) and cached.
 */
export async function embedLabelSet(
  encoder: PromptEncoder,
  labels: readonly string[],
  templates: readonly string[],
  options: LabelEmbeddingOptions,
): Promise<LabelEmbeddings> {
  if (labels.length === 0) throw new RangeError('no labels to embed');
  if (templates.length === 0) throw new RangeError('no templates to fill');
  const dim = encoder.dim;
  const key = labelSetKey(options.modelKey, labels, templates);
  if (options.cacheDir !== undefined) {
    const cached = await readCachedLabelEmbeddings(options.cacheDir, key, labels.length, dim);
    if (cached) return { labels, dim, embeds: cached, key, fromCache: true, truncatedPrompts: 0 };
  }
  const prompts: string[] = [];
  for (const label of labels) for (const t of templates) prompts.push(fillTemplate(t, label));
  const acc = new TemplateEnsemble(labels.length, dim);
  const perLabel = templates.length;
  const { truncated } = await encoder.encodeTextBatches(
    prompts,
    ({ indices, embeds }) => {
      indices.forEach((p, r) => {
        acc.add(Math.floor(p / perLabel), embeds, r * dim);
      });
    },
    options.signal,
  );
  const embeds = acc.finish();
  if (options.cacheDir !== undefined) {
    await writeCachedLabelEmbeddings(options.cacheDir, key, embeds, labels.length, dim);
  }
  return { labels, dim, embeds, key, fromCache: false, truncatedPrompts: truncated };
}
