// The Slack adapter's pure parts, without I/O: Block Kit drawn from the core's views, user strings
// escaped, permalinks both ways, Slack's refusals mapped to the core's codes, and the edit budget.
import { describe, expect, it } from 'vitest';
import { actionId } from '../../../src/bots/core/actions.js';
import { renderError } from '../../../src/bots/core/render.js';
import type { DoneView, FailedView, RunningView } from '../../../src/bots/core/view.js';
import {
  backfillMessage,
  failedMessage,
  finalMessage,
  HIDDEN_IMAGE_NOTE,
  homeView,
  labelsMessage,
  noticeMessage,
  progressMessage,
  quotaLine,
  searchMessage,
  sentence,
} from '../../../src/bots/slack/blocks.js';
import { SLASH_COMMANDS } from '../../../src/bots/slack/commands.js';
import { BOT_EVENTS } from '../../../src/bots/slack/indexing.js';
import { FIND_SIMILAR, WHAT_IS_THIS } from '../../../src/bots/slack/interactions.js';
import { findPermalink, permalinkFor } from '../../../src/bots/slack/permalinks.js';
import { retryAfterOf, UpdateBudget, withRetryAfter } from '../../../src/bots/slack/rate-limits.js';
import { fromSlackError } from '../../../src/bots/slack/slack-errors.js';
import { extensionOf } from '../../../src/bots/slack/surface.js';
import { manifest } from './harness.js';

const jobId = 'imagine:0b6f0a4e-6c1b-4bd8-9d7e-4e2f1a3b5c6d' as const;
const header = { prompt: 'a <!channel> *bold* cat', user: 'U1' };
const ids = (a: string) => actionId(a as 'reroll', jobId);

function done(safety?: { flagged: boolean; score: number }, timelapse = true): DoneView {
  return {
    state: 'done',
    jobId,
    kind: 'imagine',
    text: 'Seed 3 · 30 steps · 64×64',
    result: {} as DoneView['result'],
    imagine: {
      finalBlob: 'vq:blob:1',
      ...(timelapse ? { timelapseBlob: 'vq:blob:2' } : {}),
      seed: 3,
      steps: 30,
      width: 64,
      height: 64,
      preset: 'draft',
      ...(safety ? { safety } : {}),
    },
  };
}

const buttons = (blocks: unknown[]) =>
  (blocks as { type: string; elements?: { action_id: string; text: { text: string } }[] }[])
    .filter((b) => b.type === 'actions')
    .flatMap((b) => b.elements ?? [])
    .map((e) => [e.text.text, e.action_id]);

describe('job messages', () => {
  it('draws progress with the escaped prompt, the preview once shared, and Cancel', () => {
    const view: RunningView = { state: 'running', jobId, step: 3, steps: 30, text: 'Step 3/30 · loss 0.900' };
    const body = progressMessage(header, view, { previewFile: 'F1', actionId: ids });
    expect(body.blocks[0]).toEqual({
      type: 'section',
      text: { type: 'mrkdwn', text: '*a &lt;!channel&gt; ∗bold∗ cat*\n<@U1> · Step 3/30 · loss 0.900' },
    });
    expect(body.blocks[1]).toEqual({
      type: 'image',
      slack_file: { id: 'F1' },
      alt_text: 'Preview: a <!channel> *bold* cat',
    });
    expect(buttons(body.blocks)).toEqual([['Cancel', `vq1:cancel:${jobId}`]]);
    expect(body.text).not.toContain('<!channel>');
    expect(progressMessage(header, view, { actionId: ids }).blocks.map((b) => b.type)).toEqual([
      'section',
      'actions',
    ]);
  });

  it('draws a result by its safety presentation: shown, hidden behind Show image, or withheld', () => {
    const shown = finalMessage(header, done(), {
      file: 'F9',
      presentation: 'show',
      actionId: ids,
      hasTimelapse: true,
    });
    expect(shown.blocks[1]).toMatchObject({ type: 'image', slack_file: { id: 'F9' } });
    expect(buttons(shown.blocks).map(([label]) => label)).toEqual([
      'Re-roll',
      'Variations',
      'Continue',
      'Timelapse',
    ]);
    expect(buttons(shown.blocks)[0]?.[1]).toBe(`vq1:reroll:${jobId}`);

    const flagged = done({ flagged: true, score: 0.9 });
    const hidden = finalMessage(header, flagged, {
      presentation: 'spoiler',
      actionId: ids,
      hasTimelapse: true,
    });
    expect(hidden.blocks.some((b) => b.type === 'image')).toBe(false);
    expect(JSON.stringify(hidden.blocks)).toContain(JSON.stringify(HIDDEN_IMAGE_NOTE).slice(1, -1));
    expect(buttons(hidden.blocks).at(-1)).toEqual(['Show image', `vqs:show:${jobId}`]);

    const withheld = finalMessage(header, flagged, {
      presentation: 'withhold',
      actionId: ids,
      hasTimelapse: false,
    });
    expect(JSON.stringify(withheld.blocks)).toContain('it is not shown here');
    expect(buttons(withheld.blocks).map(([label]) => label)).toEqual(['Re-roll', 'Variations', 'Continue']);
    // A DALL-E image's step follow-up is Refine, with Refine's action, as on Discord.
    const dalle = done();
    const refined = finalMessage(
      header,
      { ...dalle, imagine: { ...dalle.imagine!, drawer: 'dalle' } },
      { file: 'F9', presentation: 'show', actionId: ids, hasTimelapse: true },
    );
    expect(buttons(refined.blocks)).toContainEqual(['Refine', `vq1:refine:${jobId}`]);
    expect(buttons(refined.blocks).map(([label]) => label)).not.toContain('Continue');
    // Slack refuses an image block naming a file that is not shared: without a file, no block.
    const noFile = finalMessage(header, done(), { presentation: 'show', actionId: ids, hasTimelapse: true });
    expect(noFile.blocks.some((b) => b.type === 'image')).toBe(false);
  });

  it('draws a failure as the sentence alone, neutralising what it quotes', () => {
    const view: FailedView = {
      state: 'failed',
      jobId,
      code: 'cancelled',
      text: 'Cancelled.',
      cancelled: true,
    };
    expect(failedMessage(header, view).blocks).toHaveLength(1);
    expect(failedMessage(header, view).text).toMatch(/: Cancelled\.$/);
    expect(sentence('A weight (at "<!here> x:")')).toBe('A weight (at "&lt;!here&gt; x:")');
    expect(sentence('ping @channel `--seed`')).toBe('ping @\u200bchannel `--seed`');
    expect(noticeMessage('Use `--k` & <@U2>').text).toBe('Use `--k` &amp; &lt;@U2&gt;');
  });
});

describe('answers', () => {
  it('draws /whatis labels as bars in a code block, labels escaped', () => {
    const body = labelsMessage(
      [
        { label: 'cat', prob: 0.8 },
        { label: '<b>dog</b>', prob: 0.2 },
      ],
      { fileName: 'pic_1.png' },
    );
    expect(body.text).toBe('cat (80%)');
    expect(body.blocks[0]).toMatchObject({ text: { text: '*What I see in picˍ1.png*' } });
    const code = (body.blocks[1] as { text: { text: string } }).text.text;
    expect(code.startsWith('```') && code.endsWith('```')).toBe(true);
    expect(code).toContain('&lt;b&gt;dog&lt;/b&gt;');
    expect(code).toContain('████████░░  80.0%');
  });

  it('draws search hits with their permalinks, the low-confidence line and the stale note', () => {
    const body = searchMessage(
      { lowConfidence: true, staleImages: 2 },
      [
        { file: 'F1', link: 'https://t.slack.com/archives/C1/p1', score: 0.31, duplicates: 2, name: 'a.png' },
        { file: 'F2', link: null, score: 0.3 },
      ],
      { query: 'a *red* bike' },
    );
    expect(body.text).toBe('2 matches, best first. Low confidence: none of them matches well.');
    expect(body.blocks[0]).toMatchObject({
      text: { text: expect.stringMatching(/^\*a ∗red∗ bike\*: 2 matches/) },
    });
    expect(body.blocks[1]).toMatchObject({
      type: 'context',
      elements: [{ text: '2 images were indexed with another model and are left out of searches.' }],
    });
    expect(
      body.blocks
        .filter((b) => b.type === 'image')
        .map((b) => (b as { slack_file: { id: string } }).slack_file.id),
    ).toEqual(['F1', 'F2']);
    expect(JSON.stringify(body.blocks)).toContain(
      '<https://t.slack.com/archives/C1/p1|Open the message> · a.png · +2 similar',
    );
    expect(searchMessage({}, []).text).toBe('No matching images in this channel yet.');
    expect(
      searchMessage(
        {},
        Array.from({ length: 50 }, (_, i) => ({ file: `F${i}`, link: null, score: 0 })),
      ).blocks.length,
    ).toBeLessThanOrEqual(50);
  });

  it('says how a backfill goes, and the quota a person has left', () => {
    expect(
      backfillMessage({ messages: 15, images: 1, failed: 2, done: false, waitingSeconds: 59.6 }).text,
    ).toBe(
      "Indexing this channel's history for `/imagesearch`: 1 image from 15 messages so far (2 could not be read). Slack lets apps read history slowly; the next page comes in about 60 s.",
    );
    expect(backfillMessage({ messages: 1, images: 0, failed: 0, done: true }).text).toMatch(
      /^Done indexing .* 0 images from 1 message\./,
    );
    expect(quotaLine({ concurrent: 2, perWindow: 0 }, { inFlight: 3, inWindow: 9 })).toBe(
      'Images you can start now: 0 of 2 at a time.',
    );
    expect(quotaLine({ concurrent: 0, perWindow: 0 }, { inFlight: 0, inWindow: 0 })).toBeUndefined();
  });

  it('draws the App Home, with the settings for admins only', () => {
    const job = { jobId, prompt: 'a *fox*', status: 'Done.', link: 'https://t.slack.com/archives/C1/p1' };
    const plain = JSON.stringify(homeView({ running: [], recent: [job] }).blocks);
    expect(plain).toContain('*<https://t.slack.com/archives/C1/p1|a ∗fox∗>* · Done.');
    expect(plain).toContain('Nothing running.');
    expect(plain).not.toContain('static_select');
    const admin = homeView({
      running: [],
      recent: [],
      settings: {
        preset: undefined,
        safetyMode: 'block',
        defaultSafetyMode: 'spoiler',
        presets: ['draft', 'normal'],
      },
    });
    const selects = admin.blocks.flatMap((b) => ('accessory' in b && b.accessory ? [b.accessory] : [])) as {
      action_id: string;
      initial_option?: { value: string };
    }[];
    expect(selects.map((s) => [s.action_id, s.initial_option?.value])).toEqual([
      ['vqh:preset', 'default'],
      ['vqh:safety', 'block'],
    ]);
  });
});

describe('permalinks', () => {
  it('builds and reads message links, thread replies included, from any workspace host', () => {
    expect(permalinkFor('https://t.slack.com/', { channel: 'C1', ts: '1712345678.123456' })).toBe(
      'https://t.slack.com/archives/C1/p1712345678123456',
    );
    const reply = permalinkFor('http://127.0.0.1:9', {
      channel: 'C1',
      ts: '1712345679.000001',
      threadTs: '1712345678.123456',
    });
    expect(reply).toBe('http://127.0.0.1:9/archives/C1/p1712345679000001?thread_ts=1712345678.123456&cid=C1');
    expect(findPermalink(`<${reply}> cat, dog`)).toEqual({
      ref: { channel: 'C1', ts: '1712345679.000001', threadTs: '1712345678.123456' },
      rest: 'cat, dog',
    });
    expect(
      findPermalink('cats <https://x.slack.com/archives/G0AB/p1712345678123456|this one> --k 3'),
    ).toEqual({
      ref: { channel: 'G0AB', ts: '1712345678.123456' },
      rest: 'cats --k 3',
    });
    expect(findPermalink('https://x.slack.com/archives/C1/p123')).toBeUndefined();
    expect(findPermalink('cat, dog')).toBeUndefined();
  });
});

describe('Slack refusals', () => {
  const platform = (error: string, extra: object = {}) => ({
    code: 'slack_webapi_platform_error',
    data: { ok: false, error, ...extra },
  });

  it('map to the core’s sentences', () => {
    expect(renderError(fromSlackError(platform('missing_scope', { needed: 'files:read' })))).toBe(
      'The app is missing the `files:read` permission for this. An admin needs to reinstall or re-invite it.',
    );
    expect(renderError(fromSlackError(platform('not_in_channel')))).toBe(
      'The app is missing the permission for this. An admin needs to reinstall or re-invite it.',
    );
    expect(fromSlackError(platform('file_deleted')).code).toBe('no_image');
    expect(fromSlackError({ code: 'slack_webapi_rate_limited_error', retryAfter: 30 }).code).toBe(
      'unavailable',
    );
    expect(fromSlackError(platform('fatal_error')).code).toBe('internal');
    expect(fromSlackError(new Error('boom')).code).toBe('internal');
  });

  it('names uploads by their type', () => {
    expect(['image/png', 'image/jpeg', 'image/webp', 'application/x-vqclip-state'].map(extensionOf)).toEqual([
      'png',
      'jpg',
      'webp',
      'png',
    ]);
  });
});

describe('rate limits', () => {
  function manualClock() {
    let t = 0;
    const sleeps: number[] = [];
    return {
      now: () => t,
      sleep: async (ms: number) => {
        sleeps.push(ms);
        t += ms;
      },
      advance: (ms: number) => {
        t += ms;
      },
      sleeps,
    };
  }

  it('lets a burst of progress edits through, then one per refill; forced edits go into debt', () => {
    const clock = manualClock();
    const budget = new UpdateBudget({ perMinute: 30, burst: 3, clock });
    expect([1, 2, 3, 4].map(() => budget.tryTake('T'))).toEqual([true, true, true, false]);
    expect(budget.tryTake('T2')).toBe(true);
    clock.advance(2000);
    expect(budget.tryTake('T')).toBe(true);
    budget.force('T');
    budget.force('T');
    clock.advance(2000);
    expect(budget.tryTake('T')).toBe(false);
    clock.advance(4000);
    expect(budget.tryTake('T')).toBe(true);
    budget.blocked('T', 30);
    clock.advance(29_000);
    expect(budget.tryTake('T')).toBe(false);
    clock.advance(1000);
    expect(budget.tryTake('T')).toBe(true);
  });

  it('lines up edits that must land: each waits for a token in turn, and progress waits behind them', async () => {
    const clock = manualClock();
    const budget = new UpdateBudget({ perMinute: 30, burst: 2, clock });
    const landed: number[] = [];
    // Five results at once with two tokens in the bucket: two go now, then one every 2 s.
    await Promise.all([1, 2, 3, 4, 5].map((n) => budget.take('T').then(() => landed.push(n))));
    expect(landed).toEqual([1, 2, 3, 4, 5]);
    expect(clock.sleeps).toEqual([2000, 2000, 2000]);
    expect(budget.available('T')).toBe(0);
    // While a result waits, progress edits get nothing, though the bucket refills.
    const waiting = budget.take('T');
    expect(budget.tryTake('T')).toBe(false);
    await waiting;
    expect(clock.sleeps).toHaveLength(4);
    clock.advance(2000);
    expect(budget.tryTake('T')).toBe(true);
    // A 429's Retry-After holds the line too; other workspaces are not held up.
    budget.blocked('T', 30);
    const before = clock.now();
    await Promise.all([budget.take('T'), budget.take('T2')]);
    expect(clock.now() - before).toBeGreaterThanOrEqual(30_000);
    expect(budget.available('T2')).toBe(1);
  });

  it('waits out Retry-After, then gives up past the attempts or the longest wait', async () => {
    const clock = manualClock();
    const limited = { code: 'slack_webapi_rate_limited_error', retryAfter: 7 };
    let calls = 0;
    const flaky = async () => {
      calls++;
      if (calls < 3) throw limited;
      return 'ok';
    };
    expect(await withRetryAfter(flaky, { clock })).toBe('ok');
    expect(clock.sleeps).toEqual([7000, 7000]);
    await expect(
      withRetryAfter(async () => Promise.reject(limited), { clock, maxWaitMs: 5000 }),
    ).rejects.toBe(limited);
    await expect(withRetryAfter(async () => Promise.reject(new Error('x')), { clock })).rejects.toThrow('x');
    expect(retryAfterOf(limited)).toBe(7);
    expect(retryAfterOf(new Error('x'))).toBeUndefined();
  });
});

describe('slack-manifest.yml', () => {
  it('declares the commands, shortcuts and events the adapter answers', () => {
    const m = manifest();
    expect(m.features.slash_commands.map((c) => c.command)).toEqual([...SLASH_COMMANDS]);
    expect(m.features.shortcuts.map((s) => [s.type, s.callback_id])).toEqual([
      ['message', WHAT_IS_THIS],
      ['message', FIND_SIMILAR],
    ]);
    expect(m.settings.event_subscriptions.bot_events).toEqual([...BOT_EVENTS]);
    expect(m.settings.socket_mode_enabled).toBe(true);
  });
});
