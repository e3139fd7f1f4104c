// The Web API methods the adapter uses, answered as Slack answers them: the token and its scopes first,
// then the method's rate window, then the method's own checks against the workspace store. Transport-free:
// index.ts parses bodies and writes the ApiReply to the socket.

import { randomBytes } from 'node:crypto';
import {
  type BlockRules,
  type Clock,
  checkBlocks,
  isRecord,
  type SlidingWindow,
  scopeFor,
  takeTrigger,
} from './rules.js';
import {
  compareTs,
  guessMimetype,
  hostedFile,
  type SlackChannel,
  type SlackFile,
  type SlackMessage,
  type StoredView,
  tsMicros,
  type WorkspaceStore,
} from './store.js';

export interface ApiReply {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

export interface TokenInfo {
  kind: 'bot' | 'app';
  scopes: Set<string>;
}

export interface Caller {
  token: string | undefined;
  /** Slack reads JSON bodies only for methods that accept them, and never takes the token from one. */
  json: boolean;
}

export interface WebApiDeps {
  store: WorkspaceStore;
  clock: Clock;
  tokens: Map<string, TokenInfo>;
  ids: {
    teamId: string;
    teamName: string;
    teamDomain: string;
    botUserId: string;
    botId: string;
    appId: string;
  };
  baseUrl: () => string;
  limits: Map<string, SlidingWindow>;
  history: { defaultLimit: number; maxLimit: number };
  triggers: Map<string, { createdAt: number; used: boolean }>;
  triggerLifetimeMs: number;
  blockRules: (maxBlocks: number) => BlockRules;
  maxMessageBlocks: number;
  /** Runs fn after ms of real time (sharing is asynchronous); the fake clears pending ones on close. */
  later(ms: number, fn: () => void): void;
  shareDelayMs: number;
  onShared(files: SlackFile[], channel: string, message: SlackMessage): void;
  onFileDeleted(file: SlackFile, channels: string[]): void;
  onRateLimited(method: string, retryAfterSec: number): void;
  socketUrl(): string;
}

type Args = Record<string, unknown>;
type Handler = (args: Args, caller: Caller) => ApiReply;

/** Methods whose JSON body Slack ignores (they want form fields), so a JSON caller looks like it sent nothing. */
const formOnly = new Set(['files.getUploadURLExternal']);

export function createWebApi(deps: WebApiDeps): (method: string, args: Args, caller: Caller) => ApiReply {
  const { store, ids } = deps;
  const handlers = createHandlers(deps);
  return (method, args, caller) => {
    const handler = handlers[method];
    if (handler === undefined) return reply({ ok: false, error: 'unknown_method', req_method: method });
    if (caller.token === undefined) return reply({ ok: false, error: 'not_authed' });
    const info = deps.tokens.get(caller.token);
    if (info === undefined) return reply({ ok: false, error: 'invalid_auth' });
    const wantsApp = method === 'apps.connections.open';
    if ((info.kind === 'app') !== wantsApp) return reply({ ok: false, error: 'not_allowed_token_type' });
    const channel = str(args, 'channel') ?? str(args, 'channel_id');
    const needed = scopeFor(method, channel === undefined ? undefined : store.channelKind(channel));
    const provided = [...info.scopes].join(',');
    const scopeHeaders = { 'x-oauth-scopes': provided, 'x-accepted-oauth-scopes': needed ?? '' };
    if (needed !== undefined && !info.scopes.has(needed)) {
      return reply({ ok: false, error: 'missing_scope', needed, provided }, 200, scopeHeaders);
    }
    const limit = deps.limits.get(method)?.take(`${method}:${ids.teamId}`);
    if (limit !== undefined && !limit.ok) {
      deps.onRateLimited(method, limit.retryAfterSec);
      return reply({ ok: false, error: 'ratelimited' }, 429, { 'retry-after': String(limit.retryAfterSec) });
    }
    const out = handler(caller.json && formOnly.has(method) ? {} : args, caller);
    Object.assign(out.headers, scopeHeaders);
    return out;
  };
}

function createHandlers(deps: WebApiDeps): Record<string, Handler> {
  const { store, ids } = deps;

  const botMessage = (fields: Partial<SlackMessage> & { ts: string; text: string }): SlackMessage => ({
    type: 'message',
    user: ids.botUserId,
    bot_id: ids.botId,
    app_id: ids.appId,
    team: ids.teamId,
    bot_profile: { id: ids.botId, app_id: ids.appId, name: 'fake-bot', team_id: ids.teamId, deleted: false },
    ...fields,
  });

  /** Channel ids, or a user id for a DM (Slack opens the im). */
  const resolveChannel = (id: string | undefined): SlackChannel | undefined => {
    if (id === undefined) return undefined;
    const found = store.channels.get(id);
    if (found !== undefined || !id.startsWith('U') || !store.users.has(id)) return found;
    const im = [...store.channels.values()].find((c) => c.is_im && c.user === id);
    if (im !== undefined) return im;
    const created: SlackChannel = {
      id: store.newId('D'),
      name: id,
      is_channel: false,
      is_group: false,
      is_im: true,
      is_private: true,
      is_member: true,
      is_archived: false,
      created: Math.floor(deps.clock.now() / 1000),
      user: id,
    };
    store.channels.set(created.id, created);
    return created;
  };

  const canPost = (ch: SlackChannel, caller: Caller): string | undefined => {
    if (ch.is_archived) return 'is_archived';
    if (ch.is_member) return undefined;
    const scopes = caller.token === undefined ? undefined : deps.tokens.get(caller.token)?.scopes;
    return !ch.is_private && scopes?.has('chat:write.public') ? undefined : 'not_in_channel';
  };

  /** blocks arrive as a JSON string (form) or an array (JSON body); undefined when absent. */
  const readBlocks = (
    args: Args,
    maxBlocks: number,
  ): { ok: true; blocks: unknown[] | undefined } | { ok: false; reply: ApiReply } => {
    const raw = args.blocks;
    if (raw === undefined || raw === '') return { ok: true, blocks: undefined };
    let blocks: unknown = raw;
    if (typeof raw === 'string') {
      try {
        blocks = JSON.parse(raw);
      } catch {
        return { ok: false, reply: reply({ ok: false, error: 'invalid_blocks_format' }) };
      }
    }
    if (!Array.isArray(blocks))
      return { ok: false, reply: reply({ ok: false, error: 'invalid_blocks_format' }) };
    const errors = checkBlocks(blocks, deps.blockRules(maxBlocks));
    if (errors.length > 0) return { ok: false, reply: blockErrors(errors) };
    return { ok: true, blocks };
  };

  const readView = (args: Args): Record<string, unknown> | undefined => {
    const raw = args.view;
    if (isRecord(raw)) return raw;
    if (typeof raw !== 'string') return undefined;
    try {
      const v: unknown = JSON.parse(raw);
      return isRecord(v) ? v : undefined;
    } catch {
      return undefined;
    }
  };

  const viewObject = (stored: StoredView) => ({
    id: stored.id,
    team_id: ids.teamId,
    callback_id: '',
    private_metadata: '',
    external_id: '',
    state: { values: {} },
    clear_on_close: false,
    notify_on_close: false,
    close: null,
    submit: null,
    previous_view_id: null,
    root_view_id: stored.id,
    app_id: ids.appId,
    app_installed_team_id: ids.teamId,
    bot_id: ids.botId,
    ...stored.view,
    hash: stored.hash,
  });

  const checkView = (view: Record<string, unknown>, type: 'home' | 'modal'): ApiReply | undefined => {
    if (view.type !== type) return invalidArguments(`view.type must be ${type}`);
    if (type === 'modal') {
      const title = isRecord(view.title) ? view.title : undefined;
      if (title?.type !== 'plain_text' || typeof title.text !== 'string' || title.text.length > 24) {
        return invalidArguments('view.title must be a plain_text object of at most 24 characters');
      }
    }
    const errors = checkBlocks(view.blocks ?? [], deps.blockRules(100));
    return errors.length > 0 ? blockErrors(errors) : undefined;
  };

  const share = (
    files: SlackFile[],
    ch: SlackChannel,
    threadTs: string | undefined,
    comment: string,
    blocks?: unknown[],
  ) => {
    const message = botMessage({
      ts: store.newTs(),
      text: comment,
      files,
      upload: true,
      ...(blocks !== undefined ? { blocks } : {}),
      ...(threadTs !== undefined ? { thread_ts: threadTs } : {}),
    });
    store.insertMessage(ch.id, message);
    deps.onShared(files, ch.id, message);
  };

  return {
    'auth.test': () =>
      reply({
        ok: true,
        url: `${deps.baseUrl()}/`,
        team: ids.teamName,
        user: 'fake-bot',
        team_id: ids.teamId,
        user_id: ids.botUserId,
        bot_id: ids.botId,
        is_enterprise_install: false,
      }),

    'apps.connections.open': () => reply({ ok: true, url: deps.socketUrl() }),

    'chat.postMessage': (args, caller) => {
      const ch = resolveChannel(str(args, 'channel'));
      if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
      const denied = canPost(ch, caller);
      if (denied !== undefined) return reply({ ok: false, error: denied });
      const b = readBlocks(args, deps.maxMessageBlocks);
      if (!b.ok) return b.reply;
      const text = str(args, 'text');
      if (text === undefined && b.blocks === undefined && args.attachments === undefined) {
        return reply({ ok: false, error: 'no_text' });
      }
      const threadTs = str(args, 'thread_ts');
      const message = botMessage({
        ts: store.newTs(),
        text: text ?? '',
        ...(b.blocks !== undefined ? { blocks: b.blocks } : {}),
        ...(threadTs !== undefined ? { thread_ts: threadTs } : {}),
      });
      store.insertMessage(ch.id, message);
      return reply({ ok: true, channel: ch.id, ts: message.ts, message });
    },

    'chat.update': (args) => {
      const channel = str(args, 'channel') ?? '';
      const message = store.message(channel, str(args, 'ts') ?? '');
      // Ephemeral messages are not in the store, so they answer message_not_found, as at Slack.
      if (message === undefined) return reply({ ok: false, error: 'message_not_found' });
      if (message.bot_id !== ids.botId) return reply({ ok: false, error: 'cant_update_message' });
      const b = readBlocks(args, deps.maxMessageBlocks);
      if (!b.ok) return b.reply;
      const text = str(args, 'text');
      if (text === undefined && args.blocks === undefined && args.attachments === undefined) {
        return reply({ ok: false, error: 'no_text' });
      }
      if (text !== undefined) message.text = text;
      if (args.blocks !== undefined) {
        if (b.blocks === undefined) delete message.blocks;
        else message.blocks = b.blocks;
      }
      message.edited = { user: ids.botUserId, ts: store.newTs() };
      return reply({ ok: true, channel, ts: message.ts, text: message.text, message });
    },

    'chat.postEphemeral': (args, caller) => {
      const ch = resolveChannel(str(args, 'channel'));
      if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
      const denied = canPost(ch, caller);
      if (denied !== undefined) return reply({ ok: false, error: denied });
      const user = str(args, 'user');
      if (user === undefined || !store.users.has(user)) return reply({ ok: false, error: 'user_not_found' });
      const b = readBlocks(args, deps.maxMessageBlocks);
      if (!b.ok) return b.reply;
      const text = str(args, 'text');
      if (text === undefined && b.blocks === undefined) return reply({ ok: false, error: 'no_text' });
      const messageTs = store.newTs();
      const threadTs = str(args, 'thread_ts');
      store.ephemerals.push({
        channel: ch.id,
        user,
        message_ts: messageTs,
        text: text ?? '',
        ...(b.blocks !== undefined ? { blocks: b.blocks } : {}),
        ...(threadTs !== undefined ? { thread_ts: threadTs } : {}),
        via: 'chat.postEphemeral',
      });
      return reply({ ok: true, message_ts: messageTs });
    },

    'chat.delete': (args) => {
      const channel = str(args, 'channel') ?? '';
      const ts = str(args, 'ts') ?? '';
      const message = store.message(channel, ts);
      if (message === undefined) return reply({ ok: false, error: 'message_not_found' });
      if (message.bot_id !== ids.botId) return reply({ ok: false, error: 'cant_delete_message' });
      store.removeMessage(channel, ts);
      return reply({ ok: true, channel, ts });
    },

    'chat.getPermalink': (args) => {
      const channel = str(args, 'channel') ?? '';
      const ts = str(args, 'message_ts') ?? '';
      if (!store.channels.has(channel)) return reply({ ok: false, error: 'channel_not_found' });
      if (store.message(channel, ts) === undefined) return reply({ ok: false, error: 'message_not_found' });
      return reply({ ok: true, channel, permalink: permalink(deps.baseUrl(), channel, ts) });
    },

    'files.getUploadURLExternal': (args) => {
      const filename = str(args, 'filename');
      if (filename === undefined || filename === '')
        return invalidArguments('missing required field: filename');
      const lengthText = str(args, 'length');
      const length = Number(lengthText);
      if (lengthText === undefined || !Number.isInteger(length) || length <= 0) {
        return invalidArguments('missing required field: length');
      }
      const id = store.newId('F');
      const key = randomBytes(18).toString('base64url');
      const base = deps.baseUrl();
      const mimetype = guessMimetype(filename);
      const nowSec = Math.floor(deps.clock.now() / 1000);
      const altText = str(args, 'alt_text');
      const file: SlackFile = {
        ...hostedFile({
          id,
          name: filename,
          title: filename,
          mimetype,
          user: ids.botUserId,
          teamId: ids.teamId,
          size: length,
          base,
          nowSec,
          publicSuffix: key.slice(0, 10),
        }),
        ...(altText !== undefined ? { alt_txt: altText } : {}),
      };
      store.files.set(id, {
        file,
        bytes: undefined,
        declaredLength: length,
        uploadKey: key,
        completed: false,
        deleted: false,
      });
      return reply({ ok: true, upload_url: `${base}/upload/v1/${key}`, file_id: id });
    },

    'files.completeUploadExternal': (args, caller) => {
      const list = parseJson(args.files);
      if (!Array.isArray(list) || list.length === 0) return invalidArguments('missing required field: files');
      const channelId = str(args, 'channel_id') ?? str(args, 'channels');
      const ch = channelId === undefined ? undefined : resolveChannel(channelId);
      if (channelId !== undefined) {
        if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
        const denied = canPost(ch, caller);
        if (denied !== undefined) return reply({ ok: false, error: denied });
      }
      const records = [];
      for (const entry of list) {
        const id = isRecord(entry) ? entry.id : undefined;
        const rec = typeof id === 'string' ? store.files.get(id) : undefined;
        if (rec === undefined || rec.completed || rec.deleted)
          return reply({ ok: false, error: 'file_not_found' });
        if (rec.bytes === undefined) {
          return reply({
            ok: false,
            error: 'file_not_found',
            response_metadata: { messages: [`[ERROR] no bytes were uploaded for ${rec.file.id}`] },
          });
        }
        records.push({
          rec,
          title: isRecord(entry) && typeof entry.title === 'string' ? entry.title : undefined,
        });
      }
      const b = readBlocks(args, deps.maxMessageBlocks);
      if (!b.ok) return b.reply;
      for (const { rec, title } of records) {
        rec.completed = true;
        if (title !== undefined) rec.file.title = title;
      }
      const files = records.map((r) => r.rec.file);
      const snapshot = structuredClone(files);
      if (ch !== undefined) {
        const threadTs = str(args, 'thread_ts');
        const comment = str(args, 'initial_comment') ?? '';
        // Slack answers before the file reaches the channel: shares stay empty until this fires.
        deps.later(deps.shareDelayMs, () => {
          if (files.every((f) => !store.files.get(f.id)?.deleted))
            share(files, ch, threadTs, comment, b.blocks);
        });
      }
      return reply({ ok: true, files: snapshot });
    },

    'files.info': (args) => {
      const rec = store.files.get(str(args, 'file') ?? '');
      if (rec === undefined || !rec.completed) return reply({ ok: false, error: 'file_not_found' });
      if (rec.deleted) return reply({ ok: false, error: 'file_deleted' });
      return reply({ ok: true, file: rec.file, comments: [], response_metadata: { next_cursor: '' } });
    },

    'files.delete': (args) => {
      const rec = store.files.get(str(args, 'file') ?? '');
      if (rec === undefined || !rec.completed) return reply({ ok: false, error: 'file_not_found' });
      if (rec.deleted) return reply({ ok: false, error: 'file_deleted' });
      if (rec.file.user !== ids.botUserId) return reply({ ok: false, error: 'cant_delete_file' });
      rec.deleted = true;
      const channels = store.tombstoneFile(rec.file.id);
      deps.onFileDeleted(rec.file, channels);
      return reply({ ok: true });
    },

    'conversations.history': (args) => {
      const ch = store.channels.get(str(args, 'channel') ?? '');
      if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
      if (!ch.is_member) return reply({ ok: false, error: 'not_in_channel' });
      const limitText = str(args, 'limit');
      const asked = limitText === undefined ? deps.history.defaultLimit : Number(limitText);
      if (!Number.isInteger(asked) || asked < 0) return reply({ ok: false, error: 'invalid_limit' });
      const limit = Math.min(asked === 0 ? deps.history.defaultLimit : asked, deps.history.maxLimit);
      const cursor = str(args, 'cursor');
      let upTo = Number.POSITIVE_INFINITY;
      if (cursor !== undefined && cursor !== '') {
        const decoded = decodeCursor(cursor);
        if (decoded === undefined) return reply({ ok: false, error: 'invalid_cursor' });
        upTo = decoded;
      }
      const inclusive = str(args, 'inclusive') === 'true' || str(args, 'inclusive') === '1';
      const latest = str(args, 'latest');
      const oldest = str(args, 'oldest');
      const inRange = (m: SlackMessage) => {
        const t = tsMicros(m.ts);
        if (t > upTo) return false;
        if (latest !== undefined && (inclusive ? t > tsMicros(latest) : t >= tsMicros(latest))) return false;
        if (oldest !== undefined && (inclusive ? t < tsMicros(oldest) : t <= tsMicros(oldest))) return false;
        return true;
      };
      // Thread replies live in conversations.replies, not in the channel's history.
      const visible = store
        .channelMessages(ch.id)
        .filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts || m.subtype === 'thread_broadcast')
        .filter(inRange)
        .sort((a, b) => compareTs(b.ts, a.ts));
      const page = visible.slice(0, limit);
      const next = visible[limit];
      return reply({
        ok: true,
        messages: page,
        has_more: next !== undefined,
        pin_count: 0,
        channel_actions_ts: null,
        channel_actions_count: 0,
        response_metadata: { next_cursor: next === undefined ? '' : encodeCursor(next.ts) },
      });
    },

    'conversations.info': (args) => {
      const ch = store.channels.get(str(args, 'channel') ?? '');
      if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
      return reply({
        ok: true,
        channel: { ...ch, name_normalized: ch.name, is_mpim: false, is_shared: false },
      });
    },

    'conversations.join': (args) => {
      const ch = store.channels.get(str(args, 'channel') ?? '');
      if (ch === undefined) return reply({ ok: false, error: 'channel_not_found' });
      if (ch.is_private || ch.is_im)
        return reply({ ok: false, error: 'method_not_supported_for_channel_type' });
      ch.is_member = true;
      return reply({ ok: true, channel: ch });
    },

    'views.publish': (args) => {
      const user = str(args, 'user_id');
      if (user === undefined || !store.users.has(user)) return reply({ ok: false, error: 'user_not_found' });
      const view = readView(args);
      if (view === undefined) return invalidArguments('missing required field: view');
      const bad = checkView(view, 'home');
      if (bad !== undefined) return bad;
      const current = store.homeViews.get(user);
      const hash = str(args, 'hash');
      if (hash !== undefined && current !== undefined && hash !== current.hash) {
        return reply({ ok: false, error: 'hash_conflict' });
      }
      const stored: StoredView = {
        id: current?.id ?? store.newId('V'),
        user,
        view,
        hash: `${Math.floor(deps.clock.now() / 1000)}.${randomBytes(4).toString('hex')}`,
        at: deps.clock.now(),
      };
      store.homeViews.set(user, stored);
      store.homeViewHistory.push(stored);
      return reply({ ok: true, view: viewObject(stored) });
    },

    'views.open': (args) => {
      const trigger = takeTrigger(
        deps.triggers.get(str(args, 'trigger_id') ?? ''),
        deps.triggerLifetimeMs,
        deps.clock.now(),
      );
      if (!trigger.ok) return reply({ ok: false, error: trigger.error });
      const view = readView(args);
      if (view === undefined) return invalidArguments('missing required field: view');
      const bad = checkView(view, 'modal');
      if (bad !== undefined) return bad;
      const stored: StoredView = {
        id: store.newId('V'),
        user: '',
        view,
        hash: store.newTs(),
        at: deps.clock.now(),
      };
      store.modals.set(stored.id, stored);
      return reply({ ok: true, view: viewObject(stored) });
    },

    'views.update': (args) => {
      const viewId = str(args, 'view_id');
      const externalId = str(args, 'external_id');
      const current = [...store.modals.values()].find(
        (v) => v.id === viewId || (externalId !== undefined && v.view.external_id === externalId),
      );
      if (current === undefined) return reply({ ok: false, error: 'not_found' });
      const view = readView(args);
      if (view === undefined) return invalidArguments('missing required field: view');
      const bad = checkView(view, 'modal');
      if (bad !== undefined) return bad;
      const hash = str(args, 'hash');
      if (hash !== undefined && hash !== current.hash) return reply({ ok: false, error: 'hash_conflict' });
      current.view = view;
      current.hash = store.newTs();
      return reply({ ok: true, view: viewObject(current) });
    },

    'users.info': (args) => {
      const user = store.users.get(str(args, 'user') ?? '');
      if (user === undefined) return reply({ ok: false, error: 'user_not_found' });
      return reply({ ok: true, user });
    },
  };
}

function reply(body: Record<string, unknown>, status = 200, headers: Record<string, string> = {}): ApiReply {
  return { status, headers, body };
}

function invalidArguments(message: string): ApiReply {
  return reply({
    ok: false,
    error: 'invalid_arguments',
    response_metadata: { messages: [`[ERROR] ${message}`] },
  });
}

function blockErrors(errors: string[]): ApiReply {
  return reply({
    ok: false,
    error: 'invalid_blocks',
    errors,
    response_metadata: { messages: errors.map((e) => `[ERROR] ${e}`) },
  });
}

/** Form fields are strings; JSON bodies may carry numbers and booleans for the same fields. */
function str(args: Args, key: string): string | undefined {
  const v = args[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

function parseJson(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

/** Slack's history cursors are base64 of `next_ts:<ts without the dot>`; this one marks the next message. */
function encodeCursor(ts: string): string {
  return Buffer.from(`next_ts:${tsMicros(ts)}`).toString('base64');
}

function decodeCursor(cursor: string): number | undefined {
  const m = /^next_ts:(\d+)$/.exec(Buffer.from(cursor, 'base64').toString('utf8'));
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

export function permalink(baseUrl: string, channel: string, ts: string): string {
  return `${baseUrl}/archives/${channel}/p${ts.replace('.', '')}`;
}
