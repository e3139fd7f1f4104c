// A random-weight minDALL-E stage-2 folder in the layout `models pull` writes from the real
// checkpoint (config.json, model.safetensors with Transformer1d's state_dict names, tokenizer.json),
// so tests, the offline demo and benchmarks load it through the same code as real weights.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { countParameters } from '../models/config.js';
import { drawTensor, type Init, type RandomWriteOptions } from '../models/random.js';
import { writeSafetensors } from '../models/weights.js';
import { type DalleConfig, dalleParameterShapes, minDalle13BConfig, tinyDalleConfig } from './config.js';
import {
  buildTinyDalleTokenizerJson,
  charBpeTokenizerJson,
  PAD_TOKEN,
  TINY_DALLE_TOKENIZER,
} from './tokenizer.js';

/**
 * How each parameter is drawn. Not minDALL-E's training init (N(0, 0.02) everywhere, norms at 1/0),
 * which makes a random model's logits almost flat and would let a graph that swapped weight and bias
 * match its reference: embeddings N(0, 1) (the residual stream at unit scale), Linear weights
 * N(0, 1/fan_in) and biases U(+-1/sqrt(fan_in)), norm affines 1 +- 0.1 and +-0.1.
 */
export function dalleInitFor(name: string, shape: readonly number[], fanInOfBias: number): Init {
  if (/\.(ln1|ln2)\.(weight|bias)$|^ln_f\.(weight|bias)$/.test(name))
    return name.endsWith('.weight')
      ? { kind: 'normal', mean: 1, std: 0.1 }
      : { kind: 'normal', mean: 0, std: 0.1 };
  if (/^(tok|pos)_emb_(img|txt)\.weight$/.test(name)) return { kind: 'normal', mean: 0, std: 1 };
  if (name.endsWith('.bias')) {
    const b = 1 / Math.sqrt(fanInOfBias);
    return { kind: 'uniform', low: -b, high: b };
  }
  return { kind: 'normal', mean: 0, std: 1 / Math.sqrt(shape[1] ?? 1) };
}

/** The config.json of a minDALL-E folder. */
export function dalleConfigJson(config: DalleConfig): Record<string, unknown> {
  return { ...config, architectures: ['Transformer1d'] };
}

/** Writes `dir/config.json`, `dir/model.safetensors` and, when given, `dir/tokenizer.json`. */
export function writeRandomDalle(
  dir: string,
  config: DalleConfig,
  options: RandomWriteOptions & { readonly tokenizerJson?: string } = {},
): { readonly parameters: number } {
  const seed = options.seed ?? 0;
  mkdirSync(dir, { recursive: true });
  const shapes = dalleParameterShapes(config);
  const byName = new Map(shapes);
  writeSafetensors(
    join(dir, 'model.safetensors'),
    shapes.map(([name, shape]) => ({ name, shape })),
    (spec) => {
      const weight = byName.get(`${spec.name.slice(0, -'.bias'.length)}.weight`);
      return drawTensor(seed, spec.name, spec.shape, dalleInitFor(spec.name, spec.shape, weight?.[1] ?? 1));
    },
    { dtype: options.dtype ?? 'F32', metadata: { format: 'pt', random_seed: String(seed) } },
  );
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(dalleConfigJson(config), null, 2)}\n`);
  if (options.tokenizerJson !== undefined) writeFileSync(join(dir, 'tokenizer.json'), options.tokenizerJson);
  return { parameters: countParameters(shapes) };
}

/**
 * A CharBPE tokenizer.json for the full-size random model: the tiny tokenizer's characters and
 * merges, unused filler entries, and [PAD] as the last of `vocabSize` ids. (The real bpe-16k
 * vocabulary cannot be downloaded here.)
 */
export function fullSizeDalleTokenizerJson(vocabSize: number): object {
  const tiny = buildTinyDalleTokenizerJson() as {
    model: { vocab: Record<string, number>; merges: string[] };
  };
  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(tiny.model.vocab)) vocab[token] = id;
  let next = Object.keys(vocab).length;
  for (let i = 0; next < vocabSize - 1; i++) vocab[`[unused${i}]`] = next++;
  vocab[PAD_TOKEN] = vocabSize - 1;
  return charBpeTokenizerJson(vocab, tiny.model.merges);
}

/** The config and tokenizer a preset writes. */
export function randomDallePreset(preset: 'tiny' | 'full'): { config: DalleConfig; tokenizer: () => object } {
  if (preset === 'tiny') {
    return {
      config: tinyDalleConfig(TINY_DALLE_TOKENIZER.vocabSize, TINY_DALLE_TOKENIZER.padId),
      tokenizer: buildTinyDalleTokenizerJson,
    };
  }
  const full = minDalle13BConfig();
  const config = { ...full, pad_token_id: full.vocab_size_txt - 1 };
  return { config, tokenizer: () => fullSizeDalleTokenizerJson(config.vocab_size_txt) };
}

/** Writes a preset's random minDALL-E folder (config.json, model.safetensors, tokenizer.json). */
export function writeRandomDallePreset(
  dir: string,
  preset: 'tiny' | 'full',
  options: RandomWriteOptions = {},
): { readonly parameters: number } {
  const { config, tokenizer } = randomDallePreset(preset);
  return writeRandomDalle(dir, config, { ...options, tokenizerJson: JSON.stringify(tokenizer()) });
}
