// `vqclip imagine --drawer dalle` in process on the tiny models with a tiny minDALL-E: the kept
// candidate written as a PNG at the drawer's size, a bad drawer or candidate count refused as a
// usage mistake, and the CLI's copy of the drawers equal to the job schema's.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../src/app/cli.js';
import { cliDrawers } from '../../src/app/cli-limits.js';
import { drawers } from '../../src/shared/jobs.js';
import { writeRandomDallePreset } from '../../src/worker/dalle/random.js';
import { writeRandomModels } from '../../src/worker/models/random.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vqclip-cli-dalle-'));
  writeRandomModels({ preset: 'tiny', outDir: join(dir, 'models'), seed: 0 });
  writeRandomDallePreset(join(dir, 'models', 'dalle'), 'tiny', { seed: 0 });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    isTty: false,
    env: {},
  };
  const code = await runCli([...args, '--models', join(dir, 'models'), '--data', join(dir, 'data')], io);
  return { code, stdout, stderr };
}

describe('vqclip imagine --drawer dalle', () => {
  it('writes the best of N candidates and says how it was drawn', async () => {
    const out = join(dir, 'fox.png');
    const r = await cli([
      'imagine',
      'a red fox',
      '--drawer',
      'dalle',
      '--candidates',
      '2',
      '--seed',
      '3',
      '--out',
      out,
    ]);
    expect(r.stderr).toMatch(/Token \d+\/64/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Seed 3 · DALL-E, best of 2 by CLIP/);
    expect(await sharp(out).metadata()).toMatchObject({ width: 128, height: 128, format: 'png' });
  });

  it('refuses a bad drawer, candidates out of range, and options of the other drawer', async () => {
    expect((await cli(['imagine', 'x', '--drawer', 'dall-e'])).code).toBe(2);
    expect((await cli(['imagine', 'x', '--drawer', 'dalle', '--candidates', '17'])).code).toBe(2);
    const steps = await cli([
      'imagine',
      'x',
      '--drawer',
      'dalle',
      '--steps',
      '5',
      '--out',
      join(dir, 'x.png'),
    ]);
    expect(steps.code).not.toBe(0);
    expect(steps.stderr).toMatch(/steps/);
    expect([...cliDrawers]).toEqual([...drawers]);
  });
});
