import { z } from 'zod';
import { ModelConfigError, type ParameterShapes, readConfigJson } from '../models/config.js';

const posInt = z.number().int().positive();

/**
 * minDALL-E's `stage2` section (configs/dalle-1.3B.yaml): vocabularies and the transformer's
 * hparams, flattened. Dropouts are absent: inference never drops. Defaults are the 1.3B model's.
 */
export const dalleConfigSchema = z
  .object({
    model_type: z.literal('mindalle'),
    vocab_size_txt: posInt.default(16384),
    vocab_size_img: posInt.default(16384),
    embed_dim: posInt.default(1536),
    n_layers: posInt.default(42),
    n_heads: posInt.default(24),
    /** Text tokens the prompt is padded or truncated to. */
    ctx_len_txt: posInt.default(64),
    /** Image tokens: a square grid of codes, row-major (16x16 for 256 px through the f16 VQGAN). */
    ctx_len_img: posInt.default(256),
    mlp_bias: z.boolean().default(true),
    attn_bias: z.boolean().default(true),
    /** minDALL-E's GELU: exact (erf) unless this is set, then x * sigmoid(1.702 x). */
    gelu_use_approx: z.boolean().default(false),
    /** torch.nn.LayerNorm's default: minDALL-E does not change it. */
    layer_norm_eps: z.number().positive().default(1e-5),
    /** Id of the [PAD] token the prompt is padded with (the tokenizer's added token). */
    pad_token_id: z.number().int().nonnegative().default(0),
  })
  .superRefine((c, ctx) => {
    if (c.embed_dim % c.n_heads !== 0)
      ctx.addIssue({ code: 'custom', message: 'embed_dim must be a multiple of n_heads' });
    const side = Math.round(Math.sqrt(c.ctx_len_img));
    if (side * side !== c.ctx_len_img)
      ctx.addIssue({ code: 'custom', message: `ctx_len_img ${c.ctx_len_img} is not a square grid` });
    if (c.pad_token_id >= c.vocab_size_txt)
      ctx.addIssue({ code: 'custom', message: 'pad_token_id must be below vocab_size_txt' });
  });

export type DalleConfig = z.output<typeof dalleConfigSchema>;

/** Parses a minDALL-E stage-2 config object; throws ModelConfigError. */
export function parseDalleConfig(json: unknown, source = 'minDALL-E config'): DalleConfig {
  const r = dalleConfigSchema.safeParse(json);
  if (!r.success) {
    throw new ModelConfigError(
      'invalid_config',
      `${source}: not a valid minDALL-E config:\n${z.prettifyError(r.error)}`,
      { cause: r.error },
    );
  }
  return r.data;
}

/** Reads `dir/config.json` as a minDALL-E stage-2 config. */
export async function loadDalleConfig(dir: string): Promise<DalleConfig> {
  const { json, path } = await readConfigJson(dir);
  return parseDalleConfig(json, path);
}

/** minDALL-E 1.3B: 42 layers of width 1536 (24 heads), 64 text tokens, a 16x16 grid of 16384 codes. */
export function minDalle13BConfig(): DalleConfig {
  return parseDalleConfig({ model_type: 'mindalle' });
}

/**
 * A tiny model of the same shape for tests and the offline demo: 2 layers of width 32 (4 heads of 8),
 * 16 text tokens, an 8x8 grid over the tiny VQGAN's 1024 codes.
 */
export function tinyDalleConfig(vocabSizeTxt: number, padTokenId: number): DalleConfig {
  return parseDalleConfig({
    model_type: 'mindalle',
    vocab_size_txt: vocabSizeTxt,
    vocab_size_img: 1024,
    embed_dim: 32,
    n_layers: 2,
    n_heads: 4,
    ctx_len_txt: 16,
    ctx_len_img: 64,
    pad_token_id: padTokenId,
  });
}

/** Side of the image token grid. */
export const dalleGridSize = (c: DalleConfig): number => Math.round(Math.sqrt(c.ctx_len_img));

/**
 * Every parameter of minDALL-E's Transformer1d in its state_dict order: token and position
 * embeddings of text and image, the blocks (ln1, ln2, attention key/query/value/proj, MLP as
 * `mlp.0` and `mlp.2` of its nn.Sequential), the final LayerNorm and the two bias-free heads.
 * The attention mask is a non-persistent buffer and not saved.
 */
export function dalleParameterShapes(c: DalleConfig): ParameterShapes {
  const d = c.embed_dim;
  const out: [string, number[]][] = [
    ['tok_emb_img.weight', [c.vocab_size_img, d]],
    ['tok_emb_txt.weight', [c.vocab_size_txt, d]],
    ['pos_emb_img.weight', [c.ctx_len_img, d]],
    ['pos_emb_txt.weight', [c.ctx_len_txt, d]],
  ];
  const linear = (name: string, outF: number, inF: number, bias: boolean) => {
    out.push([`${name}.weight`, [outF, inF]]);
    if (bias) out.push([`${name}.bias`, [outF]]);
  };
  for (let i = 0; i < c.n_layers; i++) {
    const b = `blocks.${i}`;
    out.push(
      [`${b}.ln1.weight`, [d]],
      [`${b}.ln1.bias`, [d]],
      [`${b}.ln2.weight`, [d]],
      [`${b}.ln2.bias`, [d]],
    );
    for (const name of ['key', 'query', 'value', 'proj']) linear(`${b}.attn.${name}`, d, d, c.attn_bias);
    linear(`${b}.mlp.0`, 4 * d, d, c.mlp_bias);
    linear(`${b}.mlp.2`, d, 4 * d, c.mlp_bias);
  }
  out.push(['ln_f.weight', [d]], ['ln_f.bias', [d]]);
  out.push(['head_img.weight', [c.vocab_size_img, d]], ['head_txt.weight', [c.vocab_size_txt, d]]);
  return out;
}
