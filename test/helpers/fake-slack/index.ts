// A local Slack that real, unmodified Bolt talks to over HTTP and WebSocket on 127.0.0.1: the Web API
// (web-api.ts), the file host for uploads and url_private downloads, response_url endpoints, Socket Mode
// (socket-mode.ts) and signed HTTP-mode deliveries (http-mode.ts), all over one workspace store.

import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type HttpDelivery, HttpModeClient, type HttpPostOptions } from './http-mode.js';
import { blocksOfArgs, downloadableImageUrls, fetchImageUrl, type ImageFetch } from './image-urls.js';
import { createPayloadBuilders, type ResponseTarget, type SlackEvent } from './payloads.js';
import {
  type Clock,
  checkBlocks,
  isRecord,
  type RateLimit,
  SlidingWindow,
  systemClock,
  takeUse,
} from './rules.js';
import { type AckOutcome, type AckRecord, type EnvelopeType, SocketModeServer } from './socket-mode.js';
import {
  type EphemeralMessage,
  type FileRecord,
  guessMimetype,
  hostedFile,
  pngSize,
  type SlackChannel,
  type SlackFile,
  type SlackMessage,
  type SlackUser,
  type StoredView,
  WorkspaceStore,
} from './store.js';
import { type ApiReply, createWebApi, permalink, type TokenInfo } from './web-api.js';

export type { HttpDelivery, HttpPostOptions } from './http-mode.js';
export type { ImageFetch } from './image-urls.js';
export type { PayloadBuilders } from './payloads.js';
export { type EventCallback, type SlackEvent, type SlashCommandPayload, withoutFiles } from './payloads.js';
export { type Clock, createManualClock, type ManualClock, type RateLimit } from './rules.js';
export { signV0 } from './signing.js';
export type { AckOutcome, AckRecord, EnvelopeRecord, EnvelopeType, TimeoutRecord } from './socket-mode.js';
export type {
  EphemeralMessage,
  FileRecord,
  SlackChannel,
  SlackFile,
  SlackMessage,
  SlackUser,
  StoredView,
} from './store.js';

/** Every scope the adapter uses; tests take some away with `setScopes`. */
export const DEFAULT_BOT_SCOPES = [
  'app_mentions:read',
  'channels:history',
  'channels:join',
  'channels:read',
  'chat:write',
  'commands',
  'files:read',
  'files:write',
  'groups:history',
  'groups:read',
  'im:history',
  'im:read',
  'users:read',
] as const;

export interface FakeSlackOptions {
  /** @defaultValue 'T0FAKE001' */
  teamId?: string;
  /** @defaultValue 'fake-team' */
  teamDomain?: string;
  /** @defaultValue 'U0BOT0001' */
  botUserId?: string;
  /** @defaultValue 'B0BOT0001' */
  botId?: string;
  /** @defaultValue 'A0APP0001' */
  appId?: string;
  /** @defaultValue a fresh `xoxb-...` */
  botToken?: string;
  /** @defaultValue a fresh `xapp-1-...` */
  appToken?: string;
  /** @defaultValue a fresh 32-byte hex string */
  signingSecret?: string;
  /** @defaultValue DEFAULT_BOT_SCOPES */
  botScopes?: readonly string[];
  /** Drives rate windows, response_url and trigger_id lifetimes, and message ts. @defaultValue the system clock */
  clock?: Clock;
  /** chat.update calls per minute per workspace (Slack's Tier 3 is about 50). @defaultValue 50 */
  chatUpdatePerMinute?: number;
  /**
   * conversations.history policy. 'limited': 1 call a minute and at most 15 messages a page, Slack's rule
   * since 2025-05-29 for commercially distributed non-Marketplace apps. 'tier3': 50 a minute, limit up to 999.
   * @defaultValue 'limited'
   */
  historyPolicy?: 'limited' | 'tier3';
  /** More or overriding per-method windows, e.g. `{ 'chat.postMessage': { limit: 1, windowMs: 1000 } }`. */
  rateLimits?: Record<string, RateLimit>;
  /** Real milliseconds between files.completeUploadExternal and the file's share in the channel. @defaultValue 150 */
  shareDelayMs?: number;
  /** Events the fake delivers when a share lands (to the target set by deliverEventsTo). @defaultValue ['file_shared'] */
  shareEvents?: readonly ('file_shared' | 'message')[];
  /** Socket Mode ack and HTTP response deadline, in real ms. @defaultValue 3000 */
  ackTimeoutMs?: number;
  /** Re-send unacked events_api envelopes as Slack does (up to 3 retries). @defaultValue false */
  retryUnackedEvents?: boolean;
  /** @defaultValue 5 */
  responseUrlMaxUses?: number;
  /** @defaultValue 30 minutes */
  responseUrlLifetimeMs?: number;
  /** @defaultValue 3000 */
  triggerLifetimeMs?: number;
  /** Blocks per message. @defaultValue 50 */
  maxBlocks?: number;
  /** Socket Mode server pings. @defaultValue 5000 */
  pingIntervalMs?: number;
  /** How long the fake waits for an image block's image_url to download, in real ms. @defaultValue 5000 */
  imageFetchTimeoutMs?: number;
  /**
   * Hosts (`host:port`) Slack's servers cannot connect to: Slack downloads from the internet, so a
   * store on a private network or this machine's loopback is out of its reach. The fake itself runs
   * on loopback and reaches everything else. @defaultValue none
   */
  unreachableImageHosts?: readonly string[];
}

export const DefaultFakeSlackOptions = {
  teamId: 'T0FAKE001',
  teamDomain: 'fake-team',
  botUserId: 'U0BOT0001',
  botId: 'B0BOT0001',
  appId: 'A0APP0001',
  botScopes: DEFAULT_BOT_SCOPES,
  clock: systemClock,
  chatUpdatePerMinute: 50,
  historyPolicy: 'limited',
  rateLimits: {},
  shareDelayMs: 150,
  shareEvents: ['file_shared'],
  ackTimeoutMs: 3000,
  retryUnackedEvents: false,
  responseUrlMaxUses: 5,
  responseUrlLifetimeMs: 30 * 60_000,
  triggerLifetimeMs: 3000,
  maxBlocks: 50,
  pingIntervalMs: 5000,
  imageFetchTimeoutMs: 5000,
  unreachableImageHosts: [],
} as const satisfies Omit<Required<FakeSlackOptions>, 'botToken' | 'appToken' | 'signingSecret'>;

export interface ApiCall {
  method: string;
  /** The arguments as the fake parsed them, without the token. */
  args: Record<string, unknown>;
  /** Which token made the call. */
  token: 'bot' | 'app' | 'unknown' | 'none';
  /** Clock time. */
  at: number;
  status: number;
  ok: boolean;
  error?: string;
}

export interface RateLimitHit {
  method: string;
  at: number;
  retryAfterSec: number;
}

export interface UploadRecord {
  fileId: string;
  size: number;
  declaredLength: number | undefined;
  multipart: boolean;
  status: number;
}

export interface DownloadRecord {
  fileId: string;
  /** Whether the request carried a bot token with files:read (else Slack serves its login page). */
  authorized: boolean;
  status: number;
  contentType: string;
}

export interface ResponseUrlPost {
  url: string;
  kind: 'commands' | 'actions';
  body: unknown;
  status: number;
  /** 1..maxUses for accepted posts. */
  use?: number;
  error?: string;
}

export type EventTarget = 'socket' | { url: string; options?: HttpPostOptions };

export interface DeliveredEvent {
  event: SlackEvent;
  via: 'socket' | 'http' | 'none';
  outcome?: AckOutcome | HttpDelivery;
  error?: string;
}

export interface SeedMessageInput {
  text?: string;
  user?: string;
  ts?: string;
  thread_ts?: string;
  files?: SlackFile[];
  blocks?: unknown[];
  subtype?: string;
  bot_id?: string;
}

export interface FakeSlack {
  /** `http://127.0.0.1:PORT/api/`, for `clientOptions.slackApiUrl`. */
  readonly apiUrl: string;
  /** `http://127.0.0.1:PORT`: the file host, response_url and permalink origin. */
  readonly baseUrl: string;
  readonly port: number;
  readonly botToken: string;
  readonly appToken: string;
  readonly signingSecret: string;
  readonly teamId: string;
  readonly teamDomain: string;
  readonly botUserId: string;
  readonly botId: string;
  readonly appId: string;
  /** 'C0GENERAL', bot is a member; 'C0RANDOM' exists and the bot is not in it. */
  readonly defaultChannelId: string;
  /** 'U0USER001' (alice). */
  readonly defaultUserId: string;
  readonly clock: Clock;
  readonly store: WorkspaceStore;
  readonly calls: ApiCall[];
  readonly rateLimited: RateLimitHit[];
  readonly uploads: UploadRecord[];
  readonly downloads: DownloadRecord[];
  readonly responseUrlPosts: ResponseUrlPost[];
  /** Every image_url the fake downloaded, as Slack does when a message with it is posted or edited. */
  readonly imageFetches: ImageFetch[];
  readonly deliveredEvents: DeliveredEvent[];
  readonly ephemerals: EphemeralMessage[];
  callsTo(method: string): ApiCall[];
  message(channel: string, ts: string): SlackMessage | undefined;
  /** The channel's messages (thread replies included), oldest first. */
  messages(channel: string): SlackMessage[];
  file(id: string): FileRecord | undefined;
  homeView(user: string): StoredView | undefined;
  setScopes(token: string, scopes: readonly string[]): void;
  addChannel(input: { name: string; id?: string; is_private?: boolean; is_member?: boolean }): SlackChannel;
  addUser(input: { name: string; id?: string; is_bot?: boolean }): SlackUser;
  /** A completed file on the fake host. With `channel`, the user posts it there (a message with the file). */
  addFile(
    bytes: Uint8Array,
    info: { name: string; mimetype?: string; channel?: string; user?: string; title?: string },
  ): SlackFile;
  seedMessage(channel: string, input: SeedMessageInput): SlackMessage;
  /** Resolves once the file has a share (files.completeUploadExternal shares asynchronously). */
  waitForShare(fileId: string, timeoutMs?: number): Promise<SlackFile>;
  /** Polls `check` until it returns something other than undefined/false. */
  waitFor<T>(check: () => T | undefined | false, timeoutMs?: number): Promise<T>;
  readonly build: ReturnType<typeof createPayloadBuilders>;
  readonly socket: {
    readonly connected: boolean;
    readonly connectionsOpened: number;
    readonly envelopes: SocketModeServer['envelopes'];
    readonly acks: AckRecord[];
    readonly timeouts: SocketModeServer['timeouts'];
    send(type: EnvelopeType, payload: unknown): Promise<AckOutcome>;
    sendEvent(event: SlackEvent): Promise<AckOutcome>;
    waitForConnection(count?: number, timeoutMs?: number): Promise<void>;
    disconnect(reason?: string): Promise<void>;
    drop(options?: { abrupt?: boolean; code?: number }): Promise<void>;
  };
  readonly http: {
    readonly deliveries: HttpDelivery[];
    readonly timeouts: HttpDelivery[];
    post(url: string, kind: EnvelopeType, payload: unknown, options?: HttpPostOptions): Promise<HttpDelivery>;
    postEvent(url: string, event: SlackEvent, options?: HttpPostOptions): Promise<HttpDelivery>;
  };
  /** Where events the fake itself raises (file_shared, file_deleted) go. @defaultValue nowhere (recorded only) */
  deliverEventsTo(target: EventTarget | undefined): void;
  close(): Promise<void>;
}

interface ResponseUrlRecord {
  kind: 'commands' | 'actions';
  target: ResponseTarget;
  createdAt: number;
  uses: number;
}

export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const o = { ...DefaultFakeSlackOptions, ...options };
  const botToken = options.botToken ?? `xoxb-1-fake-${randomBytes(12).toString('hex')}`;
  const appToken = options.appToken ?? `xapp-1-${o.appId}-fake-${randomBytes(12).toString('hex')}`;
  const signingSecret = options.signingSecret ?? randomBytes(32).toString('hex');
  const clock = o.clock;
  const store = new WorkspaceStore(o.teamId, clock);
  let baseUrl = '';

  const tokens = new Map<string, TokenInfo>([
    [botToken, { kind: 'bot', scopes: new Set(o.botScopes) }],
    [appToken, { kind: 'app', scopes: new Set(['connections:write']) }],
  ]);
  const limited = o.historyPolicy === 'limited';
  const windows: Record<string, RateLimit> = {
    'chat.update': { limit: o.chatUpdatePerMinute, windowMs: 60_000 },
    'conversations.history': { limit: limited ? 1 : 50, windowMs: 60_000 },
    ...o.rateLimits,
  };
  const limits = new Map(Object.entries(windows).map(([m, r]) => [m, new SlidingWindow(r, clock)]));

  const calls: ApiCall[] = [];
  const rateLimited: RateLimitHit[] = [];
  const uploads: UploadRecord[] = [];
  const downloads: DownloadRecord[] = [];
  const responseUrlPosts: ResponseUrlPost[] = [];
  const deliveredEvents: DeliveredEvent[] = [];
  const responseUrls = new Map<string, ResponseUrlRecord>();
  const triggers = new Map<string, { createdAt: number; used: boolean }>();
  const timers = new Set<NodeJS.Timeout>();
  const background = new Set<Promise<unknown>>();
  let eventTarget: EventTarget | undefined;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const defaultChannelId = 'C0GENERAL';
  const defaultUserId = 'U0USER001';
  const nowSec = () => Math.floor(clock.now() / 1000);
  const addChannel: FakeSlack['addChannel'] = (input) => {
    const ch: SlackChannel = {
      id: input.id ?? store.newId(input.is_private === true ? 'G' : 'C'),
      name: input.name,
      is_channel: input.is_private !== true,
      is_group: input.is_private === true,
      is_im: false,
      is_private: input.is_private === true,
      is_member: input.is_member ?? true,
      is_archived: false,
      created: nowSec(),
    };
    store.channels.set(ch.id, ch);
    return ch;
  };
  const addUser: FakeSlack['addUser'] = (input) => {
    const user: SlackUser = {
      id: input.id ?? store.newId('U'),
      team_id: o.teamId,
      name: input.name,
      real_name: input.name,
      is_bot: input.is_bot ?? false,
      deleted: false,
      profile: { display_name: input.name, real_name: input.name },
    };
    store.users.set(user.id, user);
    return user;
  };
  addChannel({ id: defaultChannelId, name: 'general' });
  addChannel({ id: 'C0RANDOM', name: 'random', is_member: false });
  addUser({ id: defaultUserId, name: 'alice' });
  addUser({ id: o.botUserId, name: 'fake-bot', is_bot: true });

  const socket = new SocketModeServer({
    appId: o.appId,
    ackTimeoutMs: o.ackTimeoutMs,
    retryUnackedEvents: o.retryUnackedEvents,
    pingIntervalMs: o.pingIntervalMs,
    onAck: (ack, envelope) => respondFromAck(envelope.type, envelope.payload, ack.payload),
  });
  const http = new HttpModeClient({
    signingSecret,
    ackTimeoutMs: o.ackTimeoutMs,
    onResponse: (d) => {
      if (d.status === 200) respondFromAck(d.kind, d.payload, d.body);
    },
  });

  /** A message in an ack (Socket Mode payload or HTTP body) is Slack's immediate response to the user. */
  function respondFromAck(kind: EnvelopeType, request: unknown, ack: unknown) {
    if (kind === 'events_api' || !isRecord(ack) || !isRecord(request)) return;
    if (typeof ack.text !== 'string' && !Array.isArray(ack.blocks)) return;
    const channel = String(request.channel_id ?? (isRecord(request.channel) ? request.channel.id : ''));
    const user = String(request.user_id ?? (isRecord(request.user) ? request.user.id : ''));
    const text = typeof ack.text === 'string' ? ack.text : '';
    const blocks = Array.isArray(ack.blocks) ? { blocks: ack.blocks as unknown[] } : {};
    if (ack.response_type === 'in_channel') {
      store.insertMessage(channel, botMessage({ ts: store.newTs(), text, ...blocks }));
    } else {
      store.ephemerals.push({ channel, user, message_ts: store.newTs(), text, ...blocks, via: 'ack' });
    }
  }

  function botMessage(fields: Partial<SlackMessage> & { ts: string; text: string }): SlackMessage {
    return {
      type: 'message',
      user: o.botUserId,
      bot_id: o.botId,
      app_id: o.appId,
      team: o.teamId,
      ...fields,
    };
  }

  function deliver(event: SlackEvent) {
    const record: DeliveredEvent = { event, via: 'none' };
    deliveredEvents.push(record);
    const target = eventTarget;
    if (target === undefined) return;
    const body = build.eventCallback(event);
    record.via = target === 'socket' ? 'socket' : 'http';
    const sent: Promise<AckOutcome | HttpDelivery> =
      target === 'socket'
        ? socket.send('events_api', body)
        : http.post(target.url, 'events_api', body, target.options);
    const p = sent.then(
      (outcome) => {
        record.outcome = outcome;
      },
      (error: unknown) => {
        record.error = error instanceof Error ? error.message : String(error);
      },
    );
    background.add(p);
    p.finally(() => background.delete(p));
  }

  // The downloads of the call being checked: set just before the (synchronous) Web API handler runs.
  let downloaded: ReadonlyMap<string, ImageFetch> = new Map();
  const imageFetches: ImageFetch[] = [];
  const isPrivateFileUrl = (url: string) => url.startsWith(`${baseUrl}/files-pri/`);
  const downloadImages = async (blocks: unknown): Promise<Map<string, ImageFetch>> => {
    const urls = downloadableImageUrls(blocks).filter((u) => !isPrivateFileUrl(u));
    const results = await Promise.all(
      urls.map((u) =>
        o.unreachableImageHosts.includes(new URL(u).host)
          ? { url: u, at: clock.now(), ok: false, reason: 'host unreachable from Slack' }
          : fetchImageUrl(u, clock.now(), o.imageFetchTimeoutMs),
      ),
    );
    imageFetches.push(...results);
    return new Map(results.map((r) => [r.url, r]));
  };

  const blockRules = (maxBlocks: number) => ({
    maxBlocks,
    imageDownloaded: (url: string) => downloaded.get(url)?.ok === true,
    fileVisibility: (ref: { id?: string; url?: string }) => {
      const rec = ref.id !== undefined ? store.files.get(ref.id) : store.fileByUrl(ref.url ?? '');
      if (rec === undefined || rec.deleted || !rec.completed) return 'missing' as const;
      if (!/^image\/(png|jpeg|gif)$/i.test(rec.file.mimetype)) return 'not_shown' as const;
      return store.isShared(rec.file.id) ? ('shared' as const) : ('unshared' as const);
    },
    isPrivateFileUrl,
  });

  const webApi = createWebApi({
    store,
    clock,
    tokens,
    ids: {
      teamId: o.teamId,
      teamName: 'Fake Team',
      teamDomain: o.teamDomain,
      botUserId: o.botUserId,
      botId: o.botId,
      appId: o.appId,
    },
    baseUrl: () => baseUrl,
    limits,
    history: limited ? { defaultLimit: 15, maxLimit: 15 } : { defaultLimit: 100, maxLimit: 999 },
    triggers,
    triggerLifetimeMs: o.triggerLifetimeMs,
    blockRules,
    maxMessageBlocks: o.maxBlocks,
    later,
    shareDelayMs: o.shareDelayMs,
    onShared: (files, channel, message) => {
      for (const f of files) {
        if (o.shareEvents.includes('file_shared')) {
          deliver(build.events.fileShared({ file_id: f.id, user_id: o.botUserId, channel_id: channel }));
        }
      }
      if (o.shareEvents.includes('message')) {
        deliver(
          build.events.message({ channel, user: o.botUserId, text: message.text, ts: message.ts, files }),
        );
      }
    },
    onFileDeleted: (file, channels) =>
      deliver(build.events.fileDeleted({ file_id: file.id, channel_ids: channels })),
    onRateLimited: (method, retryAfterSec) => rateLimited.push({ method, at: clock.now(), retryAfterSec }),
    socketUrl: () => socket.newUrl(baseUrl),
  });

  let triggerCount = 0;
  const build = createPayloadBuilders({
    teamId: o.teamId,
    teamDomain: o.teamDomain,
    apiAppId: o.appId,
    botUserId: o.botUserId,
    botId: o.botId,
    verificationToken: 'fake-verification-token',
    defaultUserId,
    defaultUserName: 'alice',
    defaultChannelId,
    channelName: (id) => store.channels.get(id)?.name ?? id.toLowerCase(),
    newResponseUrl: (kind, target) => {
      const id = store.newId('R');
      const secret = randomBytes(12).toString('base64url');
      const url = `${baseUrl}/${kind}/${o.teamId}/${id}/${secret}`;
      responseUrls.set(new URL(url).pathname, { kind, target, createdAt: clock.now(), uses: 0 });
      return url;
    },
    newTriggerId: () => {
      triggerCount += 1;
      const id = `${triggerCount}${Date.now()}.${o.teamId.slice(1)}.${randomBytes(8).toString('hex')}`;
      triggers.set(id, { createdAt: clock.now(), used: false });
      return id;
    },
    nowTs: () => store.newTs(),
  });

  async function onApi(req: IncomingMessage, res: ServerResponse, method: string, url: URL) {
    const raw = await readBody(req);
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    const args: Record<string, unknown> = Object.fromEntries(url.searchParams);
    const json = type === 'application/json';
    if (json) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch {
        return sendJson(res, { status: 200, headers: {}, body: { ok: false, error: 'invalid_json' } });
      }
      if (isRecord(parsed)) Object.assign(args, parsed);
    } else if (type === 'application/x-www-form-urlencoded') {
      Object.assign(args, Object.fromEntries(new URLSearchParams(raw.toString('utf8'))));
    } else if (type === 'multipart/form-data') {
      const form = await parseMultipart(req, raw);
      for (const [k, v] of form ?? []) if (typeof v === 'string') args[k] = v;
    }
    const header = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const bodyToken = !json && typeof args.token === 'string' ? args.token : undefined;
    const token = header ?? bodyToken;
    delete args.token;
    const fetched = await downloadImages(blocksOfArgs(args));
    downloaded = fetched;
    let out: ApiReply;
    try {
      out = webApi(method, args, { token, json });
    } finally {
      downloaded = new Map();
    }
    const kind = token === undefined ? 'none' : (tokens.get(token)?.kind ?? 'unknown');
    calls.push({
      method,
      args,
      token: kind,
      at: clock.now(),
      status: out.status,
      ok: out.body.ok === true,
      ...(typeof out.body.error === 'string' ? { error: out.body.error } : {}),
    });
    sendJson(res, out);
  }

  async function onUpload(req: IncomingMessage, res: ServerResponse, key: string) {
    const rec = [...store.files.values()].find((r) => r.uploadKey === key);
    const raw = await readBody(req);
    if (rec === undefined || rec.completed) return sendText(res, 404, 'not_found');
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    const multipart = type.startsWith('multipart/form-data');
    let bytes = raw;
    if (multipart) {
      const form = await parseMultipart(req, raw);
      const part = [...(form?.values() ?? [])].find((v) => typeof v !== 'string');
      if (part === undefined || typeof part === 'string') {
        uploads.push({
          fileId: rec.file.id,
          size: 0,
          declaredLength: rec.declaredLength,
          multipart,
          status: 400,
        });
        return sendText(res, 400, 'no file part in the multipart body');
      }
      bytes = Buffer.from(await part.arrayBuffer());
    }
    // The upload host holds the caller to the length it declared in files.getUploadURLExternal.
    const status = bytes.length === rec.declaredLength ? 200 : 400;
    uploads.push({
      fileId: rec.file.id,
      size: bytes.length,
      declaredLength: rec.declaredLength,
      multipart,
      status,
    });
    if (status !== 200)
      return sendText(res, 400, `length mismatch: declared ${rec.declaredLength}, got ${bytes.length}`);
    rec.bytes = bytes;
    rec.file.size = bytes.length;
    const dims = pngSize(bytes);
    if (dims !== undefined) Object.assign(rec.file, { original_w: dims.w, original_h: dims.h });
    sendText(res, 200, `OK - ${bytes.length}`);
  }

  function onFileDownload(req: IncomingMessage, res: ServerResponse, fileId: string) {
    const rec = store.files.get(fileId);
    const token = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const info = token === undefined ? undefined : tokens.get(token);
    const authorized = info?.kind === 'bot' && info.scopes.has('files:read');
    const record = (status: number, contentType: string) =>
      downloads.push({ fileId, authorized, status, contentType });
    if (rec === undefined || rec.deleted || rec.bytes === undefined) {
      record(404, 'text/plain');
      return sendText(res, 404, 'file not found');
    }
    if (!authorized) {
      // Slack does not answer 401/403 here: it serves its sign-in page with status 200.
      record(200, 'text/html');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(o.teamDomain));
      return;
    }
    record(200, rec.file.mimetype);
    res.writeHead(200, { 'content-type': rec.file.mimetype, 'content-length': rec.bytes.length });
    res.end(rec.bytes);
  }

  async function onResponseUrl(req: IncomingMessage, res: ServerResponse, path: string) {
    const raw = (await readBody(req)).toString('utf8');
    const url = `${baseUrl}${path}`;
    const rec = responseUrls.get(path);
    const kind = path.startsWith('/commands/') ? 'commands' : 'actions';
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      body = Object.fromEntries(new URLSearchParams(raw));
      if (isRecord(body) && typeof body.payload === 'string') body = JSON.parse(body.payload);
    }
    const post = (status: number, extra: Partial<ResponseUrlPost>) =>
      responseUrlPosts.push({ url, kind, body, status, ...extra });
    if (rec === undefined) {
      post(404, { error: 'invalid_url' });
      return sendText(res, 404, 'invalid_url');
    }
    if (
      !isRecord(body) ||
      (typeof body.text !== 'string' && !Array.isArray(body.blocks) && body.delete_original !== true)
    ) {
      post(400, { error: 'no_text' });
      return sendText(res, 400, 'no_text');
    }
    if (Array.isArray(body.blocks)) {
      downloaded = await downloadImages(body.blocks);
      let errors: string[];
      try {
        errors = checkBlocks(body.blocks, blockRules(o.maxBlocks));
      } finally {
        downloaded = new Map();
      }
      if (errors.length > 0) {
        post(400, { error: 'invalid_blocks' });
        return sendText(res, 400, 'invalid_blocks');
      }
    }
    // Past 5 uses or 30 minutes Slack refuses the URL; the fake answers 404 with used_url / expired_url.
    const use = takeUse(
      rec,
      { maxUses: o.responseUrlMaxUses, lifetimeMs: o.responseUrlLifetimeMs },
      clock.now(),
    );
    if (!use.ok) {
      post(404, { error: use.error });
      return sendText(res, 404, use.error);
    }
    applyResponse(rec, body);
    post(200, { use: use.use });
    sendJson(res, { status: 200, headers: {}, body: { ok: true } });
  }

  function applyResponse(rec: ResponseUrlRecord, body: Record<string, unknown>) {
    const { channel, user, messageTs } = rec.target;
    const text = typeof body.text === 'string' ? body.text : '';
    const blocks = Array.isArray(body.blocks) ? { blocks: body.blocks as unknown[] } : {};
    const source = messageTs === undefined ? undefined : store.message(channel, messageTs);
    if (body.delete_original === true && source !== undefined) {
      store.removeMessage(channel, source.ts);
      return;
    }
    if (body.replace_original === true && source !== undefined) {
      source.text = text;
      if ('blocks' in blocks) source.blocks = blocks.blocks;
      else delete source.blocks;
      source.edited = { user: o.botUserId, ts: store.newTs() };
      return;
    }
    const threadTs = typeof body.thread_ts === 'string' ? { thread_ts: body.thread_ts } : {};
    if (body.response_type === 'in_channel') {
      store.insertMessage(channel, botMessage({ ts: store.newTs(), text, ...blocks, ...threadTs }));
    } else {
      store.ephemerals.push({
        channel,
        user,
        message_ts: store.newTs(),
        text,
        ...blocks,
        ...threadTs,
        via: 'response_url',
      });
    }
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname;
    const routed = (async () => {
      const api = /^\/api\/([A-Za-z0-9_.]+)$/.exec(path);
      if (api?.[1] !== undefined) return onApi(req, res, api[1], url);
      const upload = /^\/upload\/v1\/([A-Za-z0-9_-]+)$/.exec(path);
      if (upload?.[1] !== undefined && req.method === 'POST') return onUpload(req, res, upload[1]);
      const download = /^\/files-pri\/[A-Z0-9]+-([A-Z0-9]+)\/(?:download\/)?[^/]+$/.exec(path);
      if (download?.[1] !== undefined && req.method === 'GET') return onFileDownload(req, res, download[1]);
      if (/^\/(commands|actions)\//.test(path) && req.method === 'POST') return onResponseUrl(req, res, path);
      await readBody(req);
      sendText(res, 404, 'not_found');
    })();
    routed.catch((error: unknown) => {
      if (!res.headersSent)
        sendText(res, 500, `fake-slack: ${error instanceof Error ? error.message : error}`);
    });
  });
  server.on('upgrade', (req, sock, head) => socket.handleUpgrade(req, sock, head));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}`;

  const waitFor = async <T>(check: () => T | undefined | false, timeoutMs = 5000): Promise<T> => {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined && v !== false) return v;
      if (performance.now() > until) throw new Error(`fake-slack: condition not met within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const fake: FakeSlack = {
    apiUrl: `${baseUrl}/api/`,
    baseUrl,
    port,
    botToken,
    appToken,
    signingSecret,
    teamId: o.teamId,
    teamDomain: o.teamDomain,
    botUserId: o.botUserId,
    botId: o.botId,
    appId: o.appId,
    defaultChannelId,
    defaultUserId,
    clock,
    store,
    calls,
    rateLimited,
    uploads,
    downloads,
    responseUrlPosts,
    imageFetches,
    deliveredEvents,
    ephemerals: store.ephemerals,
    callsTo: (method) => calls.filter((c) => c.method === method),
    message: (channel, ts) => store.message(channel, ts),
    messages: (channel) => [...store.channelMessages(channel)],
    file: (id) => store.files.get(id),
    homeView: (user) => store.homeViews.get(user),
    setScopes(token, scopes) {
      const info = tokens.get(token);
      if (info === undefined) throw new Error('fake-slack: unknown token');
      info.scopes = new Set(scopes);
    },
    addChannel,
    addUser,
    addFile(bytes, info) {
      const id = store.newId('F');
      const buf = Buffer.from(bytes);
      const mimetype = info.mimetype ?? guessMimetype(info.name);
      const user = info.user ?? defaultUserId;
      const dims = pngSize(buf);
      const file: SlackFile = {
        ...hostedFile({
          id,
          name: info.name,
          title: info.title ?? info.name,
          mimetype,
          user,
          teamId: o.teamId,
          size: buf.length,
          base: baseUrl,
          nowSec: nowSec(),
        }),
        ...(dims !== undefined ? { original_w: dims.w, original_h: dims.h } : {}),
      };
      store.files.set(id, {
        file,
        bytes: buf,
        declaredLength: undefined,
        uploadKey: undefined,
        completed: true,
        deleted: false,
      });
      if (info.channel !== undefined) fake.seedMessage(info.channel, { user, files: [file] });
      return file;
    },
    seedMessage(channel, input) {
      if (!store.channels.has(channel)) throw new Error(`fake-slack: no channel ${channel}`);
      const message: SlackMessage = {
        type: 'message',
        ts: input.ts ?? store.newTs(),
        text: input.text ?? '',
        team: o.teamId,
        ...(input.bot_id !== undefined ? { bot_id: input.bot_id } : { user: input.user ?? defaultUserId }),
        ...(input.subtype !== undefined ? { subtype: input.subtype } : {}),
        ...(input.blocks !== undefined ? { blocks: input.blocks } : {}),
        ...(input.files !== undefined ? { files: input.files, upload: false } : {}),
        ...(input.thread_ts !== undefined ? { thread_ts: input.thread_ts } : {}),
      };
      store.insertMessage(channel, message);
      return message;
    },
    waitForShare: (fileId, timeoutMs = 5000) =>
      waitFor(() => (store.isShared(fileId) ? store.files.get(fileId)?.file : undefined), timeoutMs),
    waitFor,
    build,
    socket: {
      get connected() {
        return socket.connected;
      },
      get connectionsOpened() {
        return socket.connectionsOpened;
      },
      envelopes: socket.envelopes,
      acks: socket.acks,
      timeouts: socket.timeouts,
      send: (type, payload) => socket.send(type, payload),
      sendEvent: (event) => socket.send('events_api', build.eventCallback(event)),
      waitForConnection: (count, timeoutMs) => socket.waitForConnection(count, timeoutMs),
      disconnect: (reason) => socket.disconnect(reason),
      drop: (opts) => socket.drop(opts),
    },
    http: {
      deliveries: http.deliveries,
      timeouts: http.timeouts,
      post: (url, kind, payload, opts) => http.post(url, kind, payload, opts),
      postEvent: (url, event, opts) => http.post(url, 'events_api', build.eventCallback(event), opts),
    },
    deliverEventsTo(target) {
      eventTarget = target;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      http.close();
      socket.close();
      await Promise.allSettled([...background]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}

/** Node's fetch Request parses multipart bodies, so no form library is needed. */
function parseMultipart(req: IncomingMessage, raw: Buffer) {
  const headers = { 'content-type': req.headers['content-type'] ?? '' };
  return new Request('http://x', { method: 'POST', headers, body: raw }).formData().catch(() => undefined);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, out: ApiReply) {
  const text = JSON.stringify(out.body);
  res.writeHead(out.status, { ...out.headers, 'content-type': 'application/json; charset=utf-8' });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}

function loginPage(domain: string): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Slack</title></head><body>
<h1>Sign in to ${domain}</h1><form action="/signin" method="post"><input name="email" type="email"></form>
</body></html>`;
}

export { permalink };
