// Smoke test of the PyTorch reference fixtures (tools/make_reference_fixtures.py): the files exist, parse
// with our safetensors reader, hold the tensors the model tests rely on, and agree with themselves on the
// conventions those tests assume (pooling rules, projections, quantizer). The graph-vs-PyTorch
// comparisons live with the model tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Weights } from '../../../src/worker/models/weights.js';

const DIR = join(import.meta.dirname, '../../fixtures/reference');

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

function expectShapes(w: Weights, shapes: Record<string, readonly number[]>): void {
  for (const [name, shape] of Object.entries(shapes)) expect(w.shape(name), name).toEqual(shape);
}

/** Largest |a - b| / (|b| + 1e-6 * max|b|) over all elements: a relative error that tolerates zeros. */
function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + 1e-6 * scale));
  }
  return err;
}

function layerNorm(x: ArrayLike<number>, w: Float32Array, b: Float32Array, eps: number): number[] {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i]!;
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i]! - mean) ** 2;
  const inv = 1 / Math.sqrt(v / n + eps);
  return Array.from({ length: n }, (_, i) => (x[i]! - mean) * inv * w[i]! + b[i]!);
}

/** y[r, o] = sum_i x[r, i] * W[o, i] for W stored [out, in], as torch.nn.Linear without bias. */
function linearNoBias(x: Float32Array, rows: number, W: Float32Array, out: number, inp: number): number[] {
  const y = new Array<number>(rows * out).fill(0);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inp; i++) s += x[r * inp + i]! * W[o * inp + i]!;
      y[r * out + o] = s;
    }
  return y;
}

describe('clip-tiny reference fixtures', () => {
  let model: Weights;
  let io: Weights;
  beforeAll(() => {
    model = Weights.fromFile(join(DIR, 'clip-tiny/model.safetensors'));
    io = Weights.fromFile(join(DIR, 'clip-tiny-io.safetensors'));
  });
  afterAll(() => {
    model.close();
    io.close();
  });

  it('has a CLIPConfig-form config.json matching the weights', () => {
    const cfg = readJson(join(DIR, 'clip-tiny/config.json'));
    expect(cfg.model_type).toBe('clip');
    expect(cfg.projection_dim).toBe(16);
    expect(cfg.text_config).toMatchObject({ hidden_size: 32, vocab_size: 600, eos_token_id: 599 });
    expect(cfg.vision_config).toMatchObject({ hidden_size: 32, image_size: 32, patch_size: 8 });
    expect(model.names()).toHaveLength(78);
    expectShapes(model, {
      'vision_model.embeddings.patch_embedding.weight': [32, 3, 8, 8],
      'vision_model.embeddings.class_embedding': [32],
      'vision_model.embeddings.position_embedding.weight': [17, 32],
      'vision_model.pre_layrnorm.weight': [32],
      'vision_model.encoder.layers.1.self_attn.q_proj.weight': [32, 32],
      'vision_model.encoder.layers.1.mlp.fc1.weight': [64, 32],
      'visual_projection.weight': [16, 32],
      'text_model.embeddings.token_embedding.weight': [600, 32],
      'text_model.embeddings.position_embedding.weight': [77, 32],
      'text_model.final_layer_norm.bias': [32],
      'text_projection.weight': [16, 32],
      logit_scale: [],
    });
    expect(model.get('logit_scale')[0]).toBeCloseTo(2.6592, 4);
  });

  it('has inputs and outputs of the documented shapes and dtypes', () => {
    expectShapes(io, {
      pixel_values: [2, 3, 32, 32],
      input_ids: [3, 77],
      input_ids_f32: [3, 77],
      eos_index: [3],
      vision_embeddings: [2, 17, 32],
      vision_last_hidden_state: [2, 17, 32],
      vision_pooled: [2, 32],
      image_embeds: [2, 16],
      text_embeddings: [3, 77, 32],
      text_last_hidden_state: [3, 77, 32],
      text_pooled: [3, 32],
      text_embeds: [3, 16],
      logits_per_image: [2, 3],
      image_embeds_normalized: [2, 16],
      text_embeds_normalized: [3, 16],
      r_image: [2, 16],
      grad_pixel_values: [2, 3, 32, 32],
    });
    expect(io.info('input_ids').dtype).toBe('I64');
    expect(io.info('eos_index').dtype).toBe('I64');
    expect(io.info('image_embeds').dtype).toBe('F32');
  });

  it('uses start 598, end 599 padded with 599, and pools at the first 599', () => {
    const ids = io.get('input_ids_f32');
    const eos = [4, 8, 13]; // 1 + content lengths 3, 7, 12
    for (let b = 0; b < 3; b++) {
      const row = Array.from(ids.subarray(b * 77, (b + 1) * 77));
      expect(row[0]).toBe(598);
      expect(row.indexOf(599)).toBe(eos[b]);
      expect(row.slice(1, eos[b]).every((t) => t < 598)).toBe(true);
      expect(row.slice(eos[b]).every((t) => t === 599)).toBe(true);
    }
    // text_pooled is the last hidden state (after final_layer_norm) at the end token, copied exactly.
    const last = io.get('text_last_hidden_state');
    const pooled = io.get('text_pooled');
    for (let b = 0; b < 3; b++) {
      const at = (b * 77 + eos[b]!) * 32;
      expect(Array.from(pooled.subarray(b * 32, b * 32 + 32))).toEqual(
        Array.from(last.subarray(at, at + 32)),
      );
    }
  });

  it('embeds tokens and patches as HF does (no layernorm in *_embeddings)', () => {
    const ids = io.get('input_ids_f32');
    const tok = model.get('text_model.embeddings.token_embedding.weight');
    const pos = model.get('text_model.embeddings.position_embedding.weight');
    const te = io.get('text_embeddings');
    const expected = Array.from({ length: 3 * 77 * 32 }, (_, i) => {
      const t = Math.floor(i / 32) % 77;
      return tok[ids[Math.floor(i / 32)]! * 32 + (i % 32)]! + pos[t * 32 + (i % 32)]!;
    });
    expect(maxRelErr(te, expected)).toBeLessThan(1e-5);
    const cls = model.get('vision_model.embeddings.class_embedding');
    const vpos = model.get('vision_model.embeddings.position_embedding.weight');
    const ve = io.get('vision_embeddings');
    for (let b = 0; b < 2; b++) {
      const row = ve.subarray(b * 17 * 32, b * 17 * 32 + 32);
      expect(
        maxRelErr(
          row,
          Array.from(cls, (c, i) => c + vpos[i]!),
        ),
      ).toBeLessThan(1e-5);
    }
  });

  it('pools vision with post_layernorm on the class token and projects without normalising', () => {
    const last = io.get('vision_last_hidden_state');
    const w = model.get('vision_model.post_layernorm.weight');
    const b = model.get('vision_model.post_layernorm.bias');
    const expected = [0, 1].flatMap((n) =>
      layerNorm(last.subarray(n * 17 * 32, n * 17 * 32 + 32), w, b, 1e-5),
    );
    const pooled = io.get('vision_pooled');
    expect(maxRelErr(pooled, expected)).toBeLessThan(1e-4);
    const img = linearNoBias(pooled, 2, model.get('visual_projection.weight'), 16, 32);
    expect(maxRelErr(io.get('image_embeds'), img)).toBeLessThan(1e-5);
    const txt = linearNoBias(io.get('text_pooled'), 3, model.get('text_projection.weight'), 16, 32);
    expect(maxRelErr(io.get('text_embeds'), txt)).toBeLessThan(1e-5);
  });

  it('computes logits_per_image as exp(logit_scale) * cosine, images by rows', () => {
    const img = io.get('image_embeds');
    const txt = io.get('text_embeds');
    const norm = (v: Float32Array, r: number) => Math.hypot(...Array.from(v.subarray(r * 16, r * 16 + 16)));
    const scale = Math.exp(model.get('logit_scale')[0]!);
    const expected: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let t = 0; t < 3; t++) {
        let dot = 0;
        for (let k = 0; k < 16; k++) dot += img[i * 16 + k]! * txt[t * 16 + k]!;
        expected.push((scale * dot) / (norm(img, i) * norm(txt, t)));
      }
    const logits = io.get('logits_per_image');
    expect(maxRelErr(logits, expected)).toBeLessThan(1e-5);
    // Not degenerate: the prompts score differently.
    expect(Math.max(...logits) - Math.min(...logits)).toBeGreaterThan(0.5);
    const grad = io.get('grad_pixel_values');
    expect(Math.max(...grad.map(Math.abs))).toBeGreaterThan(0.1);
  });
});

describe('vqgan-tiny reference fixtures', () => {
  let model: Weights;
  let io: Weights;
  beforeAll(() => {
    model = Weights.fromFile(join(DIR, 'vqgan-tiny/model.safetensors'));
    io = Weights.fromFile(join(DIR, 'vqgan-tiny-io.safetensors'));
  });
  afterAll(() => {
    model.close();
    io.close();
  });

  it('has a taming ddconfig and taming state_dict names', () => {
    const cfg = readJson(join(DIR, 'vqgan-tiny/config.json'));
    expect(cfg).toMatchObject({ model_type: 'vqgan', embed_dim: 16, n_embed: 1024 });
    expect(cfg.ddconfig).toEqual({
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
    });
    expect(model.names()).toHaveLength(239);
    expectShapes(model, {
      'quantize.embedding.weight': [1024, 16],
      'quant_conv.weight': [16, 16, 1, 1],
      'post_quant_conv.weight': [16, 16, 1, 1],
      'encoder.conv_in.weight': [32, 3, 3, 3],
      'encoder.down.0.downsample.conv.weight': [32, 32, 3, 3],
      'encoder.down.3.downsample.conv.weight': [32, 32, 3, 3],
      'encoder.down.4.block.0.nin_shortcut.weight': [64, 32, 1, 1],
      // Attention only at the lowest level (16 of 256), as in f16.
      'encoder.down.4.attn.0.q.weight': [64, 64, 1, 1],
      'encoder.mid.attn_1.proj_out.weight': [64, 64, 1, 1],
      'encoder.conv_out.weight': [16, 64, 3, 3],
      'decoder.conv_in.weight': [64, 16, 3, 3],
      'decoder.mid.block_2.norm2.weight': [64],
      // up[4] is the low-resolution level that runs first; up[0] ends at full resolution.
      'decoder.up.4.attn.1.k.weight': [64, 64, 1, 1],
      'decoder.up.4.upsample.conv.weight': [64, 64, 3, 3],
      'decoder.up.3.block.0.nin_shortcut.weight': [32, 64, 1, 1],
      'decoder.up.1.upsample.conv.weight': [32, 32, 3, 3],
      'decoder.norm_out.weight': [32],
      'decoder.conv_out.weight': [3, 32, 3, 3],
    });
    expect(model.has('encoder.down.4.downsample.conv.weight')).toBe(false);
    expect(model.has('encoder.down.3.attn.0.q.weight')).toBe(false);
    expect(model.has('decoder.up.0.upsample.conv.weight')).toBe(false);
    expect(model.has('decoder.up.3.attn.0.q.weight')).toBe(false);
  });

  it('has inputs and outputs of the documented shapes', () => {
    expectShapes(io, {
      x: [1, 3, 64, 96],
      h: [1, 16, 4, 6],
      z_e: [1, 16, 4, 6],
      z_q: [1, 16, 4, 6],
      indices: [24],
      indices_f32: [24],
      decoded_zq: [1, 3, 64, 96],
      z: [1, 16, 4, 6],
      post_quant_z: [1, 16, 4, 6],
      decoder_mid: [1, 64, 4, 6],
      decoded: [1, 3, 64, 96],
      r: [1, 3, 64, 96],
      grad_z: [1, 16, 4, 6],
    });
    expect(io.info('indices').dtype).toBe('I64');
    const x = io.get('x');
    expect(Math.max(...x.map(Math.abs))).toBeLessThanOrEqual(1);
  });

  it('quantizes each position (row-major h, w) to its nearest codebook row', () => {
    const ze = io.get('z_e');
    const zq = io.get('z_q');
    const idx = io.get('indices_f32');
    const e = model.get('quantize.embedding.weight');
    const positions = 4 * 6;
    for (let p = 0; p < positions; p++) {
      let best = -1;
      let bestD = Infinity;
      for (let k = 0; k < 1024; k++) {
        let d = 0;
        for (let c = 0; c < 16; c++) d += (ze[c * positions + p]! - e[k * 16 + c]!) ** 2;
        if (d < bestD) [best, bestD] = [k, d];
      }
      expect(idx[p], `position ${p}`).toBe(best);
      for (let c = 0; c < 16; c++) expect(zq[c * positions + p]).toBe(e[best * 16 + c]);
    }
    expect(new Set(idx).size).toBeGreaterThan(10);
  });

  it('applies post_quant_conv as a 1x1 conv with bias, and decodes to a varied image', () => {
    const z = io.get('z');
    const w = model.get('post_quant_conv.weight');
    const bias = model.get('post_quant_conv.bias');
    const positions = 4 * 6;
    const expected = Array.from({ length: 16 * positions }, (_, i) => {
      const [o, p] = [Math.floor(i / positions), i % positions];
      let s = bias[o]!;
      for (let c = 0; c < 16; c++) s += w[o * 16 + c]! * z[c * positions + p]!;
      return s;
    });
    expect(maxRelErr(io.get('post_quant_z'), expected)).toBeLessThan(1e-5);
    for (const name of ['decoded', 'decoded_zq', 'grad_z']) {
      const v = io.get(name);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      expect(std, name).toBeGreaterThan(0.3);
      expect(v.every(Number.isFinite), name).toBe(true);
    }
  });
});
