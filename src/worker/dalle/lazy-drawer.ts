// The worker's DALL-E drawer, opened on first use: a full-size minDALL-E is 5 GB to read and
// prepare, which a worker that never gets a DALL-E job should not pay at start. Present only when
// MODELS_DIR holds a `dalle/` folder.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ModelMissingError } from '../../shared/errors.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { loadModelConfig } from '../models/config.js';
import type { WeightSource } from '../models/params.js';
import type { VqganConfig } from '../models/vqgan.js';
import { Weights } from '../models/weights.js';
import type { SessionOptions } from '../onnx/session.js';
import { DalleDrawer, type DalleDrawerDeps } from './drawer.js';
import { loadDalleModel } from './model.js';

export interface LazyDalleDrawer {
  /** The folder it loads from. */
  readonly dir: string;
  get(): Promise<DalleDrawer>;
  close(): Promise<void>;
}

export interface DalleDrawerSources {
  /** The worker's VQGAN: used when the folder has no stage 1 of its own. */
  readonly vqgan: { readonly config: VqganConfig; readonly weights: WeightSource };
  readonly embedTexts: DalleDrawerDeps['embedTexts'];
  readonly embedImages: DalleDrawerDeps['embedImages'];
  readonly clipImageSize: number;
  readonly session?: SessionOptions;
  /** The transformer blocks' arithmetic (DALLE_PRECISION). @defaultValue 'fp32' */
  readonly precision?: 'fp32' | 'int8';
  readonly logger?: Logger;
}

/** `modelsDir/dalle` as a lazily opened drawer, or undefined when there is no such folder. */
export function lazyDalleDrawer(modelsDir: string, sources: DalleDrawerSources): LazyDalleDrawer | undefined {
  const dir = join(modelsDir, 'dalle');
  if (!existsSync(join(dir, 'config.json'))) return undefined;
  const logger = sources.logger ?? silentLogger;
  let opening: Promise<DalleDrawer> | undefined;
  let ownVqgan: Weights | undefined;
  const open = async (): Promise<DalleDrawer> => {
    const started = performance.now();
    // A broken folder fails with its own coded error (config_invalid, a tokenizer or weights error).
    const model = await loadDalleModel(dir, { precision: sources.precision ?? 'fp32' });
    let vqgan = sources.vqgan;
    if (model.vqganDir) {
      const c = await loadModelConfig(model.vqganDir);
      if (c.kind !== 'vqgan') throw new ModelMissingError('dalle', modelsDir);
      ownVqgan = Weights.fromFile(join(model.vqganDir, 'model.safetensors'));
      vqgan = { config: c.config, weights: ownVqgan };
    }
    const drawer = new DalleDrawer(
      {
        model,
        vqgan,
        embedTexts: sources.embedTexts,
        embedImages: sources.embedImages,
        clipImageSize: sources.clipImageSize,
      },
      sources.session ?? {},
    );
    logger.info(
      {
        dir,
        layers: model.config.n_layers,
        width: model.config.embed_dim,
        ms: Math.round(performance.now() - started),
      },
      'minDALL-E loaded',
    );
    return drawer;
  };
  return {
    dir,
    get() {
      opening ??= open();
      opening.catch(() => {
        opening = undefined;
      });
      return opening;
    },
    async close() {
      const d = opening;
      opening = undefined;
      if (d) await (await d.catch(() => undefined))?.close();
      ownVqgan?.close();
    },
  };
}
