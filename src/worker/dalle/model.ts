// Loads a minDALL-E stage-2 folder (config.json, model.safetensors, tokenizer.json), random or
// converted from the real checkpoint by `models pull`: the same code for both.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Weights } from '../models/weights.js';
import { type DalleConfig, loadDalleConfig } from './config.js';
import { DalleTokenizer } from './tokenizer.js';
import { type DalleWeights, prepareDalleWeights } from './transformer.js';

export interface DalleModel {
  readonly dir: string;
  readonly config: DalleConfig;
  readonly weights: DalleWeights;
  readonly tokenizer: DalleTokenizer;
  /**
   * The folder's own stage-1 VQGAN (`vqgan/`), which its codes index: minDALL-E's tokens mean
   * nothing to another VQGAN. Random folders have none and use the worker's VQGAN, whose codebook
   * size they match.
   */
  readonly vqganDir?: string;
}

/** Reads and prepares the model (the weights are read once and transposed into the graphs' layout). */
export async function loadDalleModel(
  dir: string,
  options: { precision?: 'fp32' | 'int8' } = {},
): Promise<DalleModel> {
  const config = await loadDalleConfig(dir);
  const file = Weights.fromFile(join(dir, 'model.safetensors'));
  let weights: DalleWeights;
  try {
    weights = prepareDalleWeights(config, file, { precision: options.precision ?? 'fp32' });
  } finally {
    file.close();
  }
  const tokenizer = await DalleTokenizer.fromFile(join(dir, 'tokenizer.json'), config.ctx_len_txt);
  if (tokenizer.padId !== config.pad_token_id) {
    throw new Error(
      `${dir}: the tokenizer's [PAD] is id ${tokenizer.padId} but config.json says pad_token_id ${config.pad_token_id}`,
    );
  }
  const vqganDir = join(dir, 'vqgan');
  return existsSync(join(vqganDir, 'config.json'))
    ? { dir, config, weights, tokenizer, vqganDir }
    : { dir, config, weights, tokenizer };
}
