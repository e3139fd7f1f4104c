// Random-weight models in exactly the formats real ones come in (a Hugging Face CLIP folder, a taming
// VQGAN state_dict as safetensors), so tests, the offline demo and benchmarks run the same loading code
// as real weights. Deterministic for a seed; each tensor is drawn from its own stream keyed by its name.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashString, mix32, Sfc32 } from '../sfc32.js';
import {
  type ClipConfig,
  clipParameterShapes,
  clipVitB32Config,
  countParameters,
  type ParameterShapes,
  tinyClipConfig,
  tinyVqganConfig,
  type VqganConfig,
  vqganF16_16384Config,
  vqganParameterShapes,
} from './config.js';
import {
  buildTinyClipTokenizerJson,
  clipTokenizerJson,
  END_TOKEN,
  START_TOKEN,
  TINY_TOKENIZER,
} from './tokenizer-builder.js';
import { type WritableDType, writeSafetensors } from './weights.js';

/** The random-model generator, seeded through splitmix32; `stream` names an independent sequence. */
export class SeededRandom extends Sfc32 {
  /** `stream` names an independent sequence under the same seed (here: a tensor name). */
  constructor(seed: number, stream = '') {
    let s = seed >>> 0;
    const next = () => {
      const v = mix32(s);
      s = (s + 0x9e3779b9) >>> 0;
      return v;
    };
    // The seed fixes a, c and d through a bijection, the stream's hash perturbs b: two seeds never share
    // a state, and two names under one seed only if their hashes collide.
    const a = next();
    const b = (next() ^ hashString(stream)) >>> 0;
    const c = next();
    const d = next();
    super(a, b, c, d, 12);
  }
}

export type Init =
  | { readonly kind: 'normal'; readonly mean: number; readonly std: number }
  | { readonly kind: 'uniform'; readonly low: number; readonly high: number }
  | { readonly kind: 'constant'; readonly value: number };

const normal = (std: number, mean = 0): Init => ({ kind: 'normal', mean, std });
const uniform = (bound: number): Init => ({ kind: 'uniform', low: -bound, high: bound });

/**
 * Spread of the random norm affines. Weight 1 / bias 0 (PyTorch's init) would make every norm's affine
 * an identity, and a graph that dropped or swapped weight and bias would still match its reference;
 * 0.1 keeps activations sane while making those bugs show.
 */
const NORM_SPREAD = 0.1;

/** How a parameter is drawn, chosen by its name and shape. */
export function initFor(
  name: string,
  shape: readonly number[],
  model: 'clip' | 'vqgan',
  extra: InitExtras,
): Init {
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const isNorm =
    /(^|\.)(norm\w*|layer_norm\d|final_layer_norm|pre_layrnorm|post_layernorm)\.(weight|bias)$/.test(name);
  if (isNorm) return name.endsWith('.weight') ? normal(NORM_SPREAD, 1) : normal(NORM_SPREAD);
  if (model === 'clip') {
    if (name === 'logit_scale') return { kind: 'constant', value: extra.logitScale ?? 2.6592 };
    // Hugging Face's CLIP init for embeddings: N(0, 0.02) tables, class token N(0, d^-1/2).
    if (name.endsWith('token_embedding.weight') || name.endsWith('position_embedding.weight'))
      return normal(0.02);
    if (name.endsWith('class_embedding')) return normal(shape[0]! ** -0.5);
  } else if (name === 'quantize.embedding.weight') {
    // taming draws the codebook from U(-1/n, 1/n): for 16384 entries that is ~6e-5, lost under the
    // biases and GroupNorm's eps, so the random decoder's image hardly depends on z (measured on the full
    // model: two random latents decode 0.001 apart, rms; with U(-1, 1), 0.63), and generation would have
    // nothing to steer. U(-1, 1) is also about the scale of quant_conv's output.
    return uniform(1);
  }
  // Biases as PyTorch's Linear/Conv2d defaults (U(+-1/sqrt(fan_in))); weights N(0, 1/fan_in), which
  // keeps each layer's output at about the scale of its (normalised) input.
  if (name.endsWith('.bias')) return uniform(1 / Math.sqrt(extra.biasFanIn?.get(name) ?? 1));
  return normal(1 / Math.sqrt(fanIn));
}

export interface InitExtras {
  readonly logitScale?: number;
  /** fan_in of the weight beside each bias (a bias's own shape does not tell it). */
  readonly biasFanIn?: ReadonlyMap<string, number>;
}

/** initFor's extras for a model's parameter list: each bias's fan-in from the weight beside it. */
export function initExtras(shapes: ParameterShapes, logitScale?: number): InitExtras {
  const biasFanIn = new Map<string, number>();
  const byName = new Map(shapes);
  for (const [name] of shapes) {
    if (!name.endsWith('.bias')) continue;
    const w = byName.get(`${name.slice(0, -'.bias'.length)}.weight`);
    if (w && w.length >= 2)
      biasFanIn.set(
        name,
        w.slice(1).reduce((a, b) => a * b, 1),
      );
  }
  return logitScale === undefined ? { biasFanIn } : { biasFanIn, logitScale };
}

/** Draws one tensor: the same (seed, name, shape, init) always gives the same values. */
export function drawTensor(seed: number, name: string, shape: readonly number[], init: Init): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (init.kind === 'constant') return out.fill(init.value);
  const rng = new SeededRandom(seed, name);
  if (init.kind === 'uniform') {
    const span = init.high - init.low;
    for (let i = 0; i < n; i++) out[i] = init.low + span * rng.next();
  } else {
    for (let i = 0; i < n; i++) out[i] = init.mean + init.std * rng.normal();
  }
  return out;
}

/** A random CLIP's parameters, one at a time, in state_dict order. */
export function* randomClipTensors(
  config: ClipConfig,
  seed: number,
): Generator<readonly [name: string, shape: readonly number[], data: Float32Array]> {
  const shapes = clipParameterShapes(config);
  const extra = initExtras(shapes, config.logit_scale_init_value);
  for (const [name, shape] of shapes)
    yield [name, shape, drawTensor(seed, name, shape, initFor(name, shape, 'clip', extra))];
}

/** A random VQGAN's parameters, one at a time, in state_dict order. */
export function* randomVqganTensors(
  config: VqganConfig,
  seed: number,
): Generator<readonly [name: string, shape: readonly number[], data: Float32Array]> {
  const shapes = vqganParameterShapes(config);
  const extra = initExtras(shapes);
  for (const [name, shape] of shapes)
    yield [name, shape, drawTensor(seed, name, shape, initFor(name, shape, 'vqgan', extra))];
}

export interface RandomWriteOptions {
  /**
   * Seed for every tensor.
   * @defaultValue 0
   */
  readonly seed?: number;
  /**
   * Element type on disk (compute is float32 either way).
   * @defaultValue 'F32'
   */
  readonly dtype?: WritableDType;
}

// CLIP's preprocessing constants, as openai/clip-vit-base-patch32's preprocessor_config.json has them.
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** The config.json a Hugging Face CLIP folder holds (CLIPConfig form with both sub-configs). */
export function clipConfigJson(config: ClipConfig): Record<string, unknown> {
  return {
    architectures: ['CLIPModel'],
    model_type: 'clip',
    projection_dim: config.projection_dim,
    logit_scale_init_value: config.logit_scale_init_value,
    torch_dtype: 'float32',
    text_config: { ...config.text_config, model_type: 'clip_text_model' },
    vision_config: { ...config.vision_config, model_type: 'clip_vision_model' },
  };
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

function writeTensors(
  path: string,
  shapes: ParameterShapes,
  tensors: Generator<readonly [string, readonly number[], Float32Array]>,
  dtype: WritableDType,
  metadata: Record<string, string>,
): void {
  writeSafetensors(
    path,
    shapes.map(([name, shape]) => ({ name, shape })),
    (spec) => {
      const next = tensors.next();
      // The generator walks the same list in the same order; a mismatch is a bug here, not bad input.
      if (next.done || next.value[0] !== spec.name)
        throw new Error(`random tensors out of step at ${spec.name}`);
      return next.value[2];
    },
    { dtype, metadata },
  );
}

/**
 * Writes a Hugging Face-style CLIP folder: config.json, model.safetensors, preprocessor_config.json,
 * and tokenizer.json when given its text (the tokenizer is built elsewhere).
 */
export function writeRandomClip(
  dir: string,
  config: ClipConfig,
  options: RandomWriteOptions & { readonly tokenizerJson?: string } = {},
): { readonly parameters: number } {
  const seed = options.seed ?? 0;
  mkdirSync(dir, { recursive: true });
  const shapes = clipParameterShapes(config);
  writeTensors(
    join(dir, 'model.safetensors'),
    shapes,
    randomClipTensors(config, seed),
    options.dtype ?? 'F32',
    {
      format: 'pt',
      random_seed: String(seed),
    },
  );
  writeJson(join(dir, 'config.json'), clipConfigJson(config));
  const size = config.vision_config.image_size;
  writeJson(join(dir, 'preprocessor_config.json'), {
    crop_size: { height: size, width: size },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: CLIP_MEAN,
    image_std: CLIP_STD,
    image_processor_type: 'CLIPImageProcessor',
    resample: 3,
    rescale_factor: 1 / 255,
    size: { shortest_edge: size },
  });
  if (options.tokenizerJson !== undefined) writeFileSync(join(dir, 'tokenizer.json'), options.tokenizerJson);
  return { parameters: countParameters(shapes) };
}

/** Writes a VQGAN folder: config.json (model_type, ddconfig, embed_dim, n_embed) and model.safetensors. */
export function writeRandomVqgan(
  dir: string,
  config: VqganConfig,
  options: RandomWriteOptions = {},
): { readonly parameters: number } {
  const seed = options.seed ?? 0;
  mkdirSync(dir, { recursive: true });
  const shapes = vqganParameterShapes(config);
  writeTensors(
    join(dir, 'model.safetensors'),
    shapes,
    randomVqganTensors(config, seed),
    options.dtype ?? 'F32',
    {
      format: 'pt',
      random_seed: String(seed),
    },
  );
  writeJson(join(dir, 'config.json'), config);
  return { parameters: countParameters(shapes) };
}

export type RandomPreset = 'tiny' | 'full';

export interface RandomModelsOptions extends RandomWriteOptions {
  readonly preset: RandomPreset;
  /** Receives `clip/` and `vqgan/`. */
  readonly outDir: string;
}

export interface RandomModelsResult {
  readonly clipDir: string;
  readonly vqganDir: string;
  readonly clipParameters: number;
  readonly vqganParameters: number;
}

/**
 * A tokenizer.json for the full-size CLIP: the tiny tokenizer's byte symbols and merges, unused filler
 * entries, and the special tokens at CLIP's ids 49406 / 49407, so ids fit a 49408-row embedding table
 * and the end token sits where the config says. (The real vocabulary cannot be downloaded here.)
 */
export function fullSizeTokenizerJson(vocabSize = 49408): object {
  const tiny = buildTinyClipTokenizerJson() as { model: { vocab: Record<string, number>; merges: string[] } };
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const [token, id] of Object.entries(tiny.model.vocab).sort((a, b) => a[1] - b[1])) {
    if (token === START_TOKEN || token === END_TOKEN) continue;
    if (id !== next) throw new Error(`tiny tokenizer vocabulary is not contiguous at id ${next}`);
    vocab[token] = next++;
  }
  for (let i = 0; next < vocabSize - 2; i++) vocab[`<|unused_${i}|>`] = next++;
  vocab[START_TOKEN] = vocabSize - 2;
  vocab[END_TOKEN] = vocabSize - 1;
  return clipTokenizerJson(vocab, tiny.model.merges);
}

/** The CLIP and VQGAN configs a preset writes, with the tokenizer.json its CLIP gets. */
export function randomPresetConfigs(preset: RandomPreset): {
  readonly clip: ClipConfig;
  readonly vqgan: VqganConfig;
  readonly tokenizer: () => object;
} {
  if (preset === 'tiny') {
    return {
      clip: tinyClipConfig({
        vocabSize: TINY_TOKENIZER.vocabSize,
        bosTokenId: TINY_TOKENIZER.startId,
        eosTokenId: TINY_TOKENIZER.endId,
        padTokenId: TINY_TOKENIZER.padId,
      }),
      vqgan: tinyVqganConfig(),
      tokenizer: buildTinyClipTokenizerJson,
    };
  }
  const clip = clipVitB32Config();
  return {
    clip,
    vqgan: vqganF16_16384Config(),
    tokenizer: () => fullSizeTokenizerJson(clip.text_config.vocab_size),
  };
}

/** Writes `outDir/clip` (Hugging Face layout, with tokenizer.json) and `outDir/vqgan` for a preset. */
export function writeRandomModels(options: RandomModelsOptions): RandomModelsResult {
  const clipDir = join(options.outDir, 'clip');
  const vqganDir = join(options.outDir, 'vqgan');
  const write = { seed: options.seed ?? 0, dtype: options.dtype ?? 'F32' } as const;
  const { clip, vqgan, tokenizer } = randomPresetConfigs(options.preset);
  const c = writeRandomClip(clipDir, clip, { ...write, tokenizerJson: JSON.stringify(tokenizer()) });
  const v = writeRandomVqgan(vqganDir, vqgan, write);
  return { clipDir, vqganDir, clipParameters: c.parameters, vqganParameters: v.parameters };
}
