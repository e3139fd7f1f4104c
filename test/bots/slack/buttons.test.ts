// The buttons of a job's message against the fake Slack and a real worker: Re-roll, Variations and
// Continue start new messages, Timelapse posts into the thread, Cancel is the requester's or an
// admin's, and after a restart a new process re-attaches to the job and its buttons still work.
import { describe, expect, it } from 'vitest';
import { useBotStack } from '../../helpers/bot-stack.js';
import {
  actionIdsOf,
  buttonOf,
  finished,
  imageFilesOf,
  jobMessages,
  nthJobMessage,
  useSlackHarness,
} from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

/** Makes a fake user a workspace admin (the fake's users have no such field until set). */
function makeAdmin(h: { fake: { store: { users: Map<string, object> } } }, user: string): void {
  const u = h.fake.store.users.get(user);
  if (!u) throw new Error(`no user ${user}`);
  Object.assign(u, { is_admin: true });
}

describe('the buttons of a job message', () => {
  it('Re-roll, Variations and Continue start new messages; Timelapse posts into the thread', async () => {
    const h = await slack.start({ stack: { imagineQuota: { concurrent: 5, perWindow: 50 } } });
    await h.command('/imagine', 'a blue pear --steps 3 --size 64 --seed 7');
    const first = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, first.ts);
    for (const action of ['reroll', 'variations', 'continue'])
      expect(await h.press(done, buttonOf(done, action))).toBe(200);
    const [reroll, variation, cont] = await Promise.all([2, 3, 4].map((n) => nthJobMessage(h.fake, n)));
    const results = await Promise.all([reroll, variation, cont].map((m) => finished(h.fake, m?.ts ?? '')));
    // The three presses are handled at once, so their messages may come in any order.
    const texts = results.map((m) => m.text ?? '');
    // Continue resumes the saved state: same seed, 50 more steps.
    expect(texts.filter((t) => /a blue pear: Seed 7 · 53 steps · 64×64/.test(t))).toHaveLength(1);
    // Re-roll (a new seed) and Variations (a new seed, from the latent): 3 steps each.
    const short = texts.filter((t) => /a blue pear: Seed \d+ · 3 steps · 64×64/.test(t));
    expect(short).toHaveLength(2);
    expect(short.some((t) => !/Seed 7 /.test(t))).toBe(true);

    const before = h.fake.callsTo('files.completeUploadExternal').length;
    expect(await h.press(done, buttonOf(done, 'timelapse'))).toBe(200);
    await h.fake.waitFor(() => h.fake.callsTo('files.completeUploadExternal').length > before);
    const upload = h.fake.callsTo('files.completeUploadExternal').at(-1);
    expect(upload?.args).toMatchObject({ channel_id: h.channel, thread_ts: first.ts });
    expect(h.ephemeralTexts()).toEqual([]);
  });

  it('Cancel is the requester’s or an admin’s; anyone else is told in private', async () => {
    const h = await slack.start({ mode: 'http', stack: { imagineQuota: { concurrent: 5, perWindow: 50 } } });
    const bob = h.fake.addUser({ name: 'bob' }).id;
    const carol = h.fake.addUser({ name: 'carol' }).id;
    makeAdmin(h, carol);
    await h.command('/imagine', 'a slow river --steps 400 --size 64');
    await h.command('/imagine', 'a slow lake --steps 400 --size 64');
    const river = await nthJobMessage(h.fake, 1);
    const lake = await nthJobMessage(h.fake, 2);
    const [riverCancel, lakeCancel] = [buttonOf(river, 'cancel'), buttonOf(lake, 'cancel')];

    await h.press(river, riverCancel, { user_id: bob });
    expect(await h.nextEphemeral(1)).toBe(
      'Only the person who started this job (or a moderator) can do that.',
    );
    expect(h.ephemeralTexts(bob)).toHaveLength(1);

    await h.press(river, riverCancel);
    await h.press(lake, lakeCancel, { user_id: carol });
    for (const m of [river, lake])
      await h.fake.waitFor(() => /Cancelled\.$/.test(h.fake.message(h.channel, m.ts)?.text ?? ''), 15_000);
    expect(actionIdsOf(h.fake.message(h.channel, river.ts))).toEqual([]);
    expect(h.ephemeralTexts()).toEqual([]);
  });

  it('goes on after a restart: a new process re-attaches, posts the result once, and its buttons work', async () => {
    const h = await slack.start();
    await h.command('/imagine', 'a long road --steps 50 --size 64 --seed 11');
    const message = await nthJobMessage(h.fake, 1);
    await h.fake.waitFor(
      () => /Step \d+\/50/.test(h.fake.message(h.channel, message.ts)?.text ?? ''),
      15_000,
    );
    const bot = await h.restart();
    expect(bot.reattached).toHaveLength(1);
    const done = await finished(h.fake, message.ts);
    expect(done.text).toMatch(/Seed 11 · 50 steps/);
    // Exactly once: one final file, one message carrying it.
    await new Promise((r) => setTimeout(r, 500));
    const finals = [...h.fake.store.files.values()].filter(
      (r) => r.file.user === h.fake.botUserId && !r.deleted,
    );
    expect(finals.map((r) => r.file.id)).toEqual(imageFilesOf(h.fake.message(h.channel, message.ts)));
    expect(jobMessages(h.fake)).toHaveLength(1);

    await h.press(done, buttonOf(done, 'reroll'));
    const next = await nthJobMessage(h.fake, 2);
    expect((await finished(h.fake, next.ts)).text).toMatch(/Seed \d+ · 50 steps/);
  });
});
