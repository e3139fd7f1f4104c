import { describe, expect, it } from 'vitest';
import { PRESETS, presetNames, presetSettings } from '../../../src/worker/generate/presets.js';
import { DefaultGenerateLimits, resolveRequest } from '../../../src/worker/generate/request.js';
import { tinyModels } from './tiny-models.js';

describe('presets', () => {
  it('are valid requests for the f16 VQGAN on both devices', () => {
    for (const device of ['cpu', 'cuda'] as const) {
      for (const p of presetNames) {
        const s = presetSettings(p, device);
        expect(s.width % 16).toBe(0);
        expect(s.height % 16).toBe(0);
        expect(s.steps).toBeLessThanOrEqual(DefaultGenerateLimits.maxSteps);
        expect(s.cutouts).toBeLessThanOrEqual(DefaultGenerateLimits.maxCutouts);
      }
    }
    // Better costs more than normal, which costs more than draft (steps x cutouts x pixels).
    const cost = (s: { steps: number; cutouts: number; width: number }) =>
      s.steps * (s.cutouts + s.width ** 2 / 2048);
    expect(cost(PRESETS.cpu.draft)).toBeLessThan(cost(PRESETS.cpu.normal));
    expect(cost(PRESETS.cpu.normal)).toBeLessThan(cost(PRESETS.cpu.better));
  });

  it('fill in what a request leaves out; explicit values and saved states win', () => {
    const models = tinyModels(1);
    const limits = DefaultGenerateLimits;
    const draft = resolveRequest({ prompt: 'a cat', preset: 'draft', seed: 3 }, models, 'cpu', limits).params;
    expect([draft.steps, draft.width, draft.height, draft.cutouts]).toEqual([50, 128, 128, 8]);
    const gpu = resolveRequest({ prompt: 'a cat', seed: 3 }, models, 'cuda', limits).params;
    expect([gpu.preset, gpu.steps, gpu.width, gpu.cutouts]).toEqual(['normal', 250, 288, 48]);
    const mixed = resolveRequest(
      { prompt: 'a cat', preset: 'draft', steps: 7, width: 64 },
      models,
      'cpu',
      limits,
    ).params;
    expect([mixed.steps, mixed.width, mixed.height, mixed.cutouts]).toEqual([7, 64, 128, 8]);
    expect(mixed.seed).toBeGreaterThanOrEqual(0);
  });
});
