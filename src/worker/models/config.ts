// Model configs as they sit in a model folder's config.json: Hugging Face's CLIPConfig form for CLIP
// and taming-transformers' ddconfig for the VQGAN; presets (full-size and tiny); and the complete,
// ordered list of parameter names and shapes each config implies, in the checkpoints' own naming.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { type ErrorCode, ReasonedError } from '../../shared/errors.js';

/** No config.json: the model is not installed. One we cannot build: the folder is misconfigured. */
const modelConfigErrorCodes = {
  missing_config: 'model_missing',
  bad_json: 'config_invalid',
  unknown_model: 'config_invalid',
  invalid_config: 'config_invalid',
} as const satisfies Record<string, ErrorCode>;

export type ModelConfigErrorReason = keyof typeof modelConfigErrorCodes;

/** A model folder whose config.json is absent, unreadable or not a config we can build. */
export class ModelConfigError extends ReasonedError<
  ModelConfigErrorReason,
  (typeof modelConfigErrorCodes)[ModelConfigErrorReason]
> {
  override readonly name = 'ModelConfigError';
  constructor(reason: ModelConfigErrorReason, message: string, options: { cause?: unknown } = {}) {
    super(modelConfigErrorCodes[reason], reason, message, options);
  }
}

const posInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();
/** The activations the graph builder has; other Hugging Face names would silently compute something else. */
const activation = z.enum(['quick_gelu', 'gelu']);

const headsDivide = (c: { hidden_size: number; num_attention_heads: number }) =>
  c.hidden_size % c.num_attention_heads === 0;
const headsMessage = { message: 'hidden_size must be a multiple of num_attention_heads' };

// Defaults are those of Hugging Face's CLIPTextConfig / CLIPVisionConfig / CLIPConfig, so a config.json
// that omits a field means here what it means to transformers.
export const clipTextConfigSchema = z
  .object({
    vocab_size: posInt.default(49408),
    hidden_size: posInt.default(512),
    intermediate_size: posInt.default(2048),
    projection_dim: posInt.default(512),
    num_hidden_layers: posInt.default(12),
    num_attention_heads: posInt.default(8),
    max_position_embeddings: posInt.default(77),
    hidden_act: activation.default('quick_gelu'),
    layer_norm_eps: z.number().positive().default(1e-5),
    pad_token_id: tokenId.default(1),
    bos_token_id: tokenId.default(49406),
    eos_token_id: tokenId.default(49407),
  })
  .refine(headsDivide, headsMessage)
  .refine((c) => c.eos_token_id < c.vocab_size && c.bos_token_id < c.vocab_size, {
    message: 'bos_token_id and eos_token_id must be below vocab_size',
  });

export const clipVisionConfigSchema = z
  .object({
    hidden_size: posInt.default(768),
    intermediate_size: posInt.default(3072),
    projection_dim: posInt.default(512),
    num_hidden_layers: posInt.default(12),
    num_attention_heads: posInt.default(12),
    num_channels: posInt.default(3),
    image_size: posInt.default(224),
    patch_size: posInt.default(32),
    hidden_act: activation.default('quick_gelu'),
    layer_norm_eps: z.number().positive().default(1e-5),
  })
  .refine(headsDivide, headsMessage)
  .refine((c) => c.image_size % c.patch_size === 0, {
    message: 'image_size must be a multiple of patch_size',
  });

/**
 * Older Hugging Face configs (openai/clip-vit-base-patch32 among them) may carry `text_config_dict` /
 * `vision_config_dict`; transformers lets those override `text_config` / `vision_config`, so do we.
 */
function mergeLegacyDicts(input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const out: Record<string, unknown> = { ...input };
  for (const key of ['text_config', 'vision_config'] as const) {
    const legacy = out[`${key}_dict`];
    if (typeof legacy === 'object' && legacy !== null) {
      const base = out[key];
      out[key] = { ...(typeof base === 'object' && base !== null ? base : {}), ...legacy };
    }
  }
  return out;
}

export const clipConfigSchema = z.preprocess(
  mergeLegacyDicts,
  z.object({
    model_type: z.literal('clip'),
    architectures: z.array(z.string()).default(['CLIPModel']),
    /** The width of both projections in CLIPModel (the sub-configs' own projection_dim is unused there). */
    projection_dim: posInt.default(512),
    logit_scale_init_value: z.number().default(2.6592),
    text_config: clipTextConfigSchema.prefault({}),
    vision_config: clipVisionConfigSchema.prefault({}),
  }),
);

export type ClipTextConfig = z.output<typeof clipTextConfigSchema>;
export type ClipVisionConfig = z.output<typeof clipVisionConfigSchema>;
export type ClipConfig = z.output<typeof clipConfigSchema>;

/** taming-transformers' Encoder/Decoder arguments (the `ddconfig` of its VQModel yaml). */
export const vqganDdConfigSchema = z
  .object({
    // VQModel's quant_conv expects z_channels from the encoder; double_z (a VAE's mean and variance)
    // would hand it twice that.
    double_z: z.literal(false, { message: 'double_z must be false for a VQGAN' }).default(false),
    z_channels: posInt,
    resolution: posInt,
    in_channels: posInt,
    out_ch: posInt,
    ch: posInt,
    ch_mult: z.array(posInt).min(1),
    num_res_blocks: posInt,
    attn_resolutions: z.array(posInt).default([]),
    dropout: z.number().min(0).max(1).default(0),
  })
  .superRefine((c, ctx) => {
    // Every GroupNorm in the model normalises ch * mult channels in 32 groups.
    for (const m of c.ch_mult) {
      if ((c.ch * m) % 32 !== 0) {
        ctx.addIssue({
          code: 'custom',
          message: `ch * ch_mult (${c.ch} * ${m}) must be a multiple of 32 (GroupNorm)`,
        });
      }
    }
    const down = 2 ** (c.ch_mult.length - 1);
    if (c.resolution % down !== 0) {
      ctx.addIssue({ code: 'custom', message: `resolution ${c.resolution} must be a multiple of ${down}` });
    }
  });

export const vqganConfigSchema = z.object({
  model_type: z.literal('vqgan'),
  ddconfig: vqganDdConfigSchema,
  /** Codebook vector width (quant_conv output, post_quant_conv input). */
  embed_dim: posInt,
  /** Codebook size. */
  n_embed: posInt,
});

export type VqganDdConfig = z.output<typeof vqganDdConfigSchema>;
export type VqganConfig = z.output<typeof vqganConfigSchema>;

export type ModelConfig = { kind: 'clip'; config: ClipConfig } | { kind: 'vqgan'; config: VqganConfig };

function invalid(source: string, what: string, err: z.ZodError): ModelConfigError {
  return new ModelConfigError(
    'invalid_config',
    `${source}: not a valid ${what} config:\n${z.prettifyError(err)}`,
    {
      cause: err,
    },
  );
}

/** Parses a CLIPConfig JSON object, filling Hugging Face's defaults; throws ModelConfigError. */
export function parseClipConfig(json: unknown, source = 'CLIP config'): ClipConfig {
  const r = clipConfigSchema.safeParse(json);
  if (!r.success) throw invalid(source, 'CLIP', r.error);
  return r.data;
}

/** Parses a VQGAN config JSON object; throws ModelConfigError. */
export function parseVqganConfig(json: unknown, source = 'VQGAN config'): VqganConfig {
  const r = vqganConfigSchema.safeParse(json);
  if (!r.success) throw invalid(source, 'VQGAN', r.error);
  return r.data;
}

/** Tells CLIP from VQGAN by `model_type` (falling back to the shape of the object) and parses it. */
export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError('invalid_config', `${source}: expected a JSON object`);
  }
  const o = json as Record<string, unknown>;
  const archs = Array.isArray(o.architectures) ? o.architectures : [];
  if (o.model_type === 'clip' || (o.model_type === undefined && archs.includes('CLIPModel'))) {
    return { kind: 'clip', config: parseClipConfig({ ...o, model_type: 'clip' }, source) };
  }
  if (o.model_type === 'vqgan' || (o.model_type === undefined && 'ddconfig' in o)) {
    return { kind: 'vqgan', config: parseVqganConfig({ ...o, model_type: 'vqgan' }, source) };
  }
  throw new ModelConfigError(
    'unknown_model',
    `${source}: model_type ${JSON.stringify(o.model_type)} is neither "clip" (Hugging Face CLIPConfig) nor "vqgan"`,
  );
}

/** Reads `dir/config.json` and parses it as CLIP or VQGAN. */
export async function loadModelConfig(dir: string): Promise<ModelConfig> {
  const { json, path } = await readConfigJson(dir);
  return parseModelConfig(json, path);
}

/**
 * `dir/config.json` as JSON, with its path; a missing or unreadable file and bad JSON are
 * ModelConfigErrors naming the file (every model folder's config goes through here).
 */
export async function readConfigJson(dir: string): Promise<{ json: unknown; path: string }> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ModelConfigError('missing_config', `cannot read ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ModelConfigError('bad_json', `${path} is not valid JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  return { json, path };
}

// ---------------------------------------------------------------------------------------------------
// Presets

/** openai/clip-vit-base-patch32: ViT-B/32 image tower, 12-layer 512-wide text tower, 512-d projections. */
export function clipVitB32Config(): ClipConfig {
  return parseClipConfig({
    model_type: 'clip',
    projection_dim: 512,
    logit_scale_init_value: 2.6592,
    text_config: {
      hidden_size: 512,
      intermediate_size: 2048,
      num_hidden_layers: 12,
      num_attention_heads: 8,
      max_position_embeddings: 77,
      vocab_size: 49408,
      projection_dim: 512,
      bos_token_id: 49406,
      eos_token_id: 49407,
    },
    vision_config: {
      hidden_size: 768,
      intermediate_size: 3072,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      image_size: 224,
      patch_size: 32,
      projection_dim: 512,
    },
  });
}

/** The token ids a tiny CLIP takes from its tokenizer. */
export interface TinyClipTokens {
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /** @defaultValue eosTokenId (CLIP pads with the end token) */
  readonly padTokenId?: number;
}

/** A CLIP small enough for unit tests: 2 layers of width 32 in both towers, 32 px images in 8 px patches. */
export function tinyClipConfig(tokens: TinyClipTokens): ClipConfig {
  return parseClipConfig({
    model_type: 'clip',
    projection_dim: 16,
    logit_scale_init_value: 2.6592,
    text_config: {
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      max_position_embeddings: 77,
      vocab_size: tokens.vocabSize,
      projection_dim: 16,
      bos_token_id: tokens.bosTokenId,
      eos_token_id: tokens.eosTokenId,
      pad_token_id: tokens.padTokenId ?? tokens.eosTokenId,
    },
    vision_config: {
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      image_size: 32,
      patch_size: 8,
      projection_dim: 16,
    },
  });
}

/** taming-transformers vqgan_imagenet_f16_16384: 256 px images to 16x16 latents, 16384-entry codebook. */
export function vqganF16_16384Config(): VqganConfig {
  return parseVqganConfig({
    model_type: 'vqgan',
    ddconfig: {
      double_z: false,
      z_channels: 256,
      resolution: 256,
      in_channels: 3,
      out_ch: 3,
      ch: 128,
      ch_mult: [1, 1, 2, 2, 4],
      num_res_blocks: 2,
      attn_resolutions: [16],
      dropout: 0,
    },
    embed_dim: 256,
    n_embed: 16384,
  });
}

/**
 * The tiny VQGAN (tests, the offline demo): vqgan_imagenet_f16_16384's shape at a fraction of its
 * width. Five levels downsample by 16 and attention runs at the lowest one only (16 of 256, as in
 * f16), so a 128 px image is an 8x8 latent and attention costs what it costs the real model. 32
 * channels is the least GroupNorm(32) allows; the deepest level is 64 wide so that width changes
 * (nin_shortcut) are exercised as in the real model. One res block a level; 1024 codes of 16, far
 * more codes than an 8x8 latent has positions, as in f16 (a 64-code book made the optimisation
 * coarse: generation/loop tests descended half as far).
 */
export function tinyVqganConfig(): VqganConfig {
  return parseVqganConfig({
    model_type: 'vqgan',
    ddconfig: {
      double_z: false,
      z_channels: 16,
      resolution: 256,
      in_channels: 3,
      out_ch: 3,
      ch: 32,
      ch_mult: [1, 1, 1, 1, 2],
      num_res_blocks: 1,
      attn_resolutions: [16],
      dropout: 0,
    },
    embed_dim: 16,
    n_embed: 1024,
  });
}

/** Side of the latent grid: the resolution after len(ch_mult) - 1 halvings (16 for f16 at 256 px). */
export function vqganLatentSize(config: VqganConfig): number {
  const dd = config.ddconfig;
  return dd.resolution / 2 ** (dd.ch_mult.length - 1);
}

// ---------------------------------------------------------------------------------------------------
// Parameter lists

export type ParameterShapes = readonly (readonly [name: string, shape: readonly number[]])[];

/**
 * Every parameter of Hugging Face's CLIPModel for this config, in its state_dict order (buffers such
 * as position_ids excluded: they are not weights and newer transformers do not save them).
 */
export function clipParameterShapes(config: ClipConfig): ParameterShapes {
  const out: [string, number[]][] = [];
  const t = config.text_config;
  const v = config.vision_config;
  const layers = (prefix: string, d: number, inter: number, n: number) => {
    for (let i = 0; i < n; i++) {
      const p = `${prefix}.encoder.layers.${i}`;
      for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) {
        out.push([`${p}.self_attn.${proj}.weight`, [d, d]], [`${p}.self_attn.${proj}.bias`, [d]]);
      }
      out.push([`${p}.layer_norm1.weight`, [d]], [`${p}.layer_norm1.bias`, [d]]);
      out.push([`${p}.mlp.fc1.weight`, [inter, d]], [`${p}.mlp.fc1.bias`, [inter]]);
      out.push([`${p}.mlp.fc2.weight`, [d, inter]], [`${p}.mlp.fc2.bias`, [d]]);
      out.push([`${p}.layer_norm2.weight`, [d]], [`${p}.layer_norm2.bias`, [d]]);
    }
  };
  const norm = (name: string, d: number) => out.push([`${name}.weight`, [d]], [`${name}.bias`, [d]]);

  // CLIPModel's own parameter comes before its submodules in a PyTorch state_dict.
  out.push(['logit_scale', []]);
  out.push(['text_model.embeddings.token_embedding.weight', [t.vocab_size, t.hidden_size]]);
  out.push(['text_model.embeddings.position_embedding.weight', [t.max_position_embeddings, t.hidden_size]]);
  layers('text_model', t.hidden_size, t.intermediate_size, t.num_hidden_layers);
  norm('text_model.final_layer_norm', t.hidden_size);

  const grid = v.image_size / v.patch_size;
  out.push(['vision_model.embeddings.class_embedding', [v.hidden_size]]);
  out.push([
    'vision_model.embeddings.patch_embedding.weight',
    [v.hidden_size, v.num_channels, v.patch_size, v.patch_size],
  ]);
  out.push(['vision_model.embeddings.position_embedding.weight', [grid * grid + 1, v.hidden_size]]);
  norm('vision_model.pre_layrnorm', v.hidden_size); // sic: Hugging Face's spelling
  layers('vision_model', v.hidden_size, v.intermediate_size, v.num_hidden_layers);
  norm('vision_model.post_layernorm', v.hidden_size);

  out.push(['visual_projection.weight', [config.projection_dim, v.hidden_size]]);
  out.push(['text_projection.weight', [config.projection_dim, t.hidden_size]]);
  return out;
}

/**
 * Every parameter of taming-transformers' VQModel (encoder, decoder, quantizer codebook, quant_conv,
 * post_quant_conv; not the training loss) in its state_dict order. Channel bookkeeping follows
 * taming/modules/diffusionmodules/model.py: level i of the encoder maps ch*in_mult[i] -> ch*ch_mult[i]
 * (in_mult = [1, ...ch_mult]) and halves the resolution after every level but the last; the decoder
 * walks the levels in reverse with num_res_blocks + 1 blocks each. Attention follows a block wherever
 * the current resolution is in attn_resolutions.
 */
export function vqganParameterShapes(config: VqganConfig): ParameterShapes {
  const dd = config.ddconfig;
  const out: [string, number[]][] = [];
  const conv = (name: string, cout: number, cin: number, k: number) =>
    out.push([`${name}.weight`, [cout, cin, k, k]], [`${name}.bias`, [cout]]);
  const norm = (name: string, c: number) => out.push([`${name}.weight`, [c]], [`${name}.bias`, [c]]);
  const resnet = (name: string, cin: number, cout: number) => {
    norm(`${name}.norm1`, cin);
    conv(`${name}.conv1`, cout, cin, 3);
    norm(`${name}.norm2`, cout);
    conv(`${name}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${name}.nin_shortcut`, cout, cin, 1);
  };
  const attn = (name: string, c: number) => {
    norm(`${name}.norm`, c);
    for (const p of ['q', 'k', 'v', 'proj_out']) conv(`${name}.${p}`, c, c, 1);
  };
  const levels = dd.ch_mult.length;
  const mult = (i: number) => dd.ch_mult[i]!;

  // Encoder
  conv('encoder.conv_in', dd.ch, dd.in_channels, 3);
  let res = dd.resolution;
  let cin = dd.ch;
  for (let i = 0; i < levels; i++) {
    const cout = dd.ch * mult(i);
    const attnHere = dd.attn_resolutions.includes(res);
    for (let j = 0; j < dd.num_res_blocks; j++) {
      resnet(`encoder.down.${i}.block.${j}`, cin, cout);
      cin = cout;
    }
    if (attnHere) for (let j = 0; j < dd.num_res_blocks; j++) attn(`encoder.down.${i}.attn.${j}`, cout);
    if (i !== levels - 1) {
      conv(`encoder.down.${i}.downsample.conv`, cout, cout, 3);
      res /= 2;
    }
  }
  resnet('encoder.mid.block_1', cin, cin);
  attn('encoder.mid.attn_1', cin);
  resnet('encoder.mid.block_2', cin, cin);
  norm('encoder.norm_out', cin);
  conv('encoder.conv_out', dd.z_channels, cin, 3);

  // Decoder: build the levels deepest-first (as taming does), then list them in index order (as its
  // ModuleList, filled with insert(0, ...), stores them).
  const top = dd.ch * mult(levels - 1);
  conv('decoder.conv_in', top, dd.z_channels, 3);
  resnet('decoder.mid.block_1', top, top);
  attn('decoder.mid.attn_1', top);
  resnet('decoder.mid.block_2', top, top);
  const upLevels: [string, number[]][][] = [];
  res = vqganLatentSize(config);
  cin = top;
  for (let i = levels - 1; i >= 0; i--) {
    const level: [string, number[]][] = [];
    const start = out.length;
    const cout = dd.ch * mult(i);
    for (let j = 0; j <= dd.num_res_blocks; j++) {
      resnet(`decoder.up.${i}.block.${j}`, cin, cout);
      cin = cout;
    }
    if (dd.attn_resolutions.includes(res)) {
      for (let j = 0; j <= dd.num_res_blocks; j++) attn(`decoder.up.${i}.attn.${j}`, cout);
    }
    if (i !== 0) {
      conv(`decoder.up.${i}.upsample.conv`, cout, cout, 3);
      res *= 2;
    }
    level.push(...out.splice(start));
    upLevels[i] = level;
  }
  for (const level of upLevels) out.push(...level);
  norm('decoder.norm_out', cin);
  conv('decoder.conv_out', dd.out_ch, cin, 3);

  out.push(['quantize.embedding.weight', [config.n_embed, config.embed_dim]]);
  conv('quant_conv', config.embed_dim, dd.z_channels, 1);
  conv('post_quant_conv', dd.z_channels, config.embed_dim, 1);
  return out;
}

/** Total element count of a parameter list. */
export function countParameters(shapes: ParameterShapes): number {
  let n = 0;
  for (const [, shape] of shapes) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
