// `models pull --only dalle`: minDALL-E's public checkpoint (one .tar.gz: config.yaml, tokenizer/
// bpe-16k-vocab.json + bpe-16k-merges.txt, stage1_last.ckpt, stage2_last.ckpt) converted into
// OUT/dalle: config.json, model.safetensors (the stage-2 state_dict, through the data-only pickle
// reader), tokenizer.json (the CharBPE files as Hugging Face's tokenizer.json), and vqgan/ (its own
// stage 1, in our VQGAN layout: its codes index that codebook and no other). Staged under
// OUT/.partial and swapped in whole, as the other pulls are.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { countParameters, parseVqganConfig, type VqganConfig } from '../models/config.js';
import { TorchCheckpoint } from '../models/pull/checkpoint.js';
import { download } from '../models/pull/download.js';
import {
  convertCheckpoint,
  DefaultPullOptions,
  downloadOptions,
  install,
  PullError,
  type PullOptions,
  type PullResult,
  STAGE,
  stagingFolder,
  verify,
} from '../models/pull/pull.js';
import { extractTarGz } from '../models/pull/tar.js';
import { writeSafetensors } from '../models/weights.js';
import { type DalleConfig, dalleParameterShapes, loadDalleConfig, parseDalleConfig } from './config.js';
import { dalleConfigJson } from './random.js';
import { charBpeTokenizerJson, DalleTokenizer, PAD_TOKEN } from './tokenizer.js';

export interface DalleSource {
  /** The .tar.gz minDALL-E's from_pretrained downloads. */
  readonly archiveUrl: string;
  /** Lowercase hex sha256 of the archive, when known. */
  readonly sha256?: string;
}

/**
 * minDALL-E 1.3B as its code (dalle/models/__init__.py, `_MODELS`) downloads it; checked against that
 * public source, not fetched from here. No checksum is published.
 */
export const MINDALLE_13B: DalleSource = {
  archiveUrl:
    'https://arena.kakaocdn.net/brainrepo/models/minDALL-E/57b008f02ceaa02b779c8b7463143315/1.3B.tar.gz',
};

/** The archive's members we read, by where they end (the archive wraps them in a folder). */
const MEMBERS = {
  'config.yaml': /(^|\/)config\.yaml$/,
  'vocab.json': /(^|\/)tokenizer\/[^/]*vocab\.json$/,
  'merges.txt': /(^|\/)tokenizer\/[^/]*merges\.txt$/,
  'stage1.ckpt': /(^|\/)stage1_last\.ckpt$/,
  'stage2.ckpt': /(^|\/)stage2_last\.ckpt$/,
} as const;

const yamlSchema = z.object({
  dataset: z.object({ context_length: z.number().int().positive().optional() }).passthrough().optional(),
  stage1: z
    .object({
      embed_dim: z.number().int().positive(),
      n_embed: z.number().int().positive(),
      hparams: z.record(z.string(), z.unknown()),
    })
    .passthrough(),
  stage2: z
    .object({
      vocab_size_txt: z.number().int().positive(),
      vocab_size_img: z.number().int().positive(),
      hparams: z.record(z.string(), z.unknown()),
    })
    .passthrough(),
});

/** minDALL-E's config.yaml -> our stage-2 config (pad id still to come) and its stage-1 VQGAN config. */
export function configsFromMinDalleYaml(
  text: string,
  source = 'config.yaml',
): { dalle: Omit<DalleConfig, 'pad_token_id'>; vqgan: VqganConfig } {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (cause) {
    throw new PullError('bad_vqgan_config', `${source} is not YAML: ${(cause as Error).message}`, { cause });
  }
  const r = yamlSchema.safeParse(raw);
  if (!r.success)
    throw new PullError(
      'bad_vqgan_config',
      `${source} is not a minDALL-E config:\n${z.prettifyError(r.error)}`,
    );
  const y = r.data;
  const h = y.stage2.hparams;
  if (h.n_dense_layers !== undefined && h.n_dense_layers !== h.n_layers) {
    throw new PullError(
      'bad_vqgan_config',
      `${source}: sparse layers (n_dense_layers != n_layers) are not supported`,
    );
  }
  const dalle = parseDalleConfig(
    {
      model_type: 'mindalle',
      vocab_size_txt: y.stage2.vocab_size_txt,
      vocab_size_img: y.stage2.vocab_size_img,
      ...pick(h, ['embed_dim', 'n_layers', 'n_heads', 'ctx_len_txt', 'ctx_len_img', 'mlp_bias', 'attn_bias']),
      ...pick(h, ['gelu_use_approx']),
    },
    source,
  );
  const ctx = y.dataset?.context_length;
  if (ctx !== undefined && ctx !== dalle.ctx_len_txt)
    throw new PullError(
      'bad_vqgan_config',
      `${source}: context_length ${ctx} but ctx_len_txt ${dalle.ctx_len_txt}`,
    );
  const { pdrop, ...dd } = y.stage1.hparams;
  const vqgan = parseVqganConfig(
    {
      model_type: 'vqgan',
      ddconfig: { ...dd, ...(typeof pdrop === 'number' ? { dropout: pdrop } : {}) },
      embed_dim: y.stage1.embed_dim,
      n_embed: y.stage1.n_embed,
    },
    `${source} (stage1)`,
  );
  if (vqgan.n_embed !== dalle.vocab_size_img) {
    throw new PullError(
      'bad_vqgan_config',
      `${source}: stage 1 has ${vqgan.n_embed} codes but stage 2 writes ${dalle.vocab_size_img}`,
    );
  }
  const { pad_token_id: _p, ...rest } = dalle;
  return { dalle: rest, vqgan };
}

function pick(o: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}

/** The CharBPE vocab.json + merges.txt as a tokenizer.json, and the id [PAD] gets. */
export function tokenizerFromCharBpeFiles(
  vocabText: string,
  mergesText: string,
  source = 'tokenizer',
): { json: object; padId: number } {
  let vocab: Record<string, number>;
  try {
    vocab = z.record(z.string(), z.number().int().nonnegative()).parse(JSON.parse(vocabText));
  } catch (cause) {
    throw new PullError('missing_tensor', `${source}: the vocab file is not a JSON map of token to id`, {
      cause,
    });
  }
  // merges.txt: an optional "#version" line, then one "left right" pair per line.
  const merges = mergesText
    .split(/\r?\n/)
    .filter((line, i) => line.trim() !== '' && !(i === 0 && line.startsWith('#version')));
  const bad = merges.find((m) => m.split(' ').length !== 2);
  if (bad !== undefined)
    throw new PullError('missing_tensor', `${source}: merges line "${bad}" is not a pair`);
  const json = charBpeTokenizerJson(vocab, merges) as { added_tokens: { id: number; content: string }[] };
  const padId = json.added_tokens.find((t) => t.content === PAD_TOKEN)!.id;
  return { json, padId };
}

/** Writes `stage/model.safetensors` from stage2_last.ckpt's state_dict; returns the names left out. */
function convertStage2(
  ckptPath: string,
  config: DalleConfig,
  stage: string,
  source: string,
  log: (l: string) => void,
  dtype: PullOptions['dtype'],
): string[] {
  const ckpt = TorchCheckpoint.open(ckptPath);
  try {
    const sd = ckpt.stateDict();
    const shapes = dalleParameterShapes(config);
    const problems: string[] = [];
    for (const [name, shape] of shapes) {
      const t = sd.get(name);
      if (!t) problems.push(`missing ${name} ${JSON.stringify(shape)}`);
      else if (JSON.stringify(t.shape) !== JSON.stringify(shape))
        problems.push(`${name}: shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
    }
    if (problems.length) {
      throw new PullError(
        'missing_tensor',
        `${source}: stage2_last.ckpt does not fit config.yaml (${problems.length} problems):\n${problems
          .slice(0, 8)
          .map((p) => `  ${p}`)
          .join('\n')}`,
      );
    }
    const wanted = new Set(shapes.map(([n]) => n));
    const skipped = [...sd.keys()].filter((k) => !wanted.has(k));
    log(
      `dalle: ${wanted.size} tensors kept${skipped.length ? `, ${skipped.length} skipped (${skipped.slice(0, 3).join(', ')})` : ''}`,
    );
    writeSafetensors(
      join(stage, 'model.safetensors'),
      shapes.map(([name, shape]) => ({ name, shape })),
      (spec) => ckpt.readFloat32(spec.name, sd.get(spec.name)!),
      { dtype: dtype ?? 'F32', metadata: { format: 'pt', source } },
    );
    return skipped;
  } finally {
    ckpt.close();
  }
}

/** Downloads minDALL-E's archive and converts it into OUT/dalle (with OUT/dalle/vqgan). */
export async function pullDalle(source: DalleSource, options: PullOptions): Promise<PullResult> {
  const o = { ...DefaultPullOptions, ...options };
  const log = o.log ?? (() => {});
  const downloads = join(o.outDir, STAGE, 'dalle-download');
  await stagingFolder(downloads, { archive: source.archiveUrl });
  const archive = join(downloads, 'archive.tar.gz');
  if (!existsSync(archive)) {
    await download(
      source.archiveUrl,
      archive,
      downloadOptions(o, 'dalle/archive.tar.gz', source.sha256 ? { sha256: source.sha256 } : {}),
    );
  }
  const stage = join(o.outDir, STAGE, 'dalle');
  await rm(stage, { recursive: true, force: true });
  await mkdir(join(stage, 'vqgan'), { recursive: true });
  const files = join(downloads, 'files');
  await mkdir(files, { recursive: true });
  let skipped: string[];
  let parameters: number;
  try {
    const found = new Set<string>();
    await extractTarGz(archive, (name) => {
      for (const [file, pattern] of Object.entries(MEMBERS)) {
        if (pattern.test(name) && !found.has(file)) {
          found.add(file);
          return join(files, file);
        }
      }
      return undefined;
    });
    const missing = Object.keys(MEMBERS).filter((f) => !found.has(f));
    if (missing.length) {
      throw new PullError('missing_tensor', `${source.archiveUrl}: the archive has no ${missing.join(', ')}`);
    }
    const configs = configsFromMinDalleYaml(
      await readFile(join(files, 'config.yaml'), 'utf8'),
      source.archiveUrl,
    );
    const tok = tokenizerFromCharBpeFiles(
      await readFile(join(files, 'vocab.json'), 'utf8'),
      await readFile(join(files, 'merges.txt'), 'utf8'),
      source.archiveUrl,
    );
    if (tok.padId >= configs.dalle.vocab_size_txt) {
      throw new PullError(
        'missing_tensor',
        `${source.archiveUrl}: [PAD] gets id ${tok.padId}, outside the ${configs.dalle.vocab_size_txt} text embeddings`,
      );
    }
    const config: DalleConfig = { ...configs.dalle, pad_token_id: tok.padId };
    const d = config;
    log(
      `dalle: ${d.n_layers} layers of ${d.embed_dim} (${d.n_heads} heads), ${d.ctx_len_txt} text + ${d.ctx_len_img} image tokens`,
    );
    skipped = convertStage2(join(files, 'stage2.ckpt'), config, stage, source.archiveUrl, log, o.dtype);
    parameters = countParameters(dalleParameterShapes(config));
    await writeFile(join(stage, 'config.json'), `${JSON.stringify(dalleConfigJson(config), null, 2)}\n`);
    await writeFile(join(stage, 'tokenizer.json'), JSON.stringify(tok.json));
    convertCheckpoint(
      join(files, 'stage1.ckpt'),
      configs.vqgan,
      join(stage, 'vqgan'),
      {
        checkpointUrl: `${source.archiveUrl}#stage1_last.ckpt`,
        configUrl: `${source.archiveUrl}#config.yaml`,
      },
      o.dtype,
      (line) => log(line.replace(/^vqgan:/, 'dalle/vqgan:')),
    );
    await writeFile(join(stage, 'vqgan', 'config.json'), `${JSON.stringify(configs.vqgan, null, 2)}\n`);
  } catch (err) {
    // An archive that cannot be converted is no use to a rerun: fetch it afresh next time.
    await rm(downloads, { recursive: true, force: true });
    await rm(stage, { recursive: true, force: true });
    throw err;
  }
  // The folder as the worker will read it: config, tokenizer and its [PAD], the stage-1 weights.
  await loadDalleConfig(stage);
  await DalleTokenizer.fromFile(join(stage, 'tokenizer.json'), 1);
  await verify(join(stage, 'vqgan'), 'vqgan');
  const target = join(o.outDir, 'dalle');
  await install(stage, target, join(o.outDir, STAGE, 'dalle.old'));
  if (!o.keepDownloads) await rm(downloads, { recursive: true, force: true });
  else await rm(files, { recursive: true, force: true });
  return { dir: target, parameters, skipped };
}
