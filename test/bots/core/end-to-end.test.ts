// The core with a real worker on the tiny models: an imagine job through the run loop draws
// progress and a final image whose blob holds a PNG, and a Continue from it adds steps.
import { describe, expect, it } from 'vitest';
import { ChatCore } from '../../../src/bots/core/chat.js';
import { ingestPolicy } from '../../../src/bots/core/ingest.js';
import type { ReplySurface } from '../../../src/bots/core/reply.js';
import type { JobView } from '../../../src/bots/core/view.js';
import { useBotStack } from '../../helpers/bot-stack.js';

const stack = useBotStack();

function surface(): ReplySurface & { views: JobView[] } {
  const views: JobView[] = [];
  const push = (view: JobView) => void views.push(view);
  return { views, ack: push, progress: push, final: push, fail: push };
}

describe('the core with a real worker', () => {
  it('paints on the tiny models, then continues from the saved state', async () => {
    const { services } = await stack.start({ throttleMs: 50 });
    const core = new ChatCore({ platform: 'slack', ...services, ingest: ingestPolicy('slack') });
    const origin = { platform: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' } as const;
    const s = surface();
    const run = await core.imagine({ text: 'a red apple --steps 3 --size 64 --seed 5' }, origin, s);
    expect(await run.done).toMatchObject({ state: 'done' });
    const final = s.views.at(-1);
    expect(final).toMatchObject({ state: 'done', imagine: { seed: 5, steps: 3, width: 64, height: 64 } });
    if (final?.state !== 'done' || !final.imagine) throw new Error('no final view');
    const png = await services.blobs.get(final.imagine.finalBlob);
    expect(png?.contentType).toBe('image/png');
    expect([...new Uint8Array(png!.bytes).subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);

    const more = surface();
    const cont = await core.action(core.actionId('continue', run.jobId!), origin, more, { steps: 2 });
    expect(cont.kind).toBe('started');
    if (cont.kind !== 'started') return;
    expect(await cont.run.done).toMatchObject({ state: 'done' });
    expect(more.views.at(-1)).toMatchObject({ state: 'done', imagine: { steps: 5, seed: 5 } });
  });
});
