// The worker's code in this process for processor tests: tiny random models written to a temp
// MODELS_DIR and loaded once per file, and a migrated PGlite copied from the cached template.
// Pipeline tests spawn worker processes instead (worker-process.ts) and share tinyModelsDir().
import { cp } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import { type Database, openDatabase } from '../../src/shared/db/index.js';
import { type LoadModelsOptions, loadModels, type WorkerModels } from '../../src/worker/runtime/models.js';
import { pgliteTemplate, tempDir, writeTinyModels } from './worker-process.js';

/** A temp folder holding the tiny random CLIP and VQGAN (seed 0); `remove` deletes it. */
export async function tinyModelsDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const dir = await tempDir('models');
  writeTinyModels(dir.path);
  return dir;
}

export interface TinyWorker {
  readonly models: WorkerModels;
  readonly db: Database;
  readonly modelsDir: string;
}

/**
 * Registers beforeAll/afterAll that load the tiny models (one ORT thread: test files share the
 * cores) and open a fresh PGlite. Read the fields inside tests or hooks.
 */
export function useTinyWorker(options: LoadModelsOptions = {}): TinyWorker {
  let state: TinyWorker | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    const modelsDir = await tinyModelsDir();
    cleanups.push(modelsDir.remove);
    const dataDir = await tempDir('data');
    cleanups.push(dataDir.remove);
    const models = await loadModels(modelsDir.path, { intraOpThreads: 1, ...options });
    cleanups.push(() => models.close());
    await cp(await pgliteTemplate(models.embeddingDim), dataDir.path, { recursive: true });
    const db = await openDatabase(
      { dataDir: dataDir.path },
      { embeddingDim: models.embeddingDim, embeddingModel: models.embeddingModel },
    );
    cleanups.push(() => db.close());
    state = { models, db, modelsDir: modelsDir.path };
  });
  afterAll(async () => {
    for (const clean of cleanups.splice(0).reverse()) await clean().catch(() => {});
  });
  const get = (): TinyWorker => {
    if (!state) throw new Error('tiny worker not ready yet: use it inside a test or hook');
    return state;
  };
  return {
    get models() {
      return get().models;
    },
    get db() {
      return get().db;
    },
    get modelsDir() {
      return get().modelsDir;
    },
  };
}
