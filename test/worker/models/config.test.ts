import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { asCodedError, type ErrorCode } from '../../../src/shared/errors.js';
import {
  clipParameterShapes,
  clipVitB32Config,
  countParameters,
  loadModelConfig,
  ModelConfigError,
  parseClipConfig,
  parseVqganConfig,
  tinyClipConfig,
  tinyVqganConfig,
  vqganF16_16384Config,
  vqganLatentSize,
  vqganParameterShapes,
} from '../../../src/worker/models/config.js';

const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const shapeMap = (shapes: readonly (readonly [string, readonly number[]])[]) => new Map(shapes);
const count = (shapes: readonly (readonly [string, readonly number[]])[], prefix: string) =>
  countParameters(shapes.filter(([n]) => n.startsWith(prefix)));

describe('CLIP ViT-B/32 parameters', () => {
  const shapes = clipParameterShapes(clipVitB32Config());
  const byName = shapeMap(shapes);

  it('has the 151,277,313 parameters of openai/clip-vit-base-patch32', () => {
    // Text: 49408*512 + 77*512 + 12 * 3,152,384 (per layer: 4 * (512^2 + 512) attention, 2 * 1024
    // layer norms, 512*2048 + 2048 + 2048*512 + 512 MLP) + 1024 = 63,165,952.
    expect(count(shapes, 'text_model.')).toBe(63_165_952);
    // Vision: 768 + 768*3*32*32 + 50*768 + 1536 + 12 * 7,087,872 + 1536 = 87,456,000.
    expect(count(shapes, 'vision_model.')).toBe(87_456_000);
    // + 768*512 + 512*512 projections + logit_scale.
    expect(countParameters(shapes)).toBe(151_277_313);
    expect(shapes.length).toBe(398); // 2 + 16*12 + 2 (text) + 3 + 2 + 16*12 + 2 (vision) + 3
    expect(new Set(shapes.map(([n]) => n)).size).toBe(shapes.length);
  });

  it('names and shapes as Hugging Face CLIPModel', () => {
    expect(byName.get('logit_scale')).toEqual([]);
    expect(byName.get('text_model.embeddings.token_embedding.weight')).toEqual([49408, 512]);
    expect(byName.get('text_model.embeddings.position_embedding.weight')).toEqual([77, 512]);
    expect(byName.get('text_model.encoder.layers.11.self_attn.out_proj.bias')).toEqual([512]);
    expect(byName.get('text_model.encoder.layers.0.mlp.fc1.weight')).toEqual([2048, 512]);
    expect(byName.get('text_model.final_layer_norm.weight')).toEqual([512]);
    expect(byName.get('vision_model.embeddings.class_embedding')).toEqual([768]);
    expect(byName.get('vision_model.embeddings.patch_embedding.weight')).toEqual([768, 3, 32, 32]);
    expect(byName.has('vision_model.embeddings.patch_embedding.bias')).toBe(false);
    expect(byName.get('vision_model.embeddings.position_embedding.weight')).toEqual([50, 768]);
    expect(byName.get('vision_model.pre_layrnorm.bias')).toEqual([768]);
    expect(byName.get('vision_model.encoder.layers.5.mlp.fc2.weight')).toEqual([768, 3072]);
    expect(byName.get('vision_model.post_layernorm.weight')).toEqual([768]);
    expect(byName.get('visual_projection.weight')).toEqual([512, 768]);
    expect(byName.get('text_projection.weight')).toEqual([512, 512]);
    expect(byName.has('vision_model.encoder.layers.12.mlp.fc1.weight')).toBe(false);
  });
});

describe('VQGAN f16_16384 parameters', () => {
  const shapes = vqganParameterShapes(vqganF16_16384Config());
  const byName = shapeMap(shapes);

  it('has 76,073,859 parameters (encoder 29.3 M, decoder 42.4 M, codebook 4.2 M)', () => {
    // Cross-checked against a separate count transcribed from taming's Encoder/Decoder/VQModel
    // constructors (their loops, run once in Python). Decoder by hand: conv_in 256->512 (1,180,160),
    // mid 2 resnets of 512 (4,721,664 each) + attention (1,051,648); level 4 at 16 px: 3 resnets of 512
    // and 3 attentions + upsample conv; level 3: 512->256 with a 1x1 shortcut; ...; norm_out, conv_out 128->3.
    expect(count(shapes, 'encoder.')).toBe(29_298_176);
    expect(count(shapes, 'decoder.')).toBe(42_449_795);
    expect(count(shapes, 'quantize.')).toBe(16384 * 256);
    expect(count(shapes, 'quant_conv.') + count(shapes, 'post_quant_conv.')).toBe(2 * (256 * 256 + 256));
    expect(countParameters(shapes)).toBe(76_073_859);
    expect(new Set(shapes.map(([n]) => n)).size).toBe(shapes.length);
  });

  it('a resnet block of 512 channels and the mid block add up by hand', () => {
    const resnet512 = 2 * 512 + (512 * 512 * 9 + 512) + 2 * 512 + (512 * 512 * 9 + 512);
    expect(count(shapes, 'decoder.mid.block_1.')).toBe(resnet512);
    expect(count(shapes, 'decoder.mid.attn_1.')).toBe(2 * 512 + 4 * (512 * 512 + 512));
  });

  it('follows taming names: attention at 16 px only, shortcuts where channels change, no resampling at the ends', () => {
    // Encoder: 256 -> 128 -> 64 -> 32 -> 16 px; level 4 (16 px) has 2 attention blocks.
    expect(byName.get('encoder.conv_in.weight')).toEqual([128, 3, 3, 3]);
    expect(byName.get('encoder.down.4.attn.1.proj_out.weight')).toEqual([512, 512, 1, 1]);
    expect(byName.has('encoder.down.3.attn.0.q.weight')).toBe(false);
    expect(byName.has('encoder.down.4.downsample.conv.weight')).toBe(false);
    expect(byName.get('encoder.down.3.downsample.conv.weight')).toEqual([256, 256, 3, 3]);
    expect(byName.get('encoder.down.2.block.0.nin_shortcut.weight')).toEqual([256, 128, 1, 1]);
    expect(byName.has('encoder.down.2.block.1.nin_shortcut.weight')).toBe(false);
    expect(byName.get('encoder.conv_out.weight')).toEqual([256, 512, 3, 3]);
    // Decoder: 16 px at level 4 with num_res_blocks + 1 = 3 blocks and attentions.
    expect(byName.get('decoder.conv_in.weight')).toEqual([512, 256, 3, 3]);
    expect(byName.get('decoder.up.4.attn.2.q.weight')).toEqual([512, 512, 1, 1]);
    expect(byName.has('decoder.up.3.attn.0.q.weight')).toBe(false);
    expect(byName.get('decoder.up.3.block.0.nin_shortcut.weight')).toEqual([256, 512, 1, 1]);
    expect(byName.get('decoder.up.3.block.2.conv2.weight')).toEqual([256, 256, 3, 3]);
    expect(byName.get('decoder.up.1.block.0.conv1.weight')).toEqual([128, 256, 3, 3]);
    expect(byName.has('decoder.up.0.upsample.conv.weight')).toBe(false);
    expect(byName.get('decoder.up.1.upsample.conv.weight')).toEqual([128, 128, 3, 3]);
    expect(byName.get('decoder.norm_out.weight')).toEqual([128]);
    expect(byName.get('decoder.conv_out.weight')).toEqual([3, 128, 3, 3]);
    expect(byName.get('quantize.embedding.weight')).toEqual([16384, 256]);
    expect(byName.get('quant_conv.weight')).toEqual([256, 256, 1, 1]);
    expect(byName.get('post_quant_conv.weight')).toEqual([256, 256, 1, 1]);
    expect(vqganLatentSize(vqganF16_16384Config())).toBe(16);
  });

  it('lists decoder levels in ModuleList order (up.0 first)', () => {
    const names = shapes.map(([n]) => n);
    const first = (p: string) => names.findIndex((n) => n.startsWith(p));
    expect(first('decoder.up.0.')).toBeLessThan(first('decoder.up.1.'));
    expect(first('decoder.up.3.')).toBeLessThan(first('decoder.up.4.'));
    expect(first('decoder.up.4.')).toBeLessThan(first('decoder.norm_out'));
  });
});

describe('tiny presets', () => {
  it('tiny CLIP: 32 wide, 2 layers, 4 heads, 32 px in 8 px patches, 16-d projection', () => {
    const c = tinyClipConfig({ vocabSize: 814, bosTokenId: 812, eosTokenId: 813 });
    expect(c.vision_config).toMatchObject({ hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2 });
    expect(c.vision_config).toMatchObject({ num_attention_heads: 4, image_size: 32, patch_size: 8 });
    expect(c.text_config).toMatchObject({ hidden_size: 32, vocab_size: 814, max_position_embeddings: 77 });
    expect(c.text_config).toMatchObject({ bos_token_id: 812, eos_token_id: 813, pad_token_id: 813 });
    expect(c.projection_dim).toBe(16);
    const byName = shapeMap(clipParameterShapes(c));
    expect(byName.get('vision_model.embeddings.position_embedding.weight')).toEqual([17, 32]);
    expect(byName.get('text_model.embeddings.token_embedding.weight')).toEqual([814, 32]);
    expect(byName.get('visual_projection.weight')).toEqual([16, 32]);
  });

  it('tiny VQGAN: f16 at a quarter of the width, 256 px to 16x16 latents of 16 channels, 1024 codes', () => {
    const c = tinyVqganConfig();
    // Downsampling 16 as vqgan_imagenet_f16_16384: five levels, the same latent grid for a size.
    expect(vqganLatentSize(c)).toBe(vqganLatentSize(vqganF16_16384Config()));
    expect(c.ddconfig.ch_mult).toHaveLength(vqganF16_16384Config().ddconfig.ch_mult.length);
    const shapes = vqganParameterShapes(c);
    const byName = shapeMap(shapes);
    expect(byName.get('quantize.embedding.weight')).toEqual([1024, 16]);
    // Attention at the lowest level only (16 of 256), as in f16.
    const attention = new Set(shapes.filter(([n]) => /\.attn/.test(n)).map(([n]) => n.split('.attn')[0]));
    expect([...attention]).toEqual(['encoder.down.4', 'encoder.mid', 'decoder.mid', 'decoder.up.4']);
    expect(byName.get('decoder.up.4.attn.1.v.weight')).toEqual([64, 64, 1, 1]);
    expect(byName.get('decoder.up.3.block.0.nin_shortcut.weight')).toEqual([32, 64, 1, 1]);
    expect(byName.get('decoder.up.0.block.1.conv2.weight')).toEqual([32, 32, 3, 3]);
    expect(countParameters(shapes)).toBe(960_147);
  });
});

describe('CLIP config parsing', () => {
  it('fills Hugging Face defaults, which are ViT-B/32', () => {
    expect(parseClipConfig({ model_type: 'clip' })).toEqual(clipVitB32Config());
    const c = parseClipConfig({ model_type: 'clip', vision_config: { patch_size: 16 } });
    expect(c.vision_config.patch_size).toBe(16);
    expect(c.vision_config.hidden_size).toBe(768);
    expect(c.text_config.layer_norm_eps).toBe(1e-5);
    expect(c.text_config.hidden_act).toBe('quick_gelu');
  });

  it('reads a config.json in the form openai/clip-vit-base-patch32 ships, legacy *_config_dict included', () => {
    const json = {
      _name_or_path: 'openai/clip-vit-base-patch32',
      architectures: ['CLIPModel'],
      initializer_factor: 1.0,
      logit_scale_init_value: 2.6592,
      model_type: 'clip',
      projection_dim: 512,
      text_config: { bos_token_id: 0, eos_token_id: 2, model_type: 'clip_text_model', vocab_size: 49408 },
      text_config_dict: { hidden_act: 'quick_gelu' },
      torch_dtype: 'float32',
      transformers_version: null,
      vision_config: { model_type: 'clip_vision_model', patch_size: 32 },
      vision_config_dict: { hidden_size: 768, patch_size: 32, image_size: 224 },
    };
    const c = parseClipConfig(json);
    expect(c.text_config.eos_token_id).toBe(2);
    expect(c.text_config.bos_token_id).toBe(0);
    expect(c.vision_config.image_size).toBe(224);
    const legacy = parseClipConfig({ ...json, vision_config_dict: { patch_size: 16 } });
    expect(legacy.vision_config.patch_size).toBe(16); // *_config_dict wins, as in transformers
  });

  it('rejects configs the graphs cannot build, saying where', () => {
    const bad: [unknown, string][] = [
      [
        { model_type: 'clip', vision_config: { hidden_size: 100, num_attention_heads: 12 } },
        'num_attention_heads',
      ],
      [{ model_type: 'clip', vision_config: { image_size: 100, patch_size: 32 } }, 'patch_size'],
      [{ model_type: 'clip', text_config: { hidden_act: 'relu' } }, 'text_config.hidden_act'],
      [{ model_type: 'clip', text_config: { vocab_size: 100 } }, 'eos_token_id'],
      [{ model_type: 'clip', projection_dim: -1 }, 'projection_dim'],
    ];
    for (const [json, where] of bad) {
      let err: unknown;
      try {
        parseClipConfig(json, 'x/config.json');
      } catch (e) {
        err = e;
      }
      expect(err, where).toBeInstanceOf(ModelConfigError);
      expect((err as ModelConfigError).reason).toBe('invalid_config');
      expect((err as Error).message).toContain('x/config.json');
      expect((err as Error).message).toContain(where);
    }
  });
});

describe('VQGAN config parsing', () => {
  const base = tinyVqganConfig();
  it('rejects GroupNorm-incompatible widths and double_z', () => {
    expect(() => parseVqganConfig({ ...base, ddconfig: { ...base.ddconfig, ch: 48 } })).toThrow(
      /multiple of 32/,
    );
    expect(() => parseVqganConfig({ ...base, ddconfig: { ...base.ddconfig, double_z: true } })).toThrow(
      /double_z/,
    );
    expect(() => parseVqganConfig({ ...base, ddconfig: { ...base.ddconfig, resolution: 40 } })).toThrow(
      /resolution 40 must be a multiple of 16/,
    );
    expect(() => parseVqganConfig({ ...base, n_embed: 0 })).toThrow(/n_embed/);
  });

  it('defaults dropout, attn_resolutions and double_z as taming does', () => {
    const { dropout: _d, attn_resolutions: _a, double_z: _z, ...dd } = base.ddconfig;
    const c = parseVqganConfig({ ...base, ddconfig: dd });
    expect(c.ddconfig).toMatchObject({ dropout: 0, attn_resolutions: [], double_z: false });
  });
});

describe('loadModelConfig', () => {
  const folder = (name: string, content: string | undefined) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    if (content !== undefined) writeFileSync(join(d, 'config.json'), content);
    return d;
  };

  it('tells CLIP from VQGAN', async () => {
    const clip = await loadModelConfig(folder('clip', JSON.stringify({ model_type: 'clip' })));
    expect(clip.kind).toBe('clip');
    const vq = await loadModelConfig(folder('vqgan', JSON.stringify(vqganF16_16384Config())));
    expect(vq).toEqual({ kind: 'vqgan', config: vqganF16_16384Config() });
    // Without model_type: a HF architectures list, or taming's ddconfig.
    const { model_type: _m, ...noType } = tinyVqganConfig();
    expect((await loadModelConfig(folder('vq2', JSON.stringify(noType)))).kind).toBe('vqgan');
    expect((await loadModelConfig(folder('clip2', '{"architectures": ["CLIPModel"]}'))).kind).toBe('clip');
  });

  it('fails clearly on a missing, unparsable, unknown or invalid config', async () => {
    // The reason, and the code a user's sentence is chosen by: absent is not installed, the rest misconfigured.
    const cases: [string, string | undefined, string, ErrorCode, RegExp][] = [
      ['none', undefined, 'missing_config', 'model_missing', /none\/config\.json/],
      [
        'broken',
        '{"model_type": "clip",',
        'bad_json',
        'config_invalid',
        /broken\/config\.json is not valid JSON/,
      ],
      ['bert', '{"model_type": "bert"}', 'unknown_model', 'config_invalid', /"bert" is neither/],
      [
        'badvq',
        '{"model_type": "vqgan", "ddconfig": {}}',
        'invalid_config',
        'config_invalid',
        /badvq.*ddconfig\.z_channels/s,
      ],
    ];
    for (const [name, content, reason, code, message] of cases) {
      const err = await loadModelConfig(folder(name, content)).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(ModelConfigError);
      expect((err as ModelConfigError).reason, name).toBe(reason);
      expect(asCodedError(err), name).toBe(err);
      expect((err as ModelConfigError).code, name).toBe(code);
      expect((err as Error).message, name).toMatch(message);
    }
  });
});
