// A minDALL-E folder with its own stage-1 VQGAN (as `models pull --only dalle` writes it): the drawer
// decodes with that one, and the state Refine starts from is the image encoded by the worker's VQGAN,
// whose codebook the VQGAN+CLIP loop quantises to (the DALL-E codes would mean nothing to it).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeState } from '../../../src/worker/generate/state.js';
import { tinyVqganConfig } from '../../../src/worker/models/config.js';
import { writeRandomVqgan } from '../../../src/worker/models/random.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { MemoryBlobs } from '../../../src/worker/processors/blobs.js';
import { runImagine } from '../../../src/worker/processors/imagine.js';
import { loadModels, type WorkerModels } from '../../../src/worker/runtime/models.js';
import { writeTinyModels } from '../../helpers/worker-process.js';

let dir: string;
let models: WorkerModels;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dalle-own-vqgan-'));
  writeTinyModels(dir);
  writeRandomVqgan(join(dir, 'dalle', 'vqgan'), tinyVqganConfig(), { seed: 99 });
  models = await loadModels(dir, { intraOpThreads: 1 });
});
afterAll(async () => {
  await models.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Whether the d-vector at `pos` of a [1, d, h, w] latent is a row of `codebook` [n, d]. */
function isRow(
  latent: Float32Array,
  pos: number,
  positions: number,
  codebook: Float32Array,
  d: number,
): boolean {
  for (let k = 0; k * d < codebook.length; k++) {
    let same = true;
    for (let c = 0; c < d && same; c++) same = latent[c * positions + pos] === codebook[k * d + c];
    if (same) return true;
  }
  return false;
}

describe('a minDALL-E with its own VQGAN', () => {
  it('saves the image in the worker VQGAN for Refine', async () => {
    const blobs = new MemoryBlobs({ prefix: 'test' });
    const drawer = await models.dalle!.get();
    expect(drawer.vqgan).not.toBe(models.generation.vqgan);
    const result = await runImagine(
      models,
      { prompt: 'a fox', drawer: 'dalle', candidates: 1, seed: 2, origin: { platform: 'web', user: 'U1' } },
      { blobs },
    );
    const state = decodeState((await blobs.get(result.latentBlob!))!.bytes);
    const d = 16;
    const positions = 64;
    const worker = models.generation.vqgan.weights.get('quantize.embedding.weight', [1024, d]);
    const own = Weights.fromFile(join(dir, 'dalle', 'vqgan', 'model.safetensors'));
    const theirs = own.get('quantize.embedding.weight', [1024, d]);
    own.close();
    for (const pos of [0, 17, 63]) {
      expect(isRow(state.latent.data, pos, positions, worker, d)).toBe(true);
      expect(isRow(state.latent.data, pos, positions, theirs, d)).toBe(false);
    }
  });
});
