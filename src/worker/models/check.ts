// Whether a model folder's weights are the ones its config.json implies: every parameter present with
// its shape (extra tensors, such as checkpoint buffers, are only listed). Used by `models check` and
// by `models pull` before it puts a downloaded folder in place.
import { join } from 'node:path';
import {
  clipParameterShapes,
  countParameters,
  loadModelConfig,
  type ModelConfig,
  vqganParameterShapes,
} from './config.js';
import { Weights, WeightsError } from './weights.js';

export interface ModelFolderCheck {
  readonly model: ModelConfig;
  /** Parameters the config implies. */
  readonly expectedParameters: number;
  /** One line per missing or mis-shaped tensor; empty when the folder is usable. */
  readonly problems: readonly string[];
  /** Tensors in the file that the config does not use. */
  readonly unused: readonly string[];
}

/** Reads `dir/config.json` and `dir/model.safetensors` and compares them; throws when either is unreadable. */
export async function checkModelFolder(dir: string): Promise<ModelFolderCheck> {
  const model = await loadModelConfig(dir);
  const shapes =
    model.kind === 'clip' ? clipParameterShapes(model.config) : vqganParameterShapes(model.config);
  const weights = Weights.fromFile(join(dir, 'model.safetensors'));
  try {
    const problems: string[] = [];
    const expected = new Set<string>();
    for (const [name, shape] of shapes) {
      expected.add(name);
      if (!weights.has(name)) problems.push(`missing ${name} ${JSON.stringify(shape)}`);
      else if (JSON.stringify(weights.shape(name)) !== JSON.stringify(shape)) {
        problems.push(
          `${name}: shape ${JSON.stringify(weights.shape(name))}, expected ${JSON.stringify(shape)}`,
        );
      }
    }
    const unused = weights.names().filter((n) => !expected.has(n));
    return { model, expectedParameters: countParameters(shapes), problems, unused };
  } finally {
    weights.close();
  }
}

/**
 * Throws unless the folder's tensors fit its config: `model_missing` (WeightsError `missing_tensor`)
 * when a tensor is missing, else `config_invalid` (`shape_mismatch`), the first problems named.
 */
export async function assertModelFolder(dir: string): Promise<void> {
  const { problems } = await checkModelFolder(dir);
  if (problems.length === 0) return;
  const missing = problems.some((p) => p.startsWith('missing '));
  const more = problems.length > 5 ? `; and ${problems.length - 5} more` : '';
  throw new WeightsError(
    missing ? 'missing_tensor' : 'shape_mismatch',
    `${join(dir, 'model.safetensors')} does not fit ${join(dir, 'config.json')}: ${problems.slice(0, 5).join('; ')}${more} (npm run models -- check ${dir} lists them)`,
  );
}
