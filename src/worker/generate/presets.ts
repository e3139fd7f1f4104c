// Presets pick steps, size and cutouts. GPU values are Pixray's quality table (iterations 200/250/300,
// square sizes 144/288/432, cuts 32/48/2x32). CPU values come from bench/generate.ts on 2 cores with
// full-size models (ViT-B/32 + VQGAN f16_16384): a normal run must finish in a few minutes there.
export type Preset = 'draft' | 'normal' | 'better';
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
    normal: { steps: 100, width: 128, height: 128, cutouts: 16 },
    better: { steps: 150, width: 192, height: 192, cutouts: 16 },
  },
  cuda: {
    draft: { steps: 200, width: 144, height: 144, cutouts: 32 },
    normal: { steps: 250, width: 288, height: 288, cutouts: 48 },
    better: { steps: 300, width: 432, height: 432, cutouts: 64 },
  },
} as const satisfies Record<Device, Record<Preset, PresetSettings>>;

export const presetNames: readonly Preset[] = ['draft', 'normal', 'better'];

export function presetSettings(preset: Preset, device: Device = 'cpu'): PresetSettings {
  return PRESETS[device][preset];
}
