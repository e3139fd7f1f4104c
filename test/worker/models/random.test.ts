import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clipConfigSchema,
  clipParameterShapes,
  loadModelConfig,
  tinyClipConfig,
  tinyVqganConfig,
  vqganParameterShapes,
} from '../../../src/worker/models/config.js';
import {
  drawTensor,
  fullSizeTokenizerJson,
  type RandomModelsResult,
  SeededRandom,
  writeRandomModels,
} from '../../../src/worker/models/random.js';
import { buildTinyClipTokenizerJson, TINY_TOKENIZER } from '../../../src/worker/models/tokenizer-builder.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { entryArgs } from '../../helpers/entry.js';

const dir = mkdtempSync(join(tmpdir(), 'random-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stats = (a: Float32Array) => {
  let s = 0;
  let s2 = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of a) {
    s += v;
    s2 += v * v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(s2 / a.length - mean * mean), min, max };
};

describe('SeededRandom', () => {
  it('is pinned: these values must not change (random test models and fixtures depend on them)', () => {
    const r = new SeededRandom(0);
    expect([r.uint32(), r.uint32(), r.uint32()]).toEqual([4268869996, 1449709182, 1631580876]);
    expect(new SeededRandom(0, 'logit').uint32()).toBe(836118725);
    expect(Array.from(drawTensor(7, 'a.weight', [2], { kind: 'normal', mean: 0, std: 1 }))).toEqual([
      Math.fround(-0.43826043605804443),
      Math.fround(0.6952246427536011),
    ]);
  });

  it('gives uniform [0, 1) and standard normal draws', () => {
    const r = new SeededRandom(42);
    const u = Float32Array.from({ length: 100_000 }, () => r.next());
    const su = stats(u);
    expect(su.min).toBeGreaterThanOrEqual(0);
    expect(su.max).toBeLessThan(1);
    expect(su.mean).toBeCloseTo(0.5, 2);
    expect(su.std).toBeCloseTo(Math.sqrt(1 / 12), 2);
    const n = stats(Float32Array.from({ length: 100_000 }, () => r.normal()));
    expect(n.mean).toBeCloseTo(0, 1);
    expect(n.std).toBeCloseTo(1, 1);
  });

  it('separates seeds and streams', () => {
    const first = (seed: number, stream: string) => new SeededRandom(seed, stream).uint32();
    expect(first(1, 'a')).not.toBe(first(2, 'a'));
    expect(first(1, 'a')).not.toBe(first(1, 'b'));
    expect(first(1, 'a')).toBe(first(1, 'a'));
  });
});

describe('tiny random models', () => {
  let a: RandomModelsResult;
  let b: RandomModelsResult;
  let c: RandomModelsResult;
  beforeAll(() => {
    a = writeRandomModels({ preset: 'tiny', outDir: join(dir, 'a'), seed: 1 });
    b = writeRandomModels({ preset: 'tiny', outDir: join(dir, 'b'), seed: 1 });
    c = writeRandomModels({ preset: 'tiny', outDir: join(dir, 'c'), seed: 2 });
  });
  const read = (d: string, f: string) => readFileSync(join(d, f));

  it('are byte-identical for a seed and differ across seeds', () => {
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) {
      expect(read(a.clipDir, f).equals(read(b.clipDir, f)), f).toBe(true);
    }
    expect(read(a.vqganDir, 'model.safetensors').equals(read(b.vqganDir, 'model.safetensors'))).toBe(true);
    expect(read(a.clipDir, 'model.safetensors').equals(read(c.clipDir, 'model.safetensors'))).toBe(false);
    expect(read(a.clipDir, 'config.json').equals(read(c.clipDir, 'config.json'))).toBe(true);
    // Every random tensor differs across seeds (only logit_scale is a constant).
    const wa = Weights.fromFile(join(a.vqganDir, 'model.safetensors'));
    const wc = Weights.fromFile(join(c.vqganDir, 'model.safetensors'));
    for (const name of wa.names()) expect(wa.get(name), name).not.toEqual(wc.get(name));
    wa.close();
    wc.close();
  });

  it('write a CLIP folder whose config validates and matches the tiny preset and the tokenizer', async () => {
    const json = JSON.parse(read(a.clipDir, 'config.json').toString());
    expect(json.architectures).toEqual(['CLIPModel']);
    expect(json.model_type).toBe('clip');
    expect(clipConfigSchema.safeParse(json).success).toBe(true);
    const loaded = await loadModelConfig(a.clipDir);
    const expected = tinyClipConfig({
      vocabSize: TINY_TOKENIZER.vocabSize,
      bosTokenId: TINY_TOKENIZER.startId,
      eosTokenId: TINY_TOKENIZER.endId,
    });
    expect(loaded).toEqual({ kind: 'clip', config: expected });
    expect(JSON.parse(read(a.clipDir, 'tokenizer.json').toString())).toEqual(buildTinyClipTokenizerJson());
    expect(JSON.parse(read(a.clipDir, 'preprocessor_config.json').toString()).crop_size).toEqual({
      height: 32,
      width: 32,
    });
    expect(a.clipParameters).toBe(70_625);
  });

  it('hold exactly the tensors the configs list, in order, with the right shapes', async () => {
    const clip = Weights.fromFile(join(a.clipDir, 'model.safetensors'));
    const shapes = clipParameterShapes((await loadModelConfig(a.clipDir)).config as never);
    expect(clip.names()).toEqual(shapes.map(([n]) => n));
    for (const [name, shape] of shapes) expect(clip.shape(name)).toEqual(shape);
    expect(clip.metadata).toEqual({ format: 'pt', random_seed: '1' });
    clip.close();
    const loaded = await loadModelConfig(a.vqganDir);
    expect(loaded).toEqual({ kind: 'vqgan', config: tinyVqganConfig() });
    const vq = Weights.fromFile(join(a.vqganDir, 'model.safetensors'));
    expect(vq.names()).toEqual(vqganParameterShapes(tinyVqganConfig()).map(([n]) => n));
    vq.close();
  });

  it('draw each kind of parameter at its intended scale', () => {
    const clip = Weights.fromFile(join(a.clipDir, 'model.safetensors'));
    expect(clip.get('logit_scale')[0]).toBe(Math.fround(2.6592));
    const tok = stats(clip.get('text_model.embeddings.token_embedding.weight'));
    expect(tok.std).toBeGreaterThan(0.018);
    expect(tok.std).toBeLessThan(0.022);
    const fc1 = stats(clip.get('vision_model.encoder.layers.1.mlp.fc1.weight')); // [64, 32]: N(0, 1/32)
    expect(fc1.std).toBeGreaterThan(0.8 / Math.sqrt(32));
    expect(fc1.std).toBeLessThan(1.2 / Math.sqrt(32));
    const fc2b = stats(clip.get('vision_model.encoder.layers.1.mlp.fc2.bias')); // U(+-1/sqrt(64))
    expect(Math.max(-fc2b.min, fc2b.max)).toBeLessThanOrEqual(1 / 8);
    expect(fc2b.std).toBeGreaterThan(0.02);
    const ln = stats(clip.get('text_model.final_layer_norm.weight'));
    expect(ln.mean).toBeGreaterThan(0.9);
    expect(ln.mean).toBeLessThan(1.1);
    expect(ln.std).toBeGreaterThan(0.03); // perturbed, so graphs that ignore the affine do not pass
    clip.close();
    const vq = Weights.fromFile(join(a.vqganDir, 'model.safetensors'));
    const conv = stats(vq.get('decoder.mid.block_1.conv1.weight')); // fan_in 64 * 9
    expect(conv.std).toBeGreaterThan(0.9 / Math.sqrt(576));
    expect(conv.std).toBeLessThan(1.1 / Math.sqrt(576));
    const code = stats(vq.get('quantize.embedding.weight'));
    expect(code.min).toBeGreaterThanOrEqual(-1);
    expect(code.max).toBeLessThanOrEqual(1);
    expect(code.std).toBeGreaterThan(0.45); // U(-1, 1): 0.577
    vq.close();
  });
});

describe('full-size tokenizer', () => {
  it('puts the special tokens at CLIP ids 49406 / 49407 in a 49408 vocabulary', () => {
    const json = fullSizeTokenizerJson() as {
      model: { vocab: Record<string, number> };
      post_processor: unknown;
    };
    const ids = Object.values(json.model.vocab).sort((x, y) => x - y);
    expect(ids.length).toBe(49408);
    expect(ids.every((id, i) => id === i)).toBe(true);
    expect(json.model.vocab['<|startoftext|>']).toBe(49406);
    expect(json.model.vocab['<|endoftext|>']).toBe(49407);
    expect(json.post_processor).toMatchObject({
      cls: ['<|startoftext|>', 49406],
      sep: ['<|endoftext|>', 49407],
    });
    // The learned tokens keep the tiny tokenizer's ids, so both encode ordinary text alike.
    const tiny = buildTinyClipTokenizerJson() as { model: { vocab: Record<string, number> } };
    expect(json.model.vocab['photo</w>']).toBe(tiny.model.vocab['photo</w>']);
  });
});

describe('models command', () => {
  const run = promisify(execFile);
  // node --import tsx skips npx's start-up; the command is the one `npm run models` runs.
  const cli = entryArgs('src/worker/models/cli.ts');

  it('writes tiny models and checks them', async () => {
    const out = join(dir, 'cli');
    const written = await run(process.execPath, [
      ...cli,
      'random',
      '--preset',
      'tiny',
      '--out',
      out,
      '--seed',
      '5',
    ]);
    expect(written.stdout).toContain('70,625 parameters');
    expect(existsSync(join(out, 'clip', 'tokenizer.json'))).toBe(true);
    const checked = await run(process.execPath, [...cli, 'check', join(out, 'vqgan')]);
    expect(checked.stdout).toContain('960,147 parameters expected');
    expect(checked.stdout).toContain('ok');
    const bad = await run(process.execPath, [...cli, 'random', '--preset', 'huge', '--out', out]).catch(
      (e) => e,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--preset must be tiny or full');
  });
});
