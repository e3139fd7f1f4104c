// `models pull`: fetches real weights and leaves them in the layouts our loaders read. CLIP comes from
// a Hugging Face repo as is (config.json, tokenizer.json, model.safetensors); the VQGAN comes from
// taming-transformers' model.yaml + Lightning last.ckpt and is converted to config.json +
// model.safetensors. Everything is staged under OUT/.partial and swapped in only when whole and checked.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { type ErrorCode, ReasonedError } from '../../../shared/errors.js';
import { lockDirectory } from '../../runtime/dir-lock.js';
import { checkModelFolder, type ModelFolderCheck } from '../check.js';
import {
  ModelConfigError,
  parseModelConfig,
  parseVqganConfig,
  type VqganConfig,
  vqganParameterShapes,
} from '../config.js';
import { ClipTokenizer } from '../tokenizer.js';
import { type WritableDType, writeSafetensors } from '../weights.js';
import { TorchCheckpoint } from './checkpoint.js';
import { DownloadError, type DownloadOptions, type DownloadProgress, download } from './download.js';
import { PyDict } from './pickle.js';

// The person pulling named the sources: one we cannot use is their input to fix. A folder that fails
// its check after conversion is our converter's fault; another pull holding the lock passes.
const pullErrorCodes = {
  no_safetensors: 'bad_input',
  not_clip: 'bad_input',
  bad_vqgan_config: 'bad_input',
  unknown_vqgan: 'bad_input',
  missing_tensor: 'bad_input',
  invalid_model: 'internal',
  busy: 'unavailable',
} as const satisfies Record<string, ErrorCode>;

export type PullErrorReason = keyof typeof pullErrorCodes;

export class PullError extends ReasonedError<PullErrorReason, (typeof pullErrorCodes)[PullErrorReason]> {
  override readonly name = 'PullError';
  constructor(reason: PullErrorReason, message: string, options: { cause?: unknown } = {}) {
    super(pullErrorCodes[reason], reason, message, options);
  }
}

export interface VqganSource {
  /** taming's Lightning checkpoint (last.ckpt). */
  readonly checkpointUrl: string;
  /** taming's model.yaml (model.target, model.params.ddconfig / n_embed / embed_dim). */
  readonly configUrl: string;
  /** Lowercase hex sha256 of the checkpoint, when known. */
  readonly sha256?: string;
}

/**
 * The taming-transformers releases we know by name. The URLs are those of the taming-transformers
 * README's download table (the heibox share of each model) with Seafile's `?p=PATH&dl=1` file form,
 * as the VQGAN+CLIP notebooks use them; checked against those public sources, not fetched from here
 * (no machine this is built on reaches the internet). No checksum is published for them.
 */
export const KNOWN_VQGANS: Readonly<Record<string, VqganSource>> = {
  vqgan_imagenet_f16_16384: heibox('a7530b09fed84f80a887'),
  vqgan_imagenet_f16_1024: heibox('8088892a516d4e3baf92'),
};

function heibox(share: string): VqganSource {
  const file = (p: string) =>
    `https://heibox.uni-heidelberg.de/d/${share}/files/?p=${encodeURIComponent(p)}&dl=1`;
  return { checkpointUrl: file('/ckpts/last.ckpt'), configUrl: file('/configs/model.yaml') };
}

export interface PullOptions {
  /** Receives `clip/` and `vqgan/` (and `.partial/` while working). */
  readonly outDir: string;
  /** @defaultValue 'https://huggingface.co' */
  readonly hfEndpoint?: string;
  /** Sent as a bearer token to the Hugging Face endpoint only (gated or private repos). @defaultValue undefined */
  readonly hfToken?: string;
  /** Branch, tag or commit of the CLIP repo. @defaultValue 'main' */
  readonly revision?: string;
  /**
   * Element type of the converted VQGAN weights.
   * @defaultValue 'F32'
   */
  readonly dtype?: WritableDType;
  /** Keep the downloaded checkpoint under `.partial/` after converting it. @defaultValue false */
  readonly keepDownloads?: boolean;
  readonly onProgress?: (p: DownloadProgress) => void;
  /** Lines worth telling the user (what was found, skipped, written). @defaultValue ignore */
  readonly log?: (line: string) => void;
  /** Passed to every download (fetch, stall timeout, signal). */
  readonly download?: Pick<DownloadOptions, 'fetch' | 'stallTimeoutMs' | 'signal' | 'progressIntervalMs'>;
}

export const DefaultPullOptions = {
  hfEndpoint: 'https://huggingface.co',
  revision: 'main',
  dtype: 'F32',
  keepDownloads: false,
} as const satisfies Partial<PullOptions>;

export interface PullResult {
  readonly dir: string;
  readonly parameters: number;
  /** Tensors in the source that the model does not use (loss.*, buffers). */
  readonly skipped: readonly string[];
}

export const STAGE = '.partial';

/** A folder under OUT/.partial that is reused by a rerun only for the same source. */
export async function stagingFolder(dir: string, source: unknown): Promise<void> {
  const marker = join(dir, 'source.json');
  const want = JSON.stringify(source);
  let have: string | undefined;
  try {
    have = await readFile(marker, 'utf8');
  } catch {
    have = undefined;
  }
  if (have !== want) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(marker, want);
  }
}

/**
 * Replaces `target` by `staged` with renames only: the old folder is moved aside first and put back if
 * the second rename fails, so `target` is at every moment absent, the old folder or the new one.
 */
export async function install(staged: string, target: string, aside: string): Promise<void> {
  await rm(aside, { recursive: true, force: true });
  const hadOld = existsSync(target);
  if (hadOld) await rename(target, aside);
  try {
    await rename(staged, target);
  } catch (err) {
    if (hadOld) await rename(aside, target);
    throw err;
  }
  await rm(aside, { recursive: true, force: true });
}

/** Takes OUT/.partial/lock so that two pulls into one folder do not interleave; returns the release. */
async function lock(outDir: string): Promise<() => Promise<void>> {
  const stage = join(outDir, STAGE);
  const held = await lockDirectory(stage, {
    name: 'lock',
    ownPid: 'refuse',
    busy: (pid) =>
      pid === undefined
        ? new PullError('busy', `cannot take ${join(stage, 'lock')}`)
        : new PullError(
            'busy',
            `another models pull (pid ${pid}) is writing ${outDir}; wait for it to finish`,
          ),
  });
  return async () => {
    await held.release();
    // Leave no empty .partial behind.
    if ((await readdir(stage)).length === 0) await rmdir(stage).catch(() => {});
  };
}

/** Runs `work` holding OUT/.partial/lock. */
export async function withPullLock<T>(outDir: string, work: () => Promise<T>): Promise<T> {
  const release = await lock(outDir);
  try {
    return await work();
  } finally {
    await release();
  }
}

export function downloadOptions(
  o: PullOptions,
  label: string,
  extra: Partial<DownloadOptions> = {},
): DownloadOptions {
  return {
    ...o.download,
    label,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...extra,
  };
}

/** Checks a staged folder as `models check` would; a folder that fails is deleted (a rerun starts afresh). */
export async function verify(dir: string, kind: 'clip' | 'vqgan'): Promise<ModelFolderCheck> {
  try {
    if (kind === 'clip') await ClipTokenizer.fromFolder(dir); // throws naming tokenizer.json when unusable
    return checkFolder(dir, kind, await checkModelFolder(dir));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function checkFolder(dir: string, kind: 'clip' | 'vqgan', check: ModelFolderCheck): ModelFolderCheck {
  if (check.model.kind !== kind) {
    throw new PullError(
      'invalid_model',
      `${dir}: config.json describes a ${check.model.kind}, not a ${kind}`,
    );
  }
  if (check.problems.length) {
    const shown = check.problems.slice(0, 8).map((p) => `  ${p}`);
    throw new PullError(
      'invalid_model',
      `${dir}: the weights do not match config.json (${check.problems.length} problems):\n${shown.join('\n')}`,
    );
  }
  return check;
}

/**
 * Downloads a Hugging Face CLIP repo into OUT/clip: config.json (checked to be a CLIP we can build
 * before the weights are fetched), tokenizer.json, preprocessor_config.json when the repo has one,
 * and model.safetensors (resolved at `{endpoint}/{repo}/resolve/{revision}/{file}`).
 */
export async function pullClip(repo: string, options: PullOptions): Promise<PullResult> {
  const o = { ...DefaultPullOptions, ...options };
  const log = o.log ?? (() => {});
  const stage = join(o.outDir, STAGE, 'clip');
  const endpoint = o.hfEndpoint.replace(/\/+$/, '');
  const base = `${endpoint}/${repo}/resolve/${encodeURIComponent(o.revision)}`;
  await stagingFolder(stage, { repo, revision: o.revision, endpoint });
  const auth = o.hfToken ? { headers: { authorization: `Bearer ${o.hfToken}` } } : {};

  const fetchFile = async (file: string, optional = false): Promise<boolean> => {
    const dest = join(stage, file);
    if (existsSync(dest)) {
      log(`clip: ${file} already downloaded`);
      return true;
    }
    try {
      await download(`${base}/${file}`, dest, downloadOptions(o, `clip/${file}`, auth));
      return true;
    } catch (err) {
      if (optional && err instanceof DownloadError && err.reason === 'not_found') return false;
      throw err;
    }
  };

  await fetchFile('config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(join(stage, 'config.json'), 'utf8'));
  } catch (cause) {
    await rm(join(stage, 'config.json'), { force: true });
    throw new PullError('not_clip', `${base}/config.json is not JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  try {
    const model = parseModelConfig(json, `${repo} config.json`);
    if (model.kind !== 'clip') throw new PullError('not_clip', `${repo} is a ${model.kind} model, not CLIP`);
    const t = model.config.text_config;
    const v = model.config.vision_config;
    log(
      `clip: ${repo}: vision ${v.num_hidden_layers} x ${v.hidden_size} (${v.image_size} px, patch ${v.patch_size}), ` +
        `text ${t.num_hidden_layers} x ${t.hidden_size}, projection ${model.config.projection_dim}`,
    );
  } catch (err) {
    if (err instanceof ModelConfigError) {
      throw new PullError('not_clip', `${repo}: not a CLIP model we can build: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  await fetchFile('tokenizer.json');
  if (!(await fetchFile('preprocessor_config.json', true)))
    log('clip: no preprocessor_config.json (optional)');
  try {
    await fetchFile('model.safetensors');
  } catch (err) {
    if (err instanceof DownloadError && err.reason === 'not_found') {
      throw new PullError(
        'no_safetensors',
        `${repo} has no model.safetensors at revision ${o.revision} (${err.url} answered 404), and only ` +
          'safetensors are read here. Either name a revision that has one (--clip-revision; Hugging Face ' +
          'opened safetensors conversion PRs for many repos, e.g. refs/pr/N), or convert it where Python runs: ' +
          `python -c "from transformers import CLIPModel; CLIPModel.from_pretrained('${repo}')` +
          `.save_pretrained('clip', safe_serialization=True)" and copy that folder's model.safetensors ` +
          `together with ${repo}'s config.json and tokenizer.json into ${join(o.outDir, 'clip')}.`,
        { cause: err },
      );
    }
    throw err;
  }

  const check = await verify(stage, 'clip');
  const target = join(o.outDir, 'clip');
  await install(stage, target, join(o.outDir, STAGE, 'clip.old'));
  return { dir: target, parameters: check.expectedParameters, skipped: check.unused };
}

const tamingYamlSchema = z.object({
  model: z.looseObject({
    target: z.string(),
    params: z.looseObject({
      ddconfig: z.record(z.string(), z.unknown()),
      n_embed: z.number(),
      embed_dim: z.number(),
      remap: z.unknown().optional(),
    }),
  }),
});

/** taming's model.yaml as our VQGAN config; refuses models whose quantiser or layout we do not build. */
export function vqganConfigFromTamingYaml(text: string, source = 'model.yaml'): VqganConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (cause) {
    throw new PullError('bad_vqgan_config', `${source} is not valid YAML: ${(cause as Error).message}`, {
      cause,
    });
  }
  const r = tamingYamlSchema.safeParse(raw);
  if (!r.success) {
    throw new PullError(
      'bad_vqgan_config',
      `${source}: expected taming's model.target and model.params (ddconfig, n_embed, embed_dim):\n${z.prettifyError(r.error)}`,
    );
  }
  const { target, params } = r.data.model;
  // GumbelVQ, EMA and segmentation variants name and use their quantiser differently.
  if (target !== 'taming.models.vqgan.VQModel') {
    throw new PullError(
      'bad_vqgan_config',
      `${source}: model.target is ${target}; only taming.models.vqgan.VQModel (VectorQuantizer2) is supported`,
    );
  }
  if (params.remap !== undefined && params.remap !== null) {
    throw new PullError(
      'bad_vqgan_config',
      `${source}: codebook index remapping (params.remap) is not supported`,
    );
  }
  try {
    return parseVqganConfig(
      {
        model_type: 'vqgan',
        ddconfig: params.ddconfig,
        n_embed: params.n_embed,
        embed_dim: params.embed_dim,
      },
      source,
    );
  } catch (err) {
    throw new PullError('bad_vqgan_config', (err as Error).message, { cause: err });
  }
}

/**
 * Downloads a taming VQGAN (model.yaml, then last.ckpt) and converts it into OUT/vqgan: config.json
 * and model.safetensors with exactly the parameters vqganParameterShapes lists, in that order;
 * loss.* (LPIPS, discriminator) and other training state are skipped.
 */
export async function pullVqgan(source: VqganSource, options: PullOptions): Promise<PullResult> {
  const o = { ...DefaultPullOptions, ...options };
  const log = o.log ?? (() => {});
  const downloads = join(o.outDir, STAGE, 'vqgan-download');
  await stagingFolder(downloads, { checkpoint: source.checkpointUrl, config: source.configUrl });
  const yamlPath = join(downloads, 'model.yaml');
  const ckptPath = join(downloads, 'last.ckpt');

  if (!existsSync(yamlPath))
    await download(source.configUrl, yamlPath, downloadOptions(o, 'vqgan/model.yaml'));
  const config = vqganConfigFromTamingYaml(await readFile(yamlPath, 'utf8'), source.configUrl);
  const dd = config.ddconfig;
  log(
    `vqgan: ${dd.resolution} px, ch ${dd.ch} x [${dd.ch_mult.join(', ')}], ${config.n_embed} codes of ${config.embed_dim}`,
  );
  if (!existsSync(ckptPath)) {
    await download(
      source.checkpointUrl,
      ckptPath,
      downloadOptions(o, 'vqgan/last.ckpt', source.sha256 ? { sha256: source.sha256 } : {}),
    );
  }

  const stage = join(o.outDir, STAGE, 'vqgan');
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage, { recursive: true });
  let skipped: string[];
  try {
    skipped = convertCheckpoint(ckptPath, config, stage, source, o.dtype, log);
  } catch (err) {
    // A download that cannot be converted is no use to a rerun: fetch it afresh next time.
    await rm(downloads, { recursive: true, force: true });
    await rm(stage, { recursive: true, force: true });
    log(`vqgan: removed the downloaded files in ${downloads}`);
    throw err;
  }
  await writeFile(join(stage, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const check = await verify(stage, 'vqgan');
  const target = join(o.outDir, 'vqgan');
  await install(stage, target, join(o.outDir, STAGE, 'vqgan.old'));
  if (!o.keepDownloads) await rm(downloads, { recursive: true, force: true });
  return { dir: target, parameters: check.expectedParameters, skipped };
}

/** Writes `stage/model.safetensors` from the checkpoint's state_dict; returns the names it left out. */
export function convertCheckpoint(
  ckptPath: string,
  config: VqganConfig,
  stage: string,
  source: VqganSource,
  dtype: WritableDType,
  log: (line: string) => void,
): string[] {
  const ckpt = TorchCheckpoint.open(ckptPath);
  try {
    const root = ckpt.root;
    const sd = ckpt.stateDict();
    const shapes = vqganParameterShapes(config);
    const wanted = new Set(shapes.map(([n]) => n));
    const problems: string[] = [];
    for (const [name, shape] of shapes) {
      const t = sd.get(name);
      if (!t) problems.push(`missing ${name} ${JSON.stringify(shape)}`);
      else if (JSON.stringify(t.shape) !== JSON.stringify(shape)) {
        problems.push(`${name}: shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`);
      }
    }
    if (problems.length) {
      throw new PullError(
        'missing_tensor',
        `${source.checkpointUrl}: the checkpoint does not fit model.yaml (${problems.length} problems):\n` +
          problems
            .slice(0, 8)
            .map((p) => `  ${p}`)
            .join('\n'),
      );
    }
    const skipped = [...sd.keys()].filter((k) => !wanted.has(k));
    const loss = skipped.filter((k) => k.startsWith('loss.')).length;
    const other = skipped.filter((k) => !k.startsWith('loss.'));
    const step = root instanceof PyDict ? root.get('global_step') : undefined;
    log(
      `vqgan: ${wanted.size} tensors kept, ${loss} loss.* skipped` +
        (other.length ? `, ${other.length} others skipped (${other.slice(0, 3).join(', ')})` : '') +
        (typeof step === 'number' ? `; trained ${step} steps` : ''),
    );
    writeSafetensors(
      join(stage, 'model.safetensors'),
      shapes.map(([name, shape]) => ({ name, shape })),
      (spec) => ckpt.readFloat32(spec.name, sd.get(spec.name)!),
      { dtype, metadata: { format: 'pt', source: source.checkpointUrl } },
    );
    return skipped;
  } finally {
    ckpt.close();
  }
}
