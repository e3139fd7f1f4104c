// Real, unmodified Bolt (HTTP mode and Socket Mode) against the local fake Slack: proves the fake speaks
// Slack's wire formats well enough for Bolt, and that each platform rule the adapter must respect is
// enforced (rate limits, response_url uses, ack deadline, signatures, file access, async file sharing).
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
// Named imports: a default import is the exports object under Node and tsx, but Bolt's `default` (App) under vitest.
import { App, LogLevel, SocketModeReceiver } from '@slack/bolt';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  createManualClock,
  type FakeSlack,
  type FakeSlackOptions,
  startFakeSlack,
  withoutFiles,
} from '../../helpers/fake-slack/index.js';

type BoltApp = InstanceType<typeof App>;

// A 1x1 PNG: enough for the upload flow and for files.info's original_w/original_h.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

/** Bolt's logger interface, keeping lines for assertions instead of printing expected failures. */
function quietLogger() {
  const lines: string[] = [];
  let level = LogLevel.INFO;
  const keep =
    (tag: string) =>
    (...msg: unknown[]) =>
      lines.push(`${tag} ${msg.map(String).join(' ')}`);
  return {
    lines,
    debug: () => {},
    info: keep('info'),
    warn: keep('warn'),
    error: keep('error'),
    setLevel: (l: typeof level) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const fake = await startFakeSlack(options);
  cleanups.push(() => fake.close());
  return fake;
}

/** HTTP mode on an OS-chosen port and a custom endpoint path. */
async function httpApp(fake: FakeSlack, clientOptions: Record<string, unknown> = {}) {
  const logger = quietLogger();
  const app = new App({
    token: fake.botToken,
    signingSecret: fake.signingSecret,
    endpoints: '/hooks/slack',
    logger,
    clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, ...clientOptions },
    // Without it Bolt fires auth.test from the constructor and nobody awaits it before the first request.
    deferInitialization: true,
  });
  await app.init();
  const server = (await app.start({ port: 0, host: '127.0.0.1' })) as Server;
  cleanups.push(() => app.stop());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/slack`;
  return { app, url, logger };
}

/** Socket Mode; a short clientPingTimeout because Bolt waits that long before reconnecting. */
async function socketApp(fake: FakeSlack, register: (app: BoltApp) => void = () => {}) {
  const logger = quietLogger();
  const clientOptions = { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } };
  const receiver = new SocketModeReceiver({
    appToken: fake.appToken,
    logger,
    clientPingTimeout: 1000,
    installerOptions: { clientOptions },
  });
  const app = new App({ token: fake.botToken, receiver, logger, clientOptions, deferInitialization: true });
  await app.init();
  register(app);
  await app.start();
  cleanups.push(() => app.stop());
  return { app, logger };
}

describe('fake Slack with Bolt in HTTP mode', () => {
  it('starts (auth.test), acks /imagine, posts, updates, uploads a PNG shared later and sends file_shared', async () => {
    const fake = await fakeSlack();
    const { app, url } = await httpApp(fake);
    expect(fake.callsTo('auth.test')).toMatchObject([{ ok: true, token: 'bot' }]);

    const done = deferred<{ ts: string; fileId: string; earlyBlocksError: unknown }>();
    const shared = deferred<unknown>();
    app.event('file_shared', async ({ event }) => shared.resolve(event));
    app.command('/imagine', async ({ ack, command, client }) => {
      await ack();
      try {
        const posted = await client.chat.postMessage({ channel: command.channel_id, text: 'queued' });
        const ts = posted.ts ?? '';
        await client.chat.update({
          channel: command.channel_id,
          ts,
          text: 'step 1/2',
          blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `*${command.text}* step 1/2` } }],
        });
        const up = await client.filesUploadV2({
          channel_id: command.channel_id,
          thread_ts: ts,
          file: PNG,
          filename: 'final.png',
          initial_comment: 'done',
        });
        const fileId = (up.files[0] as { files?: { id?: string }[] }).files?.[0]?.id ?? '';
        // The file is not in the channel yet, so an image block naming it is refused.
        const earlyBlocksError = await client.chat
          .update({
            channel: command.channel_id,
            ts,
            text: 'final',
            blocks: [{ type: 'image', slack_file: { id: fileId }, alt_text: command.text }],
          })
          .catch((e: unknown) => e);
        done.resolve({ ts, fileId, earlyBlocksError });
      } catch (e) {
        done.reject(e);
      }
    });
    fake.deliverEventsTo({ url });

    const res = await fake.http.post(
      url,
      'slash_commands',
      fake.build.slashCommand({ command: '/imagine', text: 'a watercolor teacher' }),
    );
    expect(res).toMatchObject({ status: 200, timedOut: false });
    expect(res.latencyMs).toBeLessThan(3000);

    const { ts, fileId, earlyBlocksError } = await done.promise;
    expect(earlyBlocksError).toMatchObject({
      code: 'slack_webapi_platform_error',
      data: { error: 'invalid_blocks' },
    });
    expect((earlyBlocksError as { data: { errors: string[] } }).data.errors).toEqual([
      'invalid slack file [json-pointer:/blocks/0/slack_file]',
    ]);
    expect(fake.message(fake.defaultChannelId, ts)).toMatchObject({
      text: 'step 1/2',
      blocks: [{ type: 'section', text: { text: '*a watercolor teacher* step 1/2' } }],
      edited: { user: fake.botUserId },
    });
    expect(fake.callsTo('files.getUploadURLExternal')[0]?.args).toMatchObject({
      filename: 'final.png',
      length: '70',
    });
    expect(fake.uploads).toEqual([
      { fileId, size: PNG.length, declaredLength: PNG.length, multipart: true, status: 200 },
    ]);
    expect(fake.file(fileId)?.bytes?.equals(PNG)).toBe(true);

    const file = await fake.waitForShare(fileId);
    expect(file.shares.public?.[fake.defaultChannelId]?.[0]).toMatchObject({ thread_ts: ts });
    expect(file).toMatchObject({ size: PNG.length, mimetype: 'image/png', original_w: 1, original_h: 1 });
    await expect(shared.promise).resolves.toMatchObject({ type: 'file_shared', file_id: fileId });
    const info = await app.client.files.info({ file: fileId });
    expect(info.file?.shares?.public?.[fake.defaultChannelId]).toHaveLength(1);
    await app.client.chat.update({
      channel: fake.defaultChannelId,
      ts,
      text: 'final',
      blocks: [{ type: 'image', slack_file: { id: fileId }, alt_text: 'a watercolor teacher' }],
    });
    expect(fake.message(fake.defaultChannelId, ts)?.blocks).toEqual([
      { type: 'image', slack_file: { id: fileId }, alt_text: 'a watercolor teacher' },
    ]);
  });

  it('answers 401 to forged, stale and unsigned requests, and echoes url_verification', async () => {
    const fake = await fakeSlack();
    const { app, url } = await httpApp(fake);
    let handled = 0;
    app.command('/whatis', async ({ ack }) => {
      handled += 1;
      await ack();
    });
    const payload = () => fake.build.slashCommand({ command: '/whatis' });
    expect((await fake.http.post(url, 'slash_commands', payload(), { signature: 'forged' })).status).toBe(
      401,
    );
    expect((await fake.http.post(url, 'slash_commands', payload(), { stale: true })).status).toBe(401);
    expect((await fake.http.post(url, 'slash_commands', payload(), { signature: 'none' })).status).toBe(401);
    expect(handled).toBe(0);
    expect((await fake.http.post(url, 'slash_commands', payload())).status).toBe(200);
    expect(handled).toBe(1);
    const check = fake.build.urlVerification('c-123');
    expect((await fake.http.post(url, 'events_api', check)).body).toEqual({ challenge: 'c-123' });
  });

  it('records a response that misses the ack deadline', async () => {
    const fake = await fakeSlack({ ackTimeoutMs: 300 });
    const { app, url } = await httpApp(fake);
    app.command('/slow', async ({ ack }) => {
      await new Promise((r) => setTimeout(r, 600));
      await ack();
    });
    const res = await fake.http.post(url, 'slash_commands', fake.build.slashCommand({ command: '/slow' }));
    expect(res).toMatchObject({ timedOut: true, status: undefined });
    expect(fake.http.timeouts).toHaveLength(1);
  });

  it('answers chat.update beyond the per-minute window with 429 and Retry-After', async () => {
    const clock = createManualClock();
    const fake = await fakeSlack({ clock, chatUpdatePerMinute: 3 });
    const { app } = await httpApp(fake, { rejectRateLimitedCalls: true });
    const { ts = '' } = await app.client.chat.postMessage({ channel: fake.defaultChannelId, text: '0' });
    for (const n of [1, 2, 3])
      await app.client.chat.update({ channel: fake.defaultChannelId, ts, text: `${n}` });
    // rejectRateLimitedCalls: the WebClient rejects at once with the server's Retry-After.
    await expect(
      app.client.chat.update({ channel: fake.defaultChannelId, ts, text: '4' }),
    ).rejects.toMatchObject({
      code: 'slack_webapi_rate_limited_error',
      retryAfter: 60,
    });
    expect(fake.rateLimited).toEqual([{ method: 'chat.update', at: clock.now(), retryAfterSec: 60 }]);
    expect(fake.callsTo('chat.update').map((c) => c.status)).toEqual([200, 200, 200, 429]);
    expect(fake.message(fake.defaultChannelId, ts)?.text).toBe('3');
    clock.advance(60_001);
    await app.client.chat.update({ channel: fake.defaultChannelId, ts, text: '5' });
    expect(fake.message(fake.defaultChannelId, ts)?.text).toBe('5');
  });

  it('shows what the default WebClient does on 429 with retries 0: waits Retry-After, then rejects', async () => {
    const fake = await fakeSlack({ rateLimits: { 'chat.update': { limit: 1, windowMs: 1000 } } });
    const { app } = await httpApp(fake);
    const { ts = '' } = await app.client.chat.postMessage({ channel: fake.defaultChannelId, text: '0' });
    await app.client.chat.update({ channel: fake.defaultChannelId, ts, text: '1' });
    const started = performance.now();
    const error = await app.client.chat
      .update({ channel: fake.defaultChannelId, ts, text: '2' })
      .catch((e) => e);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    expect(error).toMatchObject({ code: 'slack_webapi_request_error' });
    expect(String(error.original?.message)).toMatch(/rate limit was exceeded.*retry-after: 1/);
    expect(fake.rateLimited).toHaveLength(1);
  });

  it('lets a response_url be used 5 times, refuses the 6th, and expires it after 30 minutes', async () => {
    const clock = createManualClock();
    const fake = await fakeSlack({ clock });
    const { app, url } = await httpApp(fake);
    const results = deferred<unknown[]>();
    app.command('/imagesearch', async ({ ack, respond }) => {
      await ack();
      const out: unknown[] = [];
      for (let i = 1; i <= 6; i++)
        out.push(
          await respond({ text: `result ${i}` }).then(
            (r) => r.status,
            (e) => e,
          ),
        );
      results.resolve(out);
    });
    await fake.http.post(
      url,
      'slash_commands',
      fake.build.slashCommand({ command: '/imagesearch', text: 'a bicycle' }),
    );
    const out = await results.promise;
    expect(out.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(out[5]).toMatchObject({ code: 'slack_bolt_respond_error', statusCode: 404 });
    expect(fake.responseUrlPosts.map((p) => p.error ?? p.use)).toEqual([1, 2, 3, 4, 5, 'used_url']);
    expect(fake.ephemerals.filter((e) => e.via === 'response_url')).toHaveLength(5);

    const fresh = fake.build.slashCommand({ command: '/imagesearch' }).response_url;
    clock.advance(30 * 60_000 + 1);
    const late = await fetch(fresh, { method: 'POST', body: JSON.stringify({ text: 'late' }) });
    expect([late.status, await late.text()]).toEqual([404, 'expired_url']);
  });

  it('serves url_private to the bot token with files:read, and the HTML login page otherwise', async () => {
    const fake = await fakeSlack();
    const file = fake.addFile(PNG, { name: 'cat.png', channel: fake.defaultChannelId });
    const get = (headers: Record<string, string>) => fetch(file.url_private, { headers });
    const authed = await get({ authorization: `Bearer ${fake.botToken}` });
    expect(authed.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await authed.arrayBuffer()).equals(PNG)).toBe(true);

    const anonymous = await get({});
    expect([anonymous.status, anonymous.headers.get('content-type')]).toEqual([
      200,
      'text/html; charset=utf-8',
    ]);
    expect(await anonymous.text()).toContain('<html');
    fake.setScopes(fake.botToken, ['chat:write']);
    const noScope = await get({ authorization: `Bearer ${fake.botToken}` });
    expect(noScope.headers.get('content-type')).toMatch(/^text\/html/);
    expect(fake.downloads.map((d) => d.authorized)).toEqual([true, false, false]);
  });

  it('pages conversations.history 15 at a time and allows 1 call a minute', async () => {
    const clock = createManualClock();
    const fake = await fakeSlack({ clock });
    const { app } = await httpApp(fake, { rejectRateLimitedCalls: true });
    const seeded = Array.from({ length: 20 }, (_, i) =>
      fake.addFile(PNG, { name: `img-${i}.png`, channel: fake.defaultChannelId }),
    );
    const first = await app.client.conversations.history({ channel: fake.defaultChannelId, limit: 100 });
    expect(first.messages).toHaveLength(15);
    expect(first.has_more).toBe(true);
    expect(first.messages?.[0]?.files?.[0]?.id).toBe(seeded[19]?.id);
    const cursor = first.response_metadata?.next_cursor ?? '';
    await expect(
      app.client.conversations.history({ channel: fake.defaultChannelId, cursor }),
    ).rejects.toMatchObject({ code: 'slack_webapi_rate_limited_error', retryAfter: 60 });
    clock.advance(60_000);
    const second = await app.client.conversations.history({ channel: fake.defaultChannelId, cursor });
    expect(second.has_more).toBe(false);
    const ids = [...(first.messages ?? []), ...(second.messages ?? [])].map((m) => m.files?.[0]?.id);
    expect(ids).toEqual(seeded.map((f) => f.id).reverse());
  });

  it('checks Block Kit: 50 blocks, alt_text, and no url_private as image_url', async () => {
    const fake = await fakeSlack();
    const { app } = await httpApp(fake);
    const file = fake.addFile(PNG, { name: 'a.png', channel: fake.defaultChannelId });
    const post = (blocks: unknown[]) =>
      app.client.chat
        .postMessage({ channel: fake.defaultChannelId, text: 'x', blocks: blocks as never })
        .then(
          () => [],
          (e: { data?: { errors?: string[] } }) => e.data?.errors,
        );
    const divider = { type: 'divider' };
    expect(await post(Array(50).fill(divider))).toEqual([]);
    expect(await post(Array(51).fill(divider))).toEqual([
      'no more than 50 items allowed [json-pointer:/blocks]',
    ]);
    expect(await post([{ type: 'image', image_url: 'https://example.com/a.png' }])).toEqual([
      'missing required field: alt_text [json-pointer:/blocks/0/alt_text]',
    ]);
    expect(await post([{ type: 'image', image_url: file.url_private, alt_text: 'a' }])).toEqual([
      'downloading image failed [json-pointer:/blocks/0/image_url]',
    ]);
    expect(await post([{ type: 'image', slack_file: { id: file.id }, alt_text: 'a' }])).toEqual([]);
  });

  it('runs the upload flow by hand: declared length enforced, raw body, no share without a channel', async () => {
    const fake = await fakeSlack();
    const { app } = await httpApp(fake);
    // Slack reads this method's form fields only; a JSON body arrives empty.
    const asJson = await fetch(`${fake.apiUrl}files.getUploadURLExternal`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fake.botToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ filename: 'a.png', length: PNG.length }),
    });
    expect(await asJson.json()).toMatchObject({ ok: false, error: 'invalid_arguments' });

    const { upload_url = '', file_id = '' } = await app.client.files.getUploadURLExternal({
      filename: 'a.png',
      length: PNG.length,
    });
    await expect(
      app.client.files.completeUploadExternal({
        files: [{ id: file_id }],
        channel_id: fake.defaultChannelId,
      }),
    ).rejects.toMatchObject({ data: { error: 'file_not_found' } });
    const short = await fetch(upload_url, { method: 'POST', body: PNG.subarray(1) });
    expect(short.status).toBe(400);
    const raw = await fetch(upload_url, { method: 'POST', body: PNG });
    expect([raw.status, await raw.text()]).toEqual([200, `OK - ${PNG.length}`]);
    expect(fake.uploads.map((u) => [u.size, u.multipart, u.status])).toEqual([
      [PNG.length - 1, false, 400],
      [PNG.length, false, 200],
    ]);
    const done = await app.client.files.completeUploadExternal({ files: [{ id: file_id, title: 'A' }] });
    expect(done.files?.[0]).toMatchObject({ id: file_id, title: 'A', shares: {} });
    await new Promise((r) => setTimeout(r, 300));
    expect((await app.client.files.info({ file: file_id })).file?.shares).toEqual({});
    await expect(
      app.client.chat.postMessage({
        channel: fake.defaultChannelId,
        text: 'x',
        blocks: [{ type: 'image', slack_file: { id: file_id }, alt_text: 'a' }],
      }),
    ).rejects.toMatchObject({ data: { error: 'invalid_blocks' } });

    await app.client.files.delete({ file: file_id });
    await expect(app.client.files.info({ file: file_id })).rejects.toMatchObject({
      data: { error: 'file_deleted' },
    });
    expect(fake.deliveredEvents).toMatchObject([{ event: { type: 'file_deleted', file_id }, via: 'none' }]);
    const { message_ts: ts = '' } = await app.client.chat.postEphemeral({
      channel: fake.defaultChannelId,
      user: fake.defaultUserId,
      text: 'only you',
    });
    expect(fake.ephemerals).toMatchObject([
      { message_ts: ts, user: fake.defaultUserId, via: 'chat.postEphemeral' },
    ]);
    await expect(
      app.client.chat.update({ channel: fake.defaultChannelId, ts, text: 'x' }),
    ).rejects.toMatchObject({
      data: { error: 'message_not_found' },
    });
  });

  it('checks tokens and scopes', async () => {
    const fake = await fakeSlack();
    const { app } = await httpApp(fake);
    await expect(app.client.auth.test({ token: 'xoxb-wrong' })).rejects.toMatchObject({
      data: { error: 'invalid_auth' },
    });
    await expect(
      app.client.chat.postMessage({ token: fake.appToken, channel: fake.defaultChannelId, text: 'x' }),
    ).rejects.toMatchObject({ data: { error: 'not_allowed_token_type' } });
    fake.setScopes(fake.botToken, ['chat:write']);
    await expect(app.client.files.info({ file: 'F1' })).rejects.toMatchObject({
      data: { error: 'missing_scope', needed: 'files:read', provided: 'chat:write' },
    });
    await expect(app.client.chat.postMessage({ channel: 'C0RANDOM', text: 'x' })).rejects.toMatchObject({
      data: { error: 'not_in_channel' },
    });
  });
});

describe('fake Slack with Bolt in Socket Mode', () => {
  it('connects with the app token, acks envelopes with their latency, and runs events and actions', async () => {
    const fake = await fakeSlack();
    const seen = deferred<string>();
    const downloaded = deferred<Buffer>();
    const replaced = deferred();
    const { app } = await socketApp(fake, (a) => {
      a.command('/imagine', async ({ ack, command, client }) => {
        await ack();
        await client.chat.postMessage({
          channel: command.channel_id,
          text: 'queued',
          blocks: [
            { type: 'section', text: { type: 'mrkdwn', text: 'queued' } },
            {
              type: 'actions',
              elements: [
                {
                  type: 'button',
                  action_id: 'cancel',
                  value: 'job-1',
                  text: { type: 'plain_text', text: 'Cancel' },
                },
              ],
            },
          ],
        });
      });
      a.action('cancel', async ({ ack, respond, body }) => {
        await ack();
        const value = 'actions' in body ? (body.actions[0] as { value?: string }).value : '';
        await respond({ replace_original: true, text: `cancelled ${value}` });
        replaced.resolve();
      });
      a.shortcut('what_is_this', async ({ ack, shortcut, client }) => {
        await ack();
        const files = 'message' in shortcut ? (shortcut.message.files ?? []) : [];
        const res = await fetch(files[0]?.url_private ?? '', {
          headers: { authorization: `Bearer ${client.token}` },
        });
        downloaded.resolve(Buffer.from(await res.arrayBuffer()));
      });
      a.event('message', async ({ event }) => seen.resolve('subtype' in event ? String(event.subtype) : ''));
      a.event('app_home_opened', async ({ event, client }) => {
        await client.views.publish({
          user_id: event.user,
          view: {
            type: 'home',
            blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'Recent images' } }],
          },
        });
      });
    });
    expect(fake.callsTo('auth.test')).toHaveLength(1);
    expect(fake.callsTo('apps.connections.open')).toMatchObject([{ ok: true, token: 'app' }]);
    expect(fake.socket.connected).toBe(true);

    const ack = await fake.socket.send(
      'slash_commands',
      fake.build.slashCommand({ command: '/imagine', text: 'a fox' }),
    );
    expect(ack).toMatchObject({ acked: true, payload: {} });
    if (!ack.acked) throw new Error('not acked');
    expect(ack.latencyMs).toBeGreaterThan(0);
    expect(ack.latencyMs).toBeLessThan(3000);
    expect(fake.socket.acks).toHaveLength(1);

    const message = await fake.waitFor(() =>
      fake.messages(fake.defaultChannelId).find((m) => m.text === 'queued'),
    );
    await fake.socket.send(
      'interactive',
      fake.build.blockActions({ action_id: 'cancel', value: 'job-1', message }),
    );
    await replaced.promise;
    expect(fake.message(fake.defaultChannelId, message.ts)).toMatchObject({ text: 'cancelled job-1' });
    expect(fake.message(fake.defaultChannelId, message.ts)?.blocks).toBeUndefined();

    const file = fake.addFile(PNG, { name: 'cat.png', channel: fake.defaultChannelId });
    const withFile = fake.messages(fake.defaultChannelId).find((m) => m.files?.[0]?.id === file.id);
    if (withFile === undefined) throw new Error('seeded message missing');
    await fake.socket.send(
      'interactive',
      fake.build.messageAction({ callback_id: 'what_is_this', message: withFile }),
    );
    expect((await downloaded.promise).equals(PNG)).toBe(true);

    await fake.socket.sendEvent(fake.build.events.message({ text: 'look', files: [file] }));
    expect(await seen.promise).toBe('file_share');
    await fake.socket.sendEvent(fake.build.events.appHomeOpened());
    await fake.waitFor(() => fake.homeView(fake.defaultUserId));
    expect(fake.homeView(fake.defaultUserId)?.view).toMatchObject({ type: 'home' });
    expect(app.client.token).toBe(fake.botToken);
  });

  it('delivers every payload builder to the Bolt listener it is meant for', async () => {
    const clock = createManualClock();
    const fake = await fakeSlack({ clock });
    const seen: string[] = [];
    const opened = deferred<unknown[]>();
    await socketApp(fake, (a) => {
      a.shortcut({ callback_id: 'remix', type: 'shortcut' }, async ({ ack, shortcut, client }) => {
        await ack();
        seen.push('shortcut');
        const view = {
          type: 'modal' as const,
          callback_id: 'remix_modal',
          title: { type: 'plain_text' as const, text: 'Remix' },
          blocks: [],
        };
        const first = await client.views.open({ trigger_id: shortcut.trigger_id, view }).then(
          (r) => r.ok,
          (e: { data?: { error?: string } }) => e.data?.error,
        );
        // A trigger_id opens one view within 3 seconds.
        const again = await client.views
          .open({ trigger_id: shortcut.trigger_id, view })
          .catch((e) => e.data?.error);
        opened.resolve([first, again]);
      });
      a.view('remix_modal', async ({ ack, view }) => {
        await ack();
        seen.push(`view:${(view.state.values.prompt?.text as { value?: string } | undefined)?.value}`);
      });
      a.event('message', async ({ event }) => {
        seen.push(`message:${'subtype' in event ? event.subtype : ''}`);
      });
      a.event('file_deleted', async () => {
        seen.push('file_deleted');
      });
      a.event('member_joined_channel', async () => {
        seen.push('member_joined_channel');
      });
    });
    await fake.socket.send('interactive', fake.build.shortcut({ callback_id: 'remix' }));
    expect(await opened.promise).toEqual([true, 'invalid_trigger_id']);
    const expired = fake.build.shortcut({ callback_id: 'other' }).trigger_id;
    clock.advance(3001);
    await expect(
      fetch(`${fake.apiUrl}views.open`, {
        method: 'POST',
        headers: { authorization: `Bearer ${fake.botToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          trigger_id: expired,
          view: { type: 'modal', title: { type: 'plain_text', text: 'x' } },
        }),
      }).then((r) => r.json()),
    ).resolves.toMatchObject({ ok: false, error: 'expired_trigger_id' });

    await fake.socket.send(
      'interactive',
      fake.build.viewSubmission({
        callback_id: 'remix_modal',
        values: { prompt: { text: { type: 'plain_text_input', value: 'a red fox' } } },
      }),
    );
    const file = fake.addFile(PNG, { name: 'a.png', channel: fake.defaultChannelId });
    const original = fake.messages(fake.defaultChannelId).find((m) => m.files?.[0]?.id === file.id);
    if (original === undefined) throw new Error('seeded message missing');
    const { events } = fake.build;
    await fake.socket.sendEvent(
      events.messageChanged({ message: withoutFiles(original), previous_message: original }),
    );
    await fake.socket.sendEvent(events.messageDeleted({ previous_message: original }));
    await fake.socket.sendEvent(
      events.fileDeleted({ file_id: file.id, channel_ids: [fake.defaultChannelId] }),
    );
    await fake.socket.sendEvent(events.memberJoinedChannel());
    await fake.waitFor(() => seen.length >= 6);
    expect(seen).toEqual([
      'shortcut',
      'view:a red fox',
      'message:message_changed',
      'message:message_deleted',
      'file_deleted',
      'member_joined_channel',
    ]);
  });

  it('records an envelope the app does not ack in time', async () => {
    const fake = await fakeSlack({ ackTimeoutMs: 200 });
    await socketApp(fake, (a) => {
      a.command('/slow', async ({ ack }) => {
        await new Promise((r) => setTimeout(r, 400));
        await ack();
      });
    });
    const outcome = await fake.socket.send('slash_commands', fake.build.slashCommand({ command: '/slow' }));
    expect(outcome).toMatchObject({ acked: false, timedOut: true });
    expect(fake.socket.timeouts).toMatchObject([
      { type: 'slash_commands', attempt: 0, slackWouldRetry: false },
    ]);
    await fake.waitFor(() => fake.socket.acks[0]);
    expect(fake.socket.acks[0]).toMatchObject({ late: true });
  });

  it('retries an unacked events_api envelope with retry_attempt (seen from a raw WebSocket client)', async () => {
    // Bolt acks events itself before any listener runs, so a bare client plays the slow app here.
    const fake = await fakeSlack({ ackTimeoutMs: 150, retryUnackedEvents: true });
    const opened = await fetch(`${fake.apiUrl}apps.connections.open`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fake.appToken}` },
    }).then((r) => r.json() as Promise<{ url: string }>);
    const ws = new WebSocket(opened.url);
    cleanups.push(async () => ws.terminate());
    const frames: { type: string; envelope_id?: string; retry_attempt?: number; retry_reason?: string }[] =
      [];
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data));
      frames.push(frame);
      if (frame.type === 'events_api' && frame.retry_attempt === 1) {
        ws.send(JSON.stringify({ envelope_id: frame.envelope_id }));
      }
    });
    await fake.socket.waitForConnection();
    const first = await fake.socket.sendEvent(fake.build.events.appHomeOpened());
    expect(first).toMatchObject({ acked: false });
    await fake.waitFor(() => fake.socket.acks[0]);
    expect(frames.map((f) => [f.type, f.retry_attempt, f.retry_reason])).toEqual([
      ['hello', undefined, undefined],
      ['events_api', 0, ''],
      ['events_api', 1, 'timeout'],
    ]);
    expect(fake.socket.timeouts).toMatchObject([{ type: 'events_api', attempt: 0, slackWouldRetry: true }]);
    expect(fake.socket.acks).toMatchObject([{ late: false, payload: {} }]);
    // A used ticket does not open a second connection.
    const reused = new WebSocket(opened.url);
    await expect(new Promise((_, reject) => reused.on('error', reject))).rejects.toThrow(/401/);
  });

  it('reconnects after a refresh_requested disconnect and after the server drops the socket', async () => {
    const fake = await fakeSlack();
    let commands = 0;
    await socketApp(fake, (a) => {
      a.command('/ping', async ({ ack }) => {
        commands += 1;
        await ack();
      });
    });
    await fake.socket.disconnect('refresh_requested');
    await fake.socket.waitForConnection(2);
    await fake.socket.drop();
    await fake.socket.waitForConnection(3);
    expect(fake.callsTo('apps.connections.open')).toHaveLength(3);
    const ack = await fake.socket.send('slash_commands', fake.build.slashCommand({ command: '/ping' }));
    expect([ack.acked, commands]).toEqual([true, 1]);
  });
});
