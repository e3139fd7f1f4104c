// /imagine end to end: real Bolt against the fake Slack, a real worker on the tiny models. The job's
// message is posted, edited through chat.update within the edit budget, shows previews without
// leaving files behind, and ends with the final image uploaded into its thread, shared before any
// block names it; refusals are private sentences (buttons and restarts: buttons.test.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { useBotStack } from '../../helpers/bot-stack.js';
import {
  actionIdsOf,
  botMessages,
  buttonOf,
  finished,
  imageFilesOf,
  jobMessages,
  latencyOf,
  type Mode,
  nthJobMessage,
  useSlackHarness,
} from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

describe.each<Mode>(['socket', 'http'])('/imagine in %s mode', (mode) => {
  it('acks at once, posts one message, edits it as it goes and ends with the image from its thread', async () => {
    const h = await slack.start({ mode });
    const outcome = await h.send(
      'slash_commands',
      h.fake.build.slashCommand({ command: '/imagine', text: 'a red apple --steps 25 --size 64 --seed 3' }),
    );
    expect(latencyOf(outcome)).toBeLessThan(1000);
    const message = await h.fake.waitFor(() =>
      botMessages(h.fake).find((m) => m.thread_ts === undefined || m.thread_ts === m.ts),
    );
    expect(message.text).toContain('a red apple');
    expect(actionIdsOf(message)).toEqual([expect.stringMatching(/^vq1:cancel:imagine:/)]);

    // The result: the message names the uploaded file, which was shared in its thread first.
    const done = await h.fake.waitFor(() => {
      const m = h.fake.message(h.channel, message.ts);
      return actionIdsOf(m).some((id) => id.startsWith('vq1:reroll:')) ? m : undefined;
    }, 30_000);
    const [finalFile] = imageFilesOf(done);
    expect(finalFile).toBeDefined();
    const file = h.fake.file(finalFile ?? '');
    expect(file?.file.shares.public?.[h.channel]?.[0]).toMatchObject({ thread_ts: message.ts });
    expect(done?.text).toMatch(/Seed 3 · 25 steps · 64×64/);
    expect(actionIdsOf(done).map((id) => id.split(':')[1])).toEqual([
      'reroll',
      'variations',
      'continue',
      'timelapse',
    ]);

    // No block ever named a file before it was shared: every chat.update the fake accepted.
    const updates = h.fake.callsTo('chat.update');
    expect(updates.every((c) => c.ok)).toBe(true);
    // Previews came and went: one at a time, none left but the final image.
    const uploads = h.fake.callsTo('files.completeUploadExternal').length;
    expect(uploads).toBeGreaterThanOrEqual(2);
    const live = () =>
      [...h.fake.store.files.values()]
        .filter((r) => r.file.user === h.fake.botUserId && !r.deleted)
        .map((r) => r.file.id);
    await h.fake.waitFor(() => live().length === 1);
    expect(live()).toEqual([finalFile]);
    const thread = h.fake
      .messages(h.channel)
      .filter((m) => m.thread_ts === message.ts && m.ts !== message.ts);
    expect(thread.map((m) => m.files?.[0]?.id)).toEqual([finalFile]);
    // Only one message in the channel itself, and the response_url was never used for progress.
    expect(
      h.fake.messages(h.channel).filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts),
    ).toHaveLength(1);
    expect(h.fake.responseUrlPosts).toHaveLength(0);
    console.log(
      `[${mode}] ack ${latencyOf(outcome).toFixed(0)} ms, ${updates.length} chat.update, ${uploads} uploads`,
    );
  });
});

describe('acks first', () => {
  it('acks a command at once, and starts its work once the process has no other ack to send', async () => {
    const h = await slack.start({ mode: 'socket' });
    const acks = h.stack.services.acks;
    const other = {}; // a Discord interaction (or another request) not acked yet
    acks.arrived(other);
    const outcome = await h.send(
      'slash_commands',
      h.fake.build.slashCommand({ command: '/imagine', text: 'a kite --steps 8 --size 64' }),
    );
    expect(latencyOf(outcome)).toBeLessThan(1000);
    await sleep(200);
    expect(botMessages(h.fake)).toHaveLength(0); // acked, and nothing more yet
    expect(acks.waiting).toBe(1);
    acks.acked(other);
    await h.fake.waitFor(
      () => botMessages(h.fake).find((m) => actionIdsOf(m).some((id) => id.startsWith('vq1:reroll:'))),
      30_000,
    );
  });
});

describe('previews', () => {
  it('replaces its preview one at a time: shown once shared, deleted only once replaced', async () => {
    const h = await slack.start({ bot: { updatesPerMinute: 600 } });
    await h.command('/imagine', 'a yellow kite --steps 45 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    const done = await finished(h.fake, message.ts);
    const [finalFile] = imageFilesOf(done);
    const live = () =>
      [...h.fake.store.files.values()].filter((r) => r.file.user === h.fake.botUserId && !r.deleted);
    await h.fake.waitFor(() => live().length === 1);
    const blocksOf = (c: { args: Record<string, unknown> }) =>
      JSON.parse(String(c.args.blocks ?? '[]')) as { type: string; slack_file?: { id: string } }[];
    const order = h.fake.calls.filter((c) => c.method === 'chat.update' || c.method === 'files.delete');
    const shown: string[] = [];
    for (const [i, c] of order.entries()) {
      if (c.method !== 'chat.update') continue;
      const images = blocksOf(c).filter((b) => b.type === 'image');
      expect(images.length).toBeLessThanOrEqual(1);
      const id = images[0]?.slack_file?.id;
      if (id === undefined || id === shown.at(-1)) continue;
      // The one it replaces is still there when the new one is shown, and goes right after.
      const before = shown.at(-1);
      if (before !== undefined) {
        expect(order.slice(0, i).some((d) => d.method === 'files.delete' && d.args.file === before)).toBe(
          false,
        );
        expect(order.slice(i).some((d) => d.method === 'files.delete' && d.args.file === before)).toBe(true);
      }
      shown.push(id);
    }
    expect(shown.at(-1)).toBe(finalFile);
    expect(shown.length).toBeGreaterThanOrEqual(3);
    expect(shown.slice(0, -1).every((id) => h.fake.file(id)?.deleted)).toBe(true);
    // Their thread messages went too: the thread holds the final image only.
    const thread = h.fake
      .messages(h.channel)
      .filter((m) => m.thread_ts === message.ts && m.ts !== message.ts);
    expect(thread.map((m) => m.files?.[0]?.id)).toEqual([finalFile]);
  });
});

describe('refusals of /imagine, each a private sentence', () => {
  it('says what is wrong with flags, prompts and quota; posts nothing in the channel', async () => {
    const h = await slack.start({ stack: { imagineQuota: { concurrent: 1, perWindow: 30 } } });
    const cases: [string, string | RegExp][] = [
      ['a cat --sed 3', 'There is no `--sed` flag. Did you mean `--seed`?'],
      ['a cat --steps many', /^`--steps` takes /],
      ['a cat --size 100', /^`--size` takes /],
      [
        'a very long prompt '.repeat(60),
        'Your prompt has 1139 characters; the limit is 1000. Please shorten it.',
      ],
      ['a cat:', 'A weight in the prompt is not a number (write `text:1.5`). (at "a cat:")'],
    ];
    for (const [i, [text, expected]] of cases.entries()) {
      await h.command('/imagine', text);
      expect(await h.nextEphemeral(i + 1)).toEqual(
        typeof expected === 'string' ? expected : expect.stringMatching(expected),
      );
    }
    expect(jobMessages(h.fake)).toHaveLength(0);

    await h.command('/imagine', 'a first job --steps 400 --size 64');
    const running = await nthJobMessage(h.fake, 1);
    await h.command('/imagine', 'a second job --steps 3 --size 64');
    expect(await h.nextEphemeral(cases.length + 1)).toBe(
      'You already have 1 job running. Try again when one of them finishes.',
    );
    expect(jobMessages(h.fake)).toHaveLength(1);
    await h.press(running, buttonOf(running, 'cancel'));
    await h.fake.waitFor(
      () => /Cancelled\.$/.test(h.fake.message(h.channel, running.ts)?.text ?? ''),
      15_000,
    );
  });

  it('joins a public channel it was not in, and refuses where it cannot post', async () => {
    const h = await slack.start();
    const open = 'C0RANDOM';
    await h.command('/imagine', 'an open field --steps 3 --size 64', { channel_id: open });
    const posted = await nthJobMessage(h.fake, 1, open);
    expect(h.fake.callsTo('conversations.join')).toMatchObject([{ ok: true, args: { channel: open } }]);
    await finished(h.fake, posted.ts, open);

    const secret = h.fake.addChannel({ name: 'secret', is_private: true, is_member: false }).id;
    await h.command('/imagine', 'a hidden room --steps 3 --size 64', { channel_id: secret });
    expect(await h.nextEphemeral(1)).toBe(
      'The app is missing the permission for this. An admin needs to reinstall or re-invite it.',
    );
    expect(jobMessages(h.fake, secret)).toHaveLength(0);
  });
});
