// The platform edges of the Slack adapter: HTTP mode refuses forged and stale signatures, both modes
// ack every kind of payload well inside 3 s, the App Home shows a person's jobs, quota and (for
// admins) the workspace settings, and a flagged result stays out of the channel behind Show image.
import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/shared/queues.js';
import { gate, holdAfterFirstPreview } from '../../helpers/blob-gate.js';
import { useBotStack } from '../../helpers/bot-stack.js';
import type { StoredView } from '../../helpers/fake-slack/index.js';
import {
  actionIdsOf,
  buttonOf,
  finished,
  type Harness,
  imageFilesOf,
  latencyOf,
  type Mode,
  nthJobMessage,
  useSlackHarness,
} from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

describe('HTTP mode', () => {
  it('answers 401 to forged, stale and unsigned requests and handles none of them', async () => {
    const h = await slack.start({ mode: 'http' });
    const url = `http://127.0.0.1:${h.bot.port}/slack/events`;
    const command = () =>
      h.fake.build.slashCommand({ command: '/imagine', text: 'a forged cat --steps 3 --size 64' });
    for (const options of [
      { signature: 'forged' as const },
      { stale: true },
      { signature: 'none' as const },
    ]) {
      expect((await h.fake.http.post(url, 'slash_commands', command(), options)).status).toBe(401);
    }
    const event = h.fake.build.eventCallback(h.fake.build.events.appHomeOpened());
    expect((await h.fake.http.post(url, 'events_api', event, { signature: 'forged' })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.fake.messages(h.channel)).toEqual([]);
    expect(h.fake.responseUrlPosts).toEqual([]);
    expect(h.fake.homeView(h.fake.defaultUserId)).toBeUndefined();

    expect((await h.fake.http.post(url, 'slash_commands', command())).status).toBe(200);
    await nthJobMessage(h.fake, 1);
    const check = h.fake.build.urlVerification('c-42');
    expect((await h.fake.http.post(url, 'events_api', check)).body).toEqual({ challenge: 'c-42' });
  });
});

describe.each<Mode>(['socket', 'http'])('acks in %s mode', (mode) => {
  it('acks commands, buttons, shortcuts and events well inside 3 s, even all at once', async () => {
    const h = await slack.start({ mode });
    const file = h.fake.addFile(Buffer.from('x'), { name: 'a.txt', channel: h.channel });
    const message = h.fake.messages(h.channel).find((m) => m.files?.[0]?.id === file.id);
    if (!message) throw new Error('no message');
    const { build } = h.fake;
    const outcomes = await Promise.all([
      h.send(
        'slash_commands',
        build.slashCommand({ command: '/imagine', text: 'a quick fox --steps 3 --size 64' }),
      ),
      h.send('slash_commands', build.slashCommand({ command: '/whatis', text: 'help' })),
      h.send('slash_commands', build.slashCommand({ command: '/imagesearch', text: 'a fox' })),
      h.send('interactive', build.messageAction({ callback_id: 'what_is_this', message })),
      h.send('interactive', build.blockActions({ action_id: 'vq1:cancel:imagine:nope', message })),
      h.send('events_api', build.eventCallback(build.events.appHomeOpened())),
      h.send('events_api', build.eventCallback(build.events.message({ text: 'hi', files: [file] }))),
    ]);
    const latencies = outcomes.map(latencyOf);
    expect(Math.max(...latencies)).toBeLessThan(1500);
    expect(mode === 'socket' ? h.fake.socket.timeouts : h.fake.http.timeouts).toEqual([]);
    console.log(`[${mode}] ack latencies (ms): ${latencies.map((l) => l.toFixed(0)).join(', ')}`);
    await nthJobMessage(h.fake, 1);
    await h.fake.waitFor(() => h.fake.ephemerals.length >= 4, 15_000);
  });
});

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function homeText(view: StoredView | undefined): string {
  return JSON.stringify(view?.view.blocks ?? []);
}

/** A static_select change in the App Home, as Slack sends it. */
function selectInHome(h: Harness, actionId: string, value: string, user = h.fake.defaultUserId) {
  const base = h.fake.build.blockActions({ action_id: actionId, user_id: user });
  const view = h.fake.homeView(user);
  return h.send('interactive', {
    ...base,
    container: { type: 'view', view_id: view?.id ?? 'V0' },
    view: { id: view?.id, type: 'home', blocks: view?.view.blocks ?? [] },
    channel: undefined,
    actions: [
      {
        type: 'static_select',
        action_id: actionId,
        block_id: 'b1',
        selected_option: { text: { type: 'plain_text', text: value }, value },
        action_ts: '1.2',
      },
    ],
  });
}

describe('App Home', () => {
  it('shows running and recent jobs with their state and the quota; admins change workspace settings', async () => {
    const h = await slack.start({ stack: { imagineQuota: { concurrent: 2, perWindow: 30 } } });
    const alice = h.fake.defaultUserId;
    await h.command('/imagine', 'a slow tide --steps 400 --size 64');
    const running = await nthJobMessage(h.fake, 1);
    // The message's address reaches the in-flight entry just after chat.postMessage answers.
    const { runner } = h.stack.services;
    await eventually(
      async () => (await runner.inflightOf('slack', alice, h.fake.teamId))[0]?.reply.ts !== undefined,
    );
    await h.event(h.fake.build.events.appHomeOpened());
    await h.fake.waitFor(() => h.fake.homeView(alice));
    const first = homeText(h.fake.homeView(alice));
    expect(first).toContain('a slow tide');
    expect(first).toMatch(/Queued|Starting|Step \d+\/400/);
    expect(first).toContain('Images you can start now: 1 of 2 at a time, 29 of 30 left this hour.');
    expect(first).not.toContain('Workspace settings');
    expect(first).toContain(`/archives/${h.channel}/p${running.ts.replace('.', '')}`);

    // Not an admin: a forged settings change is refused in words, and nothing changes.
    await selectInHome(h, 'vqh:safety', 'off');
    await h.fake.waitFor(() => homeText(h.fake.homeView(alice)).includes('Only server or workspace admins'));
    expect(await h.stack.services.settings.workspace('slack', h.fake.teamId)).toEqual({});

    await h.press(running, buttonOf(running, 'cancel'));
    await h.fake.waitFor(
      () => /Cancelled\.$/.test(h.fake.message(h.channel, running.ts)?.text ?? ''),
      15_000,
    );
    await eventually(async () => (await runner.inflightOf('slack', alice, h.fake.teamId)).length === 0);
    const user = h.fake.store.users.get(alice);
    if (user) Object.assign(user, { is_admin: true });
    // The admin check is cached for a few minutes; a fresh process asks again.
    await h.restart();
    await h.event(h.fake.build.events.appHomeOpened());
    await h.fake.waitFor(() => homeText(h.fake.homeView(alice)).includes('Workspace settings'));
    const later = homeText(h.fake.homeView(alice));
    expect(later).toContain('Nothing running.');
    expect(later).toMatch(/a slow tide\*?[^"]* · Cancelled\./);

    await selectInHome(h, 'vqh:safety', 'block');
    await h.fake.waitFor(() => homeText(h.fake.homeView(alice)).includes('Saved.'));
    await selectInHome(h, 'vqh:preset', 'draft');
    const { settings } = h.stack.services;
    await eventually(async () => (await settings.workspace('slack', h.fake.teamId)).preset === 'draft');
    await h.fake.waitFor(() => h.fake.store.homeViewHistory.filter((v) => v.user === alice).length >= 5);
    expect(homeText(h.fake.homeView(alice))).toContain(
      '"initial_option":{"text":{"type":"plain_text","text":"draft"',
    );
    expect(await settings.workspace('slack', h.fake.teamId)).toEqual({
      safetyMode: 'block',
      preset: 'draft',
    });
  });
});

describe('a flagged result', () => {
  it('stays out of the channel behind Show image, which sends it by direct message', {
    timeout: 120_000,
  }, async () => {
    // The worker waits after its first preview until the bot below is gone: otherwise 40 steps
    // finish within a second on quiet cores, and the first bot posts the unflagged final itself.
    const botGone = gate();
    const h = await slack.start({
      stack: {
        safetyMode: 'spoiler',
        wrapWorkerBlobs: (blobs) => holdAfterFirstPreview(blobs, () => botGone.opened),
      },
    });
    await h.command('/imagine', 'a questionable painting --steps 40 --size 64');
    const message = await nthJobMessage(h.fake, 1);
    // The bot goes away; the job ends meanwhile and the worker's verdict (tiny CLIP gives none) says flagged.
    await h.bot.close();
    botGone.open();
    const [entry] = await h.stack.services.runner.inflightOf('slack', h.fake.defaultUserId, h.fake.teamId);
    if (!entry) throw new Error('no job in flight');
    const result = await h.stack.services.jobs.result(entry.jobId as `imagine:${string}`, {
      timeoutMs: 90_000,
    });
    const bullKey = keys.bullJob(h.stack.prefix, 'imagine', entry.jobId.slice('imagine:'.length));
    await h.stack.services.connection.hset(
      bullKey,
      'returnvalue',
      JSON.stringify({ ...result, safety: { flagged: true, score: 0.9, category: 'test' } }),
    );
    await h.restart();
    const done = await finished(h.fake, message.ts);
    expect(imageFilesOf(done)).toEqual([]);
    expect(done.blocks?.[1]).toMatchObject({
      type: 'context',
      elements: [{ text: expect.stringContaining('not shown in the channel') }],
    });
    expect(
      h.fake.callsTo('files.completeUploadExternal').filter((c) => c.args.channel_id === h.channel),
    ).toHaveLength(
      h.fake.callsTo('files.completeUploadExternal').filter((c) => c.args.channel_id === h.channel).length,
    );
    const channelFiles = [...h.fake.store.files.values()].filter(
      (r) => !r.deleted && r.file.user === h.fake.botUserId && r.file.channels.includes(h.channel),
    );
    expect(channelFiles).toEqual([]);

    const show = actionIdsOf(done).find((id) => id.startsWith('vqs:show:'));
    expect(show).toBeDefined();
    await h.press(done, show ?? '');
    expect(await h.nextEphemeral(1)).toBe('I sent it to you in a direct message.');
    const dm = [...h.fake.store.channels.values()].find((c) => c.is_im && c.user === h.fake.defaultUserId);
    expect(dm).toBeDefined();
    const shared = await h.fake.waitFor(() =>
      [...h.fake.store.files.values()].find((r) => r.file.ims.includes(dm?.id ?? '')),
    );
    expect(shared.bytes?.subarray(1, 4).toString()).toBe('PNG');
  });
});
