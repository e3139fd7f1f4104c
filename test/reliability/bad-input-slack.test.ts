// Bad input through the real Bolt against the fake Slack and a real worker: prompts and flags a
// person can type, odd Unicode, a signed request replayed, and buttons naming another workspace's
// job. Each refusal is a private sentence; nothing is posted in the channel for it; nothing crashes.
import { describe, expect, it } from 'vitest';
import type { ImagineJob } from '../../src/shared/jobs.js';
import { buttonOf, finished, jobMessages, nthJobMessage, useSlackHarness } from '../bots/slack/harness.js';
import { useBotStack } from '../helpers/bot-stack.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

describe('what a person can type after /imagine', () => {
  it('refuses each bad prompt or option with its own sentence, privately, and starts no job', async () => {
    const h = await slack.start();
    const cases: [string, string | RegExp][] = [
      ['x'.repeat(10_000), 'Your prompt has 10000 characters; the limit is 1000. Please shorten it.'],
      [
        'a long story '.repeat(800),
        'Your prompt has 10399 characters; the limit is 1000. Please shorten it.',
      ],
      // Slack trims the text: only spaces is no text, which gets the usage line.
      ['      ', /^Paint a picture: `\/imagine a watercolor teacher --steps 50`\. Flags: /],
      ['\u200b\u200d\u2060 \u200f', 'The prompt is empty.'],
      [':1 | :2', 'A part of the prompt has a weight but no text. (at ":1")'],
      ['a cat:-1 | a dog:0', 'At least one part of the prompt needs a positive weight.'],
      ['a cat:1e999', 'A weight in the prompt is too large. (at "a cat:1e999")'],
      ['a cat --seed abc', '`--seed` takes a whole number from 0 to 4294967295.'],
      ['a cat --seed 99999999999', '`--seed` takes a whole number from 0 to 4294967295.'],
      ['a cat --steps 0', '`--steps` takes a whole number from 1 to 1000.'],
      ['a cat --steps 1.5', '`--steps` takes a whole number from 1 to 1000.'],
      [
        'a cat --size 64x9999',
        '`--size` takes WIDTHxHEIGHT (or one number for a square), each from 64 to 1024 and a multiple of 16.',
      ],
      ['a cat --preset turbo', '`--preset` takes one of draft, normal, better.'],
      // The list grows with the flags; it starts with these.
      [
        'a cat --cutouts 8',
        /^There is no `--cutouts` flag\. The flags here are `--preset`, `--seed`, `--steps`, `--size`/,
      ],
      ['a cat --sede 3', 'There is no `--sede` flag. Did you mean `--seed`?'],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      expect(await h.command('/imagine', text)).toBe(200);
      const said = await h.nextEphemeral(i + 1);
      if (typeof expected === 'string') expect(said, text.slice(0, 40)).toBe(expected);
      else expect(said, text.slice(0, 40)).toMatch(expected);
    }
    expect(jobMessages(h.fake)).toHaveLength(0);
  });

  it('paints a prompt of emoji, joiners and right-to-left text, and shows it without its bidi overrides', async () => {
    const h = await slack.start();
    const prompt = '🧑\u200d🚀 on a \u202eevil\u202c moon قطة \u200f';
    await h.command('/imagine', `${prompt} --steps 3 --size 64`);
    const message = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, message.ts);
    expect(done.text).toContain('🧑\u200d🚀 on a');
    expect(done.text).toContain('قطة');
    // An override would flip the text after it in the channel (and could disguise it).
    expect(done.text).not.toMatch(/[\u202a-\u202e\u2066-\u2069]/);
    expect(h.ephemeralTexts()).toEqual([]);
  });
});

describe('HTTP mode', () => {
  it('answers forged, stale and unsigned requests 401, and the operator reads why in the log', async () => {
    const h = await slack.start({ mode: 'http' });
    const url = `http://127.0.0.1:${h.bot.port}/slack/events`;
    const command = () =>
      h.fake.build.slashCommand({ command: '/imagine', text: 'a forged cat --steps 3 --size 64' });
    const said = (why: RegExp) =>
      h.logger.lines.filter(
        (l) => /^warn Failed to parse and verify the request data: /.test(l) && why.test(l),
      );
    expect((await h.fake.http.post(url, 'slash_commands', command(), { signature: 'forged' })).status).toBe(
      401,
    );
    expect(said(/signature mismatch/i)).toHaveLength(1);
    expect((await h.fake.http.post(url, 'slash_commands', command(), { stale: true })).status).toBe(401);
    expect(said(/stale/i)).toHaveLength(1);
    expect((await h.fake.http.post(url, 'slash_commands', command(), { signature: 'none' })).status).toBe(
      401,
    );
    expect(said(/header/i)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(jobMessages(h.fake)).toHaveLength(0);
    expect(h.ephemeralTexts()).toEqual([]);
  });

  it('handles a signed request once: a replay of it within the 5 minutes is logged and dropped', async () => {
    const h = await slack.start({ mode: 'http' });
    const url = `http://127.0.0.1:${h.bot.port}/slack/events`;
    const command = h.fake.build.slashCommand({
      command: '/imagine',
      text: 'a replayed cat --steps 3 --size 64',
    });
    const timestampSec = Math.floor(Date.now() / 1000);
    const first = await h.fake.http.post(url, 'slash_commands', command, { timestampSec });
    expect(first.status).toBe(200);
    const posted = await nthJobMessage(h.fake, 1);
    // The same bytes, the same signature: what someone who captured the request can send again.
    const replays = await Promise.all(
      [1, 2, 3].map(() => h.fake.http.post(url, 'slash_commands', command, { timestampSec })),
    );
    expect(replays.map((r) => r.status)).toEqual([200, 200, 200]);
    await finished(h.fake, posted.ts);
    await new Promise((r) => setTimeout(r, 500));
    expect(jobMessages(h.fake)).toHaveLength(1);
    expect(h.logger.lines.filter((l) => l.includes('replayed Slack request'))).toHaveLength(3);
    // A new request (new timestamp, so a new signature) of the same text is not a replay.
    const again = await h.fake.http.post(url, 'slash_commands', command, { timestampSec: timestampSec + 1 });
    expect(again.status).toBe(200);
    await nthJobMessage(h.fake, 2);
  });
});

describe('buttons', () => {
  it("refuses a button naming another workspace's job, without a word of that job, an unknown action and an expired job", async () => {
    const h = await slack.start({ stack: { imagineQuota: { concurrent: 5, perWindow: 50 } } });
    await h.command('/imagine', 'my own cat --steps 3 --size 64');
    const mine = await finished(h.fake, (await nthJobMessage(h.fake, 1)).ts);
    // A job of another workspace of the same app, by the same person (Enterprise Grid keeps user ids).
    const other: ImagineJob = {
      prompt: 'the secret plans of another team',
      seed: 1,
      steps: 1000,
      size: { width: 64, height: 64 },
      origin: { platform: 'slack', workspace: 'TOTHERTEAM', channel: 'C0OTHER', user: h.fake.defaultUserId },
    };
    const { jobId } = await h.stack.services.jobs.submit('imagine', other, {
      userId: `slack:TOTHERTEAM:${h.fake.defaultUserId}`,
    });
    const forged = ['reroll', 'variations', 'continue', 'remix', 'timelapse', 'cancel'].map(
      (action) => `vq1:${action}:${jobId}`,
    );
    for (const [i, id] of forged.entries()) {
      await h.press(mine, id);
      expect(await h.nextEphemeral(i + 1), id).toBe(
        'That job does not exist any more (results are kept for a day).',
      );
    }
    // A button of an action this version does not have (an older or newer bot's).
    await h.press(mine, 'vq1:explode:imagine:00000000-0000-4000-8000-000000000000');
    expect(await h.nextEphemeral(forged.length + 1)).toBe('This button is from an older version of the bot.');
    expect(h.ephemeralTexts().join(' ')).not.toMatch(/secret plans/);
    expect(jobMessages(h.fake)).toHaveLength(1);
    // The other team's job was not cancelled (it runs on, or has finished).
    expect((await h.stack.services.jobs.status(jobId)).state).toMatch(/^(waiting|active|completed)$/);
    await h.stack.services.jobs.cancel(jobId);
    // A job that has expired (or never was): said in words.
    await h.press(mine, 'vq1:reroll:imagine:00000000-0000-4000-8000-000000000000');
    expect(await h.nextEphemeral(forged.length + 2)).toBe(
      'That job does not exist any more (results are kept for a day).',
    );
    // The buttons of this workspace's own job still work, for anyone in the channel: another
    // person's Re-roll is their own job, on their own quota.
    const bob = h.fake.addUser({ name: 'bob' }).id;
    await h.press(mine, buttonOf(mine, 'reroll'), { user_id: bob });
    const rerolled = await nthJobMessage(h.fake, 2);
    const ref = buttonOf(await finished(h.fake, rerolled.ts), 'reroll').slice('vq1:reroll:'.length);
    expect((await h.stack.services.jobs.data(ref as `imagine:${string}`))?.origin).toMatchObject({
      user: bob,
    });
    expect(h.ephemeralTexts(bob)).toEqual([]);
  });
});
