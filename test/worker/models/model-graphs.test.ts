// Our CLIP and VQGAN graphs against Hugging Face transformers / a PyTorch taming VQGAN on the same tiny
// random weights (fixtures from tools/make_reference_fixtures.py), forward and gradient.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { afterAll, describe, expect, it } from 'vitest';
import { grad } from '../../../src/worker/graph/autodiff.js';
import { Graph, type Tensor } from '../../../src/worker/graph/graph.js';
import { mul } from '../../../src/worker/graph/ops/elementwise.js';
import { reduceSum } from '../../../src/worker/graph/ops/reduce.js';
import { serialize } from '../../../src/worker/graph/serialize.js';
import { clipText, clipVision } from '../../../src/worker/models/clip.js';
import { parseClipConfig, parseVqganConfig } from '../../../src/worker/models/config.js';
import { vqganDecode, vqganEncode, vqganQuantize } from '../../../src/worker/models/vqgan.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { type HostTensor, ModelSession } from '../../../src/worker/onnx/session.js';
import { relError } from '../../helpers/op-check.js';

const DIR = join(import.meta.dirname, '../../fixtures/reference');
const open: Weights[] = [];
const load = (p: string) => {
  const w = Weights.fromFile(join(DIR, p));
  open.push(w);
  return w;
};
afterAll(() => {
  for (const w of open) w.close();
});

async function run(g: Graph, outputs: Record<string, Tensor>, feeds: Record<string, HostTensor>) {
  const s = await ModelSession.create(serialize(g, { outputs }).bytes, { intraOpThreads: 1 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

const f32 = (t: HostTensor | undefined) => t!.data as Float32Array;

describe('CLIP graphs vs Hugging Face CLIPModel (tiny random weights)', () => {
  const config = parseClipConfig(JSON.parse(readFileSync(join(DIR, 'clip-tiny/config.json'), 'utf8')));
  const weights = load('clip-tiny/model.safetensors');
  const io = load('clip-tiny-io.safetensors');

  it('vision tower: hidden states, pooled output, embeddings and the pixel gradient', async () => {
    const g = new Graph();
    const pixels = g.input('pixels', io.shape('pixel_values'));
    const out = clipVision(g, pixels, config, weights);
    const r = g.constant(io.get('r_image'), io.shape('r_image'));
    const [gp] = grad(reduceSum(mul(out.embeds, r)), [pixels]);
    const res = await run(
      g,
      { hidden: out.lastHidden, pooled: out.pooled, embeds: out.embeds, gp: gp! },
      { pixels: { data: io.get('pixel_values'), dims: io.shape('pixel_values') } },
    );
    expect(relError(f32(res.hidden), io.get('vision_last_hidden_state'))).toBeLessThan(1e-4);
    expect(relError(f32(res.pooled), io.get('vision_pooled'))).toBeLessThan(1e-4);
    expect(relError(f32(res.embeds), io.get('image_embeds'))).toBeLessThan(1e-4);
    expect(relError(f32(res.gp), io.get('grad_pixel_values'))).toBeLessThan(1e-4);
  });

  it('text tower: hidden states, pooled output at the end token, embeddings', async () => {
    const g = new Graph();
    const ids = g.input('ids', io.shape('input_ids'), 'int64');
    const out = clipText(g, ids, config, weights);
    const idsData = BigInt64Array.from(io.get('input_ids_f32'), (v) => BigInt(v));
    const res = await run(
      g,
      { hidden: out.lastHidden, pooled: out.pooled, embeds: out.embeds },
      { ids: { data: idsData, dims: io.shape('input_ids') } },
    );
    expect(relError(f32(res.hidden), io.get('text_last_hidden_state'))).toBeLessThan(1e-4);
    expect(relError(f32(res.pooled), io.get('text_pooled'))).toBeLessThan(1e-4);
    expect(relError(f32(res.embeds), io.get('text_embeds'))).toBeLessThan(1e-4);
  });

  it('text tower: embeddings alone run the last layer for the end-of-text rows only', () => {
    const g = new Graph();
    const out = clipText(g, g.input('ids', [3, 77], 'int64'), config, weights);
    const Model = protobuf
      .parse(
        `syntax = "proto3"; message N { string op_type = 4; } message G { repeated N node = 1; } message M { G graph = 7; }`,
        { keepCase: true },
      )
      .root.lookupType('M');
    const matmuls = (outputs: Record<string, Tensor>) =>
      (
        Model.toObject(Model.decode(serialize(g, { outputs }).bytes)) as {
          graph: { node: { op_type: string }[] };
        }
      ).graph.node.filter((n) => n.op_type === 'MatMul').length;
    // The full-width last layer (q.k, p.v, out_proj, fc1, fc2) is only there for the hidden states.
    expect(matmuls({ embeds: out.embeds, hidden: out.lastHidden }) - matmuls({ embeds: out.embeds })).toBe(5);
  });
});

describe('VQGAN graphs vs a PyTorch taming VQGAN (tiny random weights)', () => {
  const config = parseVqganConfig(JSON.parse(readFileSync(join(DIR, 'vqgan-tiny/config.json'), 'utf8')));
  const weights = load('vqgan-tiny/model.safetensors');
  const io = load('vqgan-tiny-io.safetensors');

  it('encoder + quant_conv, quantizer indices and values, decoding of the quantized latent', async () => {
    const g = new Graph();
    const x = g.input('x', io.shape('x'));
    const ze = vqganEncode(g, x, config, weights);
    const q = vqganQuantize(g, ze, config, weights);
    const dec = vqganDecode(g, q.quantized, config, weights);
    const res = await run(
      g,
      { ze, zq: q.quantized, idx: q.indices, dec },
      { x: { data: io.get('x'), dims: io.shape('x') } },
    );
    expect(relError(f32(res.ze), io.get('z_e'))).toBeLessThan(1e-4);
    expect(relError(f32(res.zq), io.get('z_q'))).toBeLessThan(1e-5);
    expect(Array.from(res.idx!.data as BigInt64Array, Number)).toEqual(Array.from(io.get('indices_f32')));
    expect(relError(f32(res.dec), io.get('decoded_zq'))).toBeLessThan(1e-4);
  });

  it('decoder of a free latent and d(sum(decoded * r))/dz match PyTorch autograd', async () => {
    const g = new Graph();
    const z = g.input('z', io.shape('z'));
    const dec = vqganDecode(g, z, config, weights);
    const [gz] = grad(reduceSum(mul(dec, g.constant(io.get('r'), io.shape('r')))), [z]);
    const res = await run(g, { dec, gz: gz! }, { z: { data: io.get('z'), dims: io.shape('z') } });
    expect(relError(f32(res.dec), io.get('decoded'))).toBeLessThan(1e-4);
    expect(relError(f32(res.gz), io.get('grad_z'))).toBeLessThan(1e-4);
  });
});
