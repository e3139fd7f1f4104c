// The DALL-E drawer through the queue: the core with a real worker on the tiny models (a tiny
// minDALL-E among them) draws token progress and the best candidate, and Refine continues that image
// with VQGAN+CLIP steps.
import { describe, expect, it } from 'vitest';
import { ChatCore } from '../../../src/bots/core/chat.js';
import { ingestPolicy } from '../../../src/bots/core/ingest.js';
import type { ReplySurface } from '../../../src/bots/core/reply.js';
import type { JobView } from '../../../src/bots/core/view.js';
import { probeImage } from '../../../src/shared/image/decode.js';
import { useBotStack } from '../../helpers/bot-stack.js';

const stack = useBotStack();

function surface(): ReplySurface & { views: JobView[] } {
  const views: JobView[] = [];
  const push = (view: JobView) => void views.push(view);
  return { views, ack: push, progress: push, final: push, fail: push };
}

describe('the DALL-E drawer through the queue', () => {
  it('draws the best of two candidates, then Refine adds VQGAN+CLIP steps', async () => {
    const { services } = await stack.start({ throttleMs: 0 });
    const core = new ChatCore({ platform: 'slack', ...services, ingest: ingestPolicy('slack') });
    const origin = { platform: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' } as const;
    const s = surface();
    const run = await core.imagine({ text: 'a red apple --drawer dalle --candidates 2 --seed 5' }, origin, s);
    expect(await run.done).toMatchObject({ state: 'done' });
    const running = s.views.filter((v) => v.state === 'running');
    expect(running.some((v) => /^Token \d+\/64 · [\d.]+ tokens\/s/.test(v.text))).toBe(true);
    const final = s.views.at(-1);
    expect(final).toMatchObject({
      state: 'done',
      imagine: { seed: 5, width: 128, height: 128, drawer: 'dalle' },
    });
    if (final?.state !== 'done' || !final.imagine) throw new Error('no final view');
    expect(final.text).toMatch(/^Seed 5 · DALL-E, best of 2 by CLIP/);
    const png = await services.blobs.get(final.imagine.finalBlob);
    expect(await probeImage(png!.bytes)).toMatchObject({ format: 'png', width: 128, height: 128 });

    const more = surface();
    const refine = await core.action(core.actionId('refine', run.jobId!), origin, more, { steps: 2 });
    expect(refine.kind).toBe('started');
    if (refine.kind !== 'started') return;
    expect(await refine.run.done).toMatchObject({ state: 'done' });
    const refined = more.views.at(-1);
    expect(refined).toMatchObject({ state: 'done', imagine: { steps: 2, seed: 5, width: 128, height: 128 } });
    expect(refined?.state === 'done' && refined.imagine?.drawer).toBeFalsy();
  });
});
