// Model folders for the one-machine stack: writes tiny random-weight models on first run when
// MODELS_DIR holds none (so `npm start` works offline with nothing downloaded), and tells whether
// the models in a folder are random weights (the safetensors metadata says so), for the banner.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { writeRandomDallePreset } from '../worker/dalle/random.js';
import { writeRandomModels } from '../worker/models/random.js';
import { Weights } from '../worker/models/weights.js';

const MODEL_FOLDERS = ['clip', 'vqgan'] as const;

/** Whether `modelsDir` holds both model folders (config.json and model.safetensors each). */
export async function hasModels(modelsDir: string): Promise<boolean> {
  for (const name of MODEL_FOLDERS) {
    try {
      await access(join(modelsDir, name, 'config.json'));
      await access(join(modelsDir, name, 'model.safetensors'));
    } catch {
      return false;
    }
  }
  return true;
}

/** True when any model in the folder was written by the random-weight writer (its `random_seed` metadata). */
export function hasRandomWeights(modelsDir: string): boolean {
  return MODEL_FOLDERS.some((name) => {
    let weights: Weights | undefined;
    try {
      weights = Weights.fromFile(join(modelsDir, name, 'model.safetensors'));
      return weights.metadata.random_seed !== undefined;
    } catch {
      return false;
    } finally {
      weights?.close();
    }
  });
}

/**
 * Writes tiny random models into `modelsDir` when it holds none. Returns whether it wrote them. A
 * folder with only one of the two models is left alone: that is someone's half-finished setup.
 */
export async function ensureModels(modelsDir: string): Promise<{ wrote: boolean }> {
  if (await hasModels(modelsDir)) return { wrote: false };
  for (const name of MODEL_FOLDERS) {
    try {
      await access(join(modelsDir, name));
      return { wrote: false };
    } catch {
      // absent: fine
    }
  }
  writeRandomModels({ preset: 'tiny', outDir: modelsDir, seed: 0 });
  // A tiny minDALL-E too, so the DALL-E drawer works offline (opened only by a DALL-E job).
  writeRandomDallePreset(join(modelsDir, 'dalle'), 'tiny', { seed: 0 });
  return { wrote: true };
}

export const RANDOM_WEIGHTS_BANNER = [
  '================================================================================',
  '  These models have RANDOM WEIGHTS: images are colourful noise, labels guesses.',
  '  Everything else is real: queues, worker, ONNX graphs, search. Real weights:',
  '  see the README.',
  '================================================================================',
].join('\n');
