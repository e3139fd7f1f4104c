// Follow-ups of a DALL-E image: Refine continues it with VQGAN+CLIP steps from its saved state (its
// tokens' codebook rows), Re-roll draws again with DALL-E and as many candidates, Variations paint
// with VQGAN+CLIP from its latent; Discord offers Refine where other images offer Continue.
import { describe, expect, it } from 'vitest';
import { actionId, CONTINUE_STEPS, followUpJob, parseActionId } from '../../../src/bots/core/actions.js';
import type { JobRef } from '../../../src/bots/core/job-status.js';
import { doneView } from '../../../src/bots/core/view.js';
import { finalActions } from '../../../src/bots/discord/components.js';
import type { ImagineJob, ImagineResult } from '../../../src/shared/jobs.js';

const parentId = 'imagine:00000000-0000-4000-8000-0000000000aa' as JobRef<'imagine'>;
const origin = { platform: 'discord', workspace: 'G1', channel: 'C1', user: 'U1' } as const;
const data: ImagineJob = { prompt: 'a red fox', seed: 5, drawer: 'dalle', candidates: 3, origin };
const result: ImagineResult = {
  finalBlob: 'p:blob:final',
  latentBlob: 'p:blob:state',
  seed: 5,
  steps: 0,
  params: { width: 256, height: 256, cutouts: 8, lr: 0.1, preset: 'normal' },
  lossFirst: 1,
  lossLast: 1,
  timings: { total: 1000 },
  drawer: 'dalle',
  candidates: 3,
  clipScore: 0.3,
};
const all = async () => true;

describe('follow-ups of a DALL-E image', () => {
  it('Refine continues it with VQGAN+CLIP steps from its saved state', async () => {
    expect(parseActionId(actionId('refine', parentId))).toEqual({ action: 'refine', jobId: parentId });
    const refine = await followUpJob({ data, result }, 'refine', origin, parentId, all);
    expect(refine).toEqual({
      prompt: 'a red fox',
      seed: 5,
      steps: CONTINUE_STEPS,
      from: { state: 'p:blob:state', mode: 'continue', job: parentId },
      origin,
    });
    await expect(
      followUpJob({ data, result }, 'refine', origin, parentId, async () => false),
    ).rejects.toMatchObject({
      code: 'blob_missing',
    });
  });

  it('Re-roll draws again with DALL-E; Variations paint with VQGAN+CLIP from its latent', async () => {
    const reroll = await followUpJob({ data, result }, 'reroll', origin, parentId, all, {}, () => 9);
    expect(reroll).toEqual({ prompt: 'a red fox', seed: 9, drawer: 'dalle', candidates: 3, origin });
    const variations = await followUpJob({ data, result }, 'variations', origin, parentId, all, {}, () => 9);
    expect(variations).toMatchObject({ from: { state: 'p:blob:state', mode: 'variation' } });
    expect(variations.drawer).toBeUndefined();
  });

  it('Discord offers Refine instead of Continue on a DALL-E image', () => {
    const dalle = finalActions(doneView(parentId, result) as Parameters<typeof finalActions>[0], 'show');
    expect(dalle).toContain(actionId('refine', parentId));
    expect(dalle).not.toContain(actionId('continue', parentId));
    const { drawer: _d, candidates: _c, clipScore: _s, ...plain } = result;
    const vq = finalActions(doneView(parentId, plain) as Parameters<typeof finalActions>[0], 'show');
    expect(vq).toContain(actionId('continue', parentId));
    expect(vq).not.toContain(actionId('refine', parentId));
  });
});
