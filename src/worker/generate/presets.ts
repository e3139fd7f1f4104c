// Presets pick steps, size and cutouts. GPU values are Pixray's quality table (iterations 200/250/300,
// square sizes 144/288/432, cuts 32/48/2x32). CPU values come from bench/generate.ts with full-size
// models (ViT-B/32 + VQGAN f16_16384) on 2 threads of an idle Xeon: a step costs ~1.1 s + 0.14 s per
// cutout at 128 px (1.53 s with 8, 4.81 s with 32) and 4.3 s with 8 cutouts at 256 px, so on 2 cores
// draft takes ~1.5 min, normal ~3.5 min and better ~10 min, plus ~5 s to build the step graph once.
import { type Preset, presets } from '../../shared/jobs.js';

// The names are the job contract's (bots offer them, workers resolve them): one list for both.
export type { Preset };
export type Device = 'cpu' | 'cuda';

export interface PresetSettings {
  readonly steps: number;
  readonly width: number;
  readonly height: number;
  readonly cutouts: number;
}

export const PRESETS = {
  cpu: {
    draft: { steps: 50, width: 128, height: 128, cutouts: 8 },
    normal: { steps: 100, width: 128, height: 128, cutouts: 12 },
    better: { steps: 150, width: 192, height: 192, cutouts: 16 },
  },
  cuda: {
    draft: { steps: 200, width: 144, height: 144, cutouts: 32 },
    normal: { steps: 250, width: 288, height: 288, cutouts: 48 },
    better: { steps: 300, width: 432, height: 432, cutouts: 64 },
  },
} as const satisfies Record<Device, Record<Preset, PresetSettings>>;

export const presetNames: readonly Preset[] = presets;

export function presetSettings(preset: Preset, device: Device = 'cpu'): PresetSettings {
  return PRESETS[device][preset];
}
