// A random minDALL-E folder (`models random --dalle`) loads through the same code as a converted
// checkpoint, and its CharBPE tokenizer pads, truncates and reports truncation.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dalleParameterShapes,
  minDalle13BConfig,
  parseDalleConfig,
} from '../../../src/worker/dalle/config.js';
import { loadDalleModel } from '../../../src/worker/dalle/model.js';
import { randomDallePreset, writeRandomDallePreset } from '../../../src/worker/dalle/random.js';
import { DalleRunner } from '../../../src/worker/dalle/runner.js';
import { countParameters } from '../../../src/worker/models/config.js';
import { entryArgs } from '../../helpers/entry.js';

const ROOT = join(import.meta.dirname, '../../..');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dalle-model-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('minDALL-E model folders', () => {
  it('the full preset is minDALL-E 1.3B', () => {
    const c = randomDallePreset('full').config;
    expect(c).toMatchObject({
      embed_dim: 1536,
      n_layers: 42,
      n_heads: 24,
      ctx_len_txt: 64,
      ctx_len_img: 256,
    });
    expect(c.vocab_size_txt).toBe(16384);
    expect(c.vocab_size_img).toBe(16384);
    // ~1.3B parameters: 42 blocks of 12 D^2 plus the two vocabularies' embeddings and heads.
    const n = countParameters(dalleParameterShapes(minDalle13BConfig()));
    expect(n).toBeGreaterThan(1.25e9);
    expect(n).toBeLessThan(1.35e9);
  });

  it('refuses configs it cannot build', () => {
    expect(() => parseDalleConfig({ model_type: 'mindalle', embed_dim: 30, n_heads: 4 })).toThrow(/n_heads/);
    expect(() => parseDalleConfig({ model_type: 'mindalle', ctx_len_img: 250 })).toThrow(/square/);
    expect(() => parseDalleConfig({ model_type: 'clip' })).toThrow(/minDALL-E/);
  });

  it('models random --dalle writes a tiny folder that loads and runs', async () => {
    const out = join(dir, 'cli');
    execFileSync(
      process.execPath,
      entryArgs('src/worker/models/cli.ts', 'random', '--preset', 'tiny', '--out', out, '--dalle'),
      { cwd: ROOT, stdio: 'pipe' },
    );
    const model = await loadDalleModel(join(out, 'dalle'));
    expect(model.vqganDir).toBeUndefined();
    const c = model.config;
    const enc = model.tokenizer.encode('a watercolor painting of a cat');
    expect(enc.ids).toHaveLength(c.ctx_len_txt);
    expect(enc.truncated).toBe(false);
    expect(enc.ids.slice(enc.length).every((id) => id === c.pad_token_id)).toBe(true);
    expect(model.tokenizer.decode(enc.ids)).toBe('a watercolor painting of a cat');
    const runner = await DalleRunner.create(c, model.weights, { candidates: 3 });
    try {
      const first = await runner.prefill(enc.ids);
      expect(first).toHaveLength(c.vocab_size_img);
      const next = await runner.step([1, 2, 3]);
      expect(next).toHaveLength(3 * c.vocab_size_img);
      expect(next.every(Number.isFinite)).toBe(true);
      // Different tokens, different next logits.
      expect(next.subarray(0, 10)).not.toEqual(next.subarray(c.vocab_size_img, c.vocab_size_img + 10));
    } finally {
      await runner.release();
    }
  });

  it('loads the transformer blocks as int8 weights when asked (DALLE_PRECISION), fp32 otherwise', async () => {
    const d = join(dir, 'tiny-int8');
    writeRandomDallePreset(d, 'tiny');
    const kinds = (weights: Iterable<{ data: unknown }>) =>
      new Set([...weights].map((w) => (w.data instanceof Int8Array ? 'int8' : 'other')));
    expect(kinds((await loadDalleModel(d)).weights.values())).toEqual(new Set(['other']));
    expect(kinds((await loadDalleModel(d, { precision: 'int8' })).weights.values())).toEqual(
      new Set(['int8', 'other']),
    );
  });

  it('a prompt longer than the text context is truncated, and says so', async () => {
    const d = join(dir, 'tiny');
    writeRandomDallePreset(d, 'tiny');
    const { tokenizer, config } = await loadDalleModel(d);
    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const enc = tokenizer.encode(long);
    expect(enc.truncated).toBe(true);
    expect(enc.length).toBe(config.ctx_len_txt);
    expect(enc.total).toBeGreaterThan(config.ctx_len_txt);
    expect(tokenizer.encode('').ids.every((id) => id === config.pad_token_id)).toBe(true);
  });

  it('a folder whose tokenizer disagrees with its config is refused', async () => {
    const d = join(dir, 'bad');
    writeRandomDallePreset(d, 'tiny');
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, pad_token_id: 3 }));
    await expect(loadDalleModel(d)).rejects.toThrow(/pad_token_id 3/);
  });
});
