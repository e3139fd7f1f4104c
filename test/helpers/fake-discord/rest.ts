// The fake REST API under /api/v10: gateway discovery, the interaction callback and webhook routes,
// channel messages, command registration. Each request is recorded, then authenticated, rate limited and
// judged by rules.ts before it touches the store; refusals carry Discord's status and JSON.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type APIApplicationCommand,
  type APIMessageInteractionMetadata,
  type APIUser,
  ApplicationCommandType,
  ChannelType,
  InteractionResponseType,
  InteractionType,
  MessageFlags,
  MessageType,
} from 'discord-api-types/v10';
import type { Cdn } from './cdn.js';
import type { FakeClock, Snowflakes } from './clock.js';
import {
  headerRecord,
  parseBody,
  type RecordedFile,
  type RecordedRequest,
  readBody,
  sendJson,
} from './http.js';
import type { MessageEventKind } from './intents.js';
import { applyMessageBody } from './messages.js';
import { channelPayload, messagePayload } from './payloads.js';
import type { RateLimiter } from './rate-limit.js';
import {
  checkAckWindow,
  checkFollowUpLimit,
  checkSingleAck,
  checkTokenLifetime,
  checkUploads,
  commandIssues,
  deferIssues,
  errors,
  type Issue,
  invalidForm,
  isEmptyMessage,
  messageIssues,
  modalIssues,
  RestError,
  type RuleName,
} from './rules.js';
import {
  type AttachmentState,
  type ChannelState,
  compareIds,
  type InteractionState,
  type MessageState,
  type Store,
} from './state.js';

export interface RestContext {
  store: Store;
  clock: FakeClock;
  ids: Snowflakes;
  cdn: Cdn;
  limiter: RateLimiter | undefined;
  enabled: (rule: RuleName) => boolean;
  token: string;
  applicationId: string;
  applicationFlags: number;
  bot: APIUser;
  uploadLimit: number;
  gatewayUrl: () => string;
  /** GET /gateway/bot's `shards` and `max_concurrency`. */
  recommendedShards: number;
  maxConcurrency: number;
  /** Whether the app is approved for MESSAGE_CONTENT (REST reads blank others' messages otherwise). */
  messageContentApproved: boolean;
  messageEvent: (kind: MessageEventKind, message: MessageState) => void;
  /** The bot's DM channel with a known user (made on first use), or undefined for unknown users. */
  openDm: (userId: string) => ChannelState | undefined;
  knownUser: (userId: string) => APIUser | undefined;
  changed: () => void;
}

interface Call {
  rec: RecordedRequest;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  files: RecordedFile[];
}

interface Reply {
  status: number;
  body?: unknown;
}

interface Route {
  method: string;
  template: string;
  segments: string[];
  auth: boolean;
  /** Major parameter for the rate-limit bucket; undefined = not rate limited. */
  major: ((params: Record<string, string>) => string) | undefined;
  handler: (call: Call) => Reply | Promise<Reply>;
}

const CALLBACK_TYPES: Record<number, readonly number[]> = {
  [InteractionType.Ping]: [InteractionResponseType.Pong],
  [InteractionType.ApplicationCommand]: [4, 5, 9, 10, 12],
  [InteractionType.MessageComponent]: [4, 5, 6, 7, 9, 10, 12],
  [InteractionType.ApplicationCommandAutocomplete]: [8],
  [InteractionType.ModalSubmit]: [4, 5, 6, 7, 10, 12],
};

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

export class FakeRest {
  readonly requests: RecordedRequest[] = [];
  readonly #routes: Route[] = [];
  #seq = 0;

  constructor(private readonly ctx: RestContext) {
    this.#defineRoutes();
  }

  /** Handles a request whose path starts below `/api` (e.g. `/v10/users/@me`). */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    apiPath: string,
    query: URLSearchParams,
  ): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = apiPath.replace(/^\/v\d+/, '');
    let rec: RecordedRequest | undefined;
    let headers: Record<string, string> = {};
    try {
      const raw = await readBody(req);
      const parsed = await parseBody(req.headers['content-type'], raw).catch((error: unknown) => {
        rec = this.#record(req, method, path, query, undefined, []);
        throw error;
      });
      rec = this.#record(req, method, path, query, parsed.body, parsed.files);
      if (!apiPath.startsWith('/v10/')) throw errors.notFound();
      const match = this.#match(method, path);
      if (!match) throw errors.notFound();
      const { route, params } = match;
      rec.route = `${method} ${route.template}`;
      if (route.auth && this.ctx.enabled('auth') && req.headers.authorization !== `Bot ${this.ctx.token}`) {
        throw errors.unauthorized();
      }
      if (route.major && this.ctx.limiter && this.ctx.enabled('rate-limit')) {
        const template = route.template.replace('@original', ':message');
        headers = this.ctx.limiter.take(`${method} ${template}|${route.major(params)}`);
      }
      const reply = await route.handler({ rec, params, query, body: parsed.body, files: parsed.files });
      rec.status = reply.status;
      rec.response = reply.body;
      sendJson(res, reply.status, reply.body, headers);
    } catch (error) {
      const refusal = error instanceof RestError ? error : undefined;
      if (!refusal) console.error('fake-discord: handler failed', error);
      const status = refusal?.status ?? 500;
      const body = refusal?.body ?? { code: 0, message: '500: Internal Server Error' };
      if (rec) {
        rec.status = status;
        rec.response = body;
      }
      sendJson(res, status, body, { ...headers, ...(refusal?.headers ?? {}) });
    } finally {
      this.ctx.changed();
    }
  }

  #record(
    req: IncomingMessage,
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
    files: RecordedFile[],
  ): RecordedRequest {
    const rec: RecordedRequest = {
      seq: ++this.#seq,
      at: this.ctx.clock.now(),
      method,
      path,
      route: `${method} ${path}`,
      query: Object.fromEntries(query),
      headers: headerRecord(req),
      body,
      files,
      status: 0,
      response: undefined,
    };
    this.requests.push(rec);
    return rec;
  }

  #match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    const parts = path.split('/').filter(Boolean);
    for (const route of this.#routes) {
      if (route.method !== method || route.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      const ok = route.segments.every((segment, i) => {
        const part = decodeURIComponent(parts[i] ?? '');
        if (segment.startsWith(':')) {
          params[segment.slice(1)] = part;
          return true;
        }
        return segment === part;
      });
      if (ok) return { route, params };
    }
    return undefined;
  }

  #route(
    method: string,
    template: string,
    handler: Route['handler'],
    options: { auth?: boolean; major?: Route['major'] } = {},
  ): void {
    this.#routes.push({
      method,
      template,
      segments: template.split('/').filter(Boolean),
      auth: options.auth ?? true,
      major: options.major,
      handler,
    });
  }

  /** Refuses with `error` unless the rule is disabled. */
  #enforce(rule: RuleName, error: RestError | undefined): void {
    if (error && this.ctx.enabled(rule)) throw error;
  }

  #enforceIssues(issues: readonly Issue[]): void {
    const live = issues.filter((issue) => this.ctx.enabled(issue.rule));
    if (live.length > 0) throw invalidForm(live);
  }

  #defineRoutes(): void {
    const ctx = this.ctx;
    const byChannel = (p: Record<string, string>) => `channel:${p.channel}`;
    const byWebhook = (p: Record<string, string>) => `webhook:${p.app}/${p.token}`;
    const global = () => 'global';

    this.#route('GET', '/gateway', () => ({ status: 200, body: { url: ctx.gatewayUrl() } }), { auth: false });
    this.#route('GET', '/gateway/bot', () => ({
      status: 200,
      body: {
        url: ctx.gatewayUrl(),
        shards: ctx.recommendedShards,
        session_start_limit: {
          total: 1000,
          remaining: 999,
          reset_after: 14_400_000,
          max_concurrency: ctx.maxConcurrency,
        },
      },
    }));
    this.#route('GET', '/users/@me', () => ({ status: 200, body: ctx.bot }), { major: global });
    this.#route('GET', '/applications/@me', () => ({ status: 200, body: this.#application() }), {
      major: global,
    });
    this.#route('GET', '/oauth2/applications/@me', () => ({ status: 200, body: this.#application() }));

    for (const scope of ['', '/guilds/:guild'] as const) {
      const base = `/applications/:app${scope}/commands`;
      const major = (p: Record<string, string>) => `app:${p.app}`;
      this.#route('GET', base, (call) => ({ status: 200, body: this.#commandsFor(call.params) }), { major });
      this.#route('PUT', base, (call) => this.#putCommands(call), { major });
      this.#route('POST', base, (call) => this.#postCommand(call), { major });
      this.#route('GET', `${base}/:command`, (call) => this.#commandRoute(call, 'get'), { major });
      this.#route('PATCH', `${base}/:command`, (call) => this.#commandRoute(call, 'patch'), { major });
      this.#route('DELETE', `${base}/:command`, (call) => this.#commandRoute(call, 'delete'), { major });
    }

    // Interaction callbacks are not rate limited (@discordjs/rest sends them through its burst handler).
    this.#route('POST', '/interactions/:id/:token/callback', (call) => this.#callback(call), { auth: false });

    const hook = '/webhooks/:app/:token';
    this.#route('POST', hook, (call) => this.#followUp(call), { auth: false, major: byWebhook });
    for (const message of ['@original', ':message'] as const) {
      const path = `${hook}/messages/${message}`;
      this.#route('GET', path, (call) => this.#webhookMessage(call, 'get'), {
        auth: false,
        major: byWebhook,
      });
      this.#route('PATCH', path, (call) => this.#webhookMessage(call, 'patch'), {
        auth: false,
        major: byWebhook,
      });
      this.#route('DELETE', path, (call) => this.#webhookMessage(call, 'delete'), {
        auth: false,
        major: byWebhook,
      });
    }

    this.#route(
      'GET',
      '/channels/:channel',
      (call) => ({
        status: 200,
        body: channelPayload(this.#readableChannel(call.params.channel)),
      }),
      { major: byChannel },
    );
    this.#route('GET', '/channels/:channel/messages', (call) => this.#history(call), { major: byChannel });
    this.#route('POST', '/channels/:channel/messages', (call) => this.#channelPost(call), {
      major: byChannel,
    });
    this.#route('GET', '/channels/:channel/messages/:message', (call) => this.#channelMessage(call, 'get'), {
      major: byChannel,
    });
    this.#route(
      'PATCH',
      '/channels/:channel/messages/:message',
      (call) => this.#channelMessage(call, 'patch'),
      {
        major: byChannel,
      },
    );
    this.#route(
      'DELETE',
      '/channels/:channel/messages/:message',
      (call) => this.#channelMessage(call, 'delete'),
      {
        major: byChannel,
      },
    );
    this.#route(
      'POST',
      '/channels/:channel/typing',
      (call) => {
        this.#readableChannel(call.params.channel);
        return { status: 204 };
      },
      { major: byChannel },
    );
    this.#route(
      'PUT',
      '/channels/:channel/messages/:message/reactions/:emoji/@me',
      (call) => {
        this.#channelMessageOf(call.params.channel, call.params.message);
        return { status: 204 };
      },
      { major: byChannel },
    );
    this.#route('POST', '/users/@me/channels', (call) => this.#openDm(call), { major: global });
    this.#route(
      'GET',
      '/users/:user',
      (call) => {
        const user =
          call.params.user === this.ctx.bot.id ? this.ctx.bot : this.ctx.knownUser(call.params.user ?? '');
        if (!user) throw errors.unknownUser();
        return { status: 200, body: user };
      },
      { major: global },
    );
    this.#route('POST', '/attachments/refresh-urls', (call) => this.#refreshUrls(call), { major: global });
  }

  #application() {
    return {
      id: this.ctx.applicationId,
      name: this.ctx.bot.username,
      icon: null,
      description: '',
      summary: '',
      bot_public: true,
      bot_require_code_grant: false,
      verify_key: '0'.repeat(64),
      flags: this.ctx.applicationFlags,
      team: null,
      bot: this.ctx.bot,
      owner: this.ctx.bot,
    };
  }

  // --- views --------------------------------------------------------------------------------------------

  messageView(message: MessageState, options: { respectContentIntent?: boolean } = {}) {
    const attachments = this.attachmentsOf(message).map((a) => this.ctx.cdn.toApi(a));
    const view = messagePayload(message, attachments);
    if (
      options.respectContentIntent &&
      !this.ctx.messageContentApproved &&
      this.ctx.enabled('message-content-intent')
    ) {
      if (!contentExempt(message, this.ctx.bot.id, this.ctx.store)) return blankContent(view);
    }
    return view;
  }

  attachmentsOf(message: MessageState): AttachmentState[] {
    return message.attachmentIds.flatMap((id) => {
      const attachment = this.ctx.store.attachments.get(id);
      return attachment ? [attachment] : [];
    });
  }

  // --- commands -----------------------------------------------------------------------------------------

  #commandScope(params: Record<string, string>): string {
    if (params.app !== this.ctx.applicationId) throw errors.missingAccess();
    const guild = params.guild;
    if (guild !== undefined && !this.ctx.store.guilds.has(guild)) throw errors.missingAccess();
    return guild ?? '';
  }

  #commandsFor(params: Record<string, string>): APIApplicationCommand[] {
    return this.ctx.store.commands.get(this.#commandScope(params)) ?? [];
  }

  #makeCommand(
    raw: unknown,
    scope: string,
    existing: readonly APIApplicationCommand[],
  ): APIApplicationCommand {
    const input = record(raw);
    const type = typeof input.type === 'number' ? input.type : ApplicationCommandType.ChatInput;
    const name = String(input.name ?? '');
    const previous = existing.find((c) => c.name === name && c.type === type);
    return {
      default_member_permissions: null,
      nsfw: false,
      contexts: null,
      integration_types: [0],
      description_localizations: null,
      name_localizations: null,
      ...input,
      id: previous?.id ?? this.ctx.ids.next(),
      application_id: this.ctx.applicationId,
      ...(scope ? { guild_id: scope } : {}),
      type,
      name,
      description: typeof input.description === 'string' ? input.description : '',
      version: this.ctx.ids.next(),
    } as APIApplicationCommand;
  }

  #putCommands(call: Call): Reply {
    const scope = this.#commandScope(call.params);
    if (!Array.isArray(call.body)) {
      throw invalidForm([
        { rule: 'command-shape', path: [], code: 'LIST_TYPE_CONVERT', message: 'Must be an array.' },
      ]);
    }
    this.#enforceIssues(commandIssues(call.body));
    const existing = this.ctx.store.commands.get(scope) ?? [];
    const commands = call.body.map((raw) => this.#makeCommand(raw, scope, existing));
    this.ctx.store.commands.set(scope, commands);
    return { status: 200, body: commands };
  }

  #postCommand(call: Call): Reply {
    const scope = this.#commandScope(call.params);
    const existing = this.ctx.store.commands.get(scope) ?? [];
    const command = this.#makeCommand(call.body, scope, existing);
    const rest = existing.filter((c) => c.id !== command.id);
    this.#enforceIssues(commandIssues([...rest, command]));
    this.ctx.store.commands.set(scope, [...rest, command]);
    return { status: rest.length === existing.length ? 201 : 200, body: command };
  }

  #commandRoute(call: Call, action: 'get' | 'patch' | 'delete'): Reply {
    const scope = this.#commandScope(call.params);
    const existing = this.ctx.store.commands.get(scope) ?? [];
    const command = existing.find((c) => c.id === call.params.command);
    if (!command) throw errors.unknownCommand();
    if (action === 'get') return { status: 200, body: command };
    if (action === 'delete') {
      this.ctx.store.commands.set(
        scope,
        existing.filter((c) => c !== command),
      );
      return { status: 204 };
    }
    const updated = { ...command, ...record(call.body), id: command.id, version: this.ctx.ids.next() };
    const next = existing.map((c) => (c === command ? (updated as APIApplicationCommand) : c));
    this.#enforceIssues(commandIssues(next));
    this.ctx.store.commands.set(scope, next);
    return { status: 200, body: updated };
  }

  // --- interactions -------------------------------------------------------------------------------------

  #callback(call: Call): Reply {
    const { store, clock } = this.ctx;
    const it = store.interactions.get(call.params.id ?? '');
    if (!it || it.token !== call.params.token) throw errors.unknownInteraction();
    call.rec.interactionId = it.id;
    this.#enforce('ack-window', checkAckWindow(it.dispatchedAt, clock.now()));
    this.#enforce('single-ack', checkSingleAck(it.ack !== undefined));
    const body = record(call.body);
    const type = typeof body.type === 'number' ? body.type : -1;
    const allowed = CALLBACK_TYPES[it.type] ?? [];
    const needsSource =
      type === InteractionResponseType.DeferredMessageUpdate ||
      type === InteractionResponseType.UpdateMessage;
    if (!allowed.includes(type) || (needsSource && !it.sourceMessageId)) {
      this.#enforceIssues([
        {
          rule: 'message-shape',
          path: ['type'],
          code: 'INTERACTION_RESPONSE_TYPE_INVALID',
          message: `Callback type ${type} is not valid for interaction type ${it.type}.`,
        },
      ]);
    }
    const data = body.data;
    let message: MessageState | undefined;
    switch (type) {
      case InteractionResponseType.ChannelMessageWithSource:
        message = this.#createMessage(it.channelId, data, call.files, {
          interaction: it,
          sizeLimit: it.sizeLimit,
          allowEphemeral: true,
        });
        it.originalId = message.id;
        break;
      case InteractionResponseType.DeferredChannelMessageWithSource: {
        this.#enforceIssues(deferIssues(data));
        const ephemeral = (Number(record(data).flags ?? 0) & MessageFlags.Ephemeral) !== 0;
        message = this.#storeMessage({
          channelId: it.channelId,
          author: this.ctx.bot,
          content: '',
          embeds: [],
          components: [],
          flags: MessageFlags.Loading | (ephemeral ? MessageFlags.Ephemeral : 0),
          attachments: [],
          interaction: it,
        });
        it.originalId = message.id;
        it.deferredEphemeral = ephemeral;
        break;
      }
      case InteractionResponseType.DeferredMessageUpdate:
        if (it.sourceMessageId) it.originalId = it.sourceMessageId;
        break;
      case InteractionResponseType.UpdateMessage: {
        const source = it.sourceMessageId ? store.liveMessage(it.sourceMessageId) : undefined;
        if (!source) throw errors.unknownMessage();
        this.#editMessage(source, data, call.files, it.sizeLimit);
        it.originalId = source.id;
        message = source;
        break;
      }
      case InteractionResponseType.ApplicationCommandAutocompleteResult: {
        const choices = record(data).choices;
        if (!Array.isArray(choices) || choices.length > 25) {
          this.#enforceIssues([
            {
              rule: 'message-shape',
              path: ['data', 'choices'],
              code: 'BASE_TYPE_MAX_LENGTH',
              message: 'Must be 25 or fewer in length.',
            },
          ]);
        }
        break;
      }
      case InteractionResponseType.Modal:
        this.#enforceIssues(modalIssues(data));
        break;
      default:
        break;
    }
    it.ack = { type, at: clock.now() };
    if (message && type !== InteractionResponseType.UpdateMessage) this.#announce('create', message);
    if (call.query.get('with_response') !== 'true') return { status: 204 };
    return {
      status: 200,
      body: {
        interaction: {
          id: it.id,
          type: it.type,
          ...(message
            ? {
                response_message_id: message.id,
                response_message_loading: (message.flags & MessageFlags.Loading) !== 0,
                response_message_ephemeral: (message.flags & MessageFlags.Ephemeral) !== 0,
              }
            : {}),
        },
        resource: { type, ...(message ? { message: this.messageView(message) } : {}) },
      },
    };
  }

  #webhookInteraction(call: Call): InteractionState {
    const it = this.ctx.store.interactionsByToken.get(call.params.token ?? '');
    if (!it) throw errors.invalidWebhookToken();
    if (call.params.app !== this.ctx.applicationId) throw errors.unknownWebhook();
    call.rec.interactionId = it.id;
    this.#enforce('token-lifetime', checkTokenLifetime(it.dispatchedAt, this.ctx.clock.now()));
    return it;
  }

  #followUp(call: Call): Reply {
    const it = this.#webhookInteraction(call);
    if (!it.ack) throw errors.unknownWebhook();
    this.#enforce('follow-up-limit', checkFollowUpLimit(it.botPresent, it.followUpIds.length));
    const original = it.originalId ? this.ctx.store.liveMessage(it.originalId) : undefined;
    let message: MessageState;
    if (
      it.ack.type === InteractionResponseType.DeferredChannelMessageWithSource &&
      original &&
      (original.flags & MessageFlags.Loading) !== 0
    ) {
      // Discord fills the "thinking" message with the first follow-up, keeping the defer's ephemerality.
      const body = { ...record(call.body) };
      const flags = typeof body.flags === 'number' ? body.flags : 0;
      body.flags = (flags & ~MessageFlags.Ephemeral) | (it.deferredEphemeral ? MessageFlags.Ephemeral : 0);
      this.#editMessage(original, body, call.files, it.sizeLimit);
      message = original;
    } else {
      message = this.#createMessage(it.channelId, call.body, call.files, {
        interaction: it,
        sizeLimit: it.sizeLimit,
        allowEphemeral: true,
      });
      this.#announce('create', message);
    }
    it.followUpIds.push(message.id);
    return call.query.get('wait') === 'false'
      ? { status: 204 }
      : { status: 200, body: this.messageView(message) };
  }

  #webhookMessage(call: Call, action: 'get' | 'patch' | 'delete'): Reply {
    const it = this.#webhookInteraction(call);
    const id = call.params.message ?? it.originalId;
    const ownedIds = new Set([it.originalId, ...it.followUpIds]);
    const message = id && ownedIds.has(id) ? this.ctx.store.liveMessage(id) : undefined;
    if (!message) throw errors.unknownMessage();
    if (action === 'get') return { status: 200, body: this.messageView(message) };
    if (action === 'delete') {
      message.deleted = true;
      this.#announce('delete', message);
      return { status: 204 };
    }
    this.#editMessage(message, call.body, call.files, it.sizeLimit);
    return { status: 200, body: this.messageView(message) };
  }

  // --- channels -----------------------------------------------------------------------------------------

  #readableChannel(id: string | undefined) {
    const channel = id ? this.ctx.store.channels.get(id) : undefined;
    if (!channel) throw errors.unknownChannel();
    if (!channel.botCanRead) throw errors.missingAccess();
    return channel;
  }

  #channelMessageOf(channelId: string | undefined, messageId: string | undefined): MessageState {
    this.#readableChannel(channelId);
    const message = messageId ? this.ctx.store.liveMessage(messageId) : undefined;
    if (!message || message.channelId !== channelId || (message.flags & MessageFlags.Ephemeral) !== 0) {
      throw errors.unknownMessage();
    }
    return message;
  }

  #history(call: Call): Reply {
    const channel = this.#readableChannel(call.params.channel);
    const limitText = call.query.get('limit');
    const limit = limitText === null ? 50 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw invalidForm([
        {
          rule: 'message-shape',
          path: ['limit'],
          code: 'NUMBER_TYPE_MAX',
          message: 'Must be between 1 and 100.',
        },
      ]);
    }
    const all = this.ctx.store
      .channelMessages(channel.id)
      .filter((m) => (m.flags & MessageFlags.Ephemeral) === 0);
    const before = call.query.get('before');
    const after = call.query.get('after');
    const around = call.query.get('around');
    let picked: MessageState[];
    if (after) {
      // The `limit` messages right after the anchor; the response is still newest first.
      picked = all.filter((m) => compareIds(m.id, after) > 0).slice(0, limit);
    } else if (around) {
      const index = all.findIndex((m) => compareIds(m.id, around) >= 0);
      const start = Math.max(0, (index < 0 ? all.length : index) - Math.floor(limit / 2));
      picked = all.slice(start, start + limit);
    } else {
      const older = before ? all.filter((m) => compareIds(m.id, before) < 0) : all;
      picked = older.slice(Math.max(0, older.length - limit));
    }
    return {
      status: 200,
      body: picked.reverse().map((m) => this.messageView(m, { respectContentIntent: true })),
    };
  }

  #channelPost(call: Call): Reply {
    const channel = this.#readableChannel(call.params.channel);
    const message = this.#createMessage(channel.id, call.body, call.files, {
      sizeLimit: this.ctx.uploadLimit,
      allowEphemeral: false,
    });
    this.#announce('create', message);
    return { status: 200, body: this.messageView(message) };
  }

  #channelMessage(call: Call, action: 'get' | 'patch' | 'delete'): Reply {
    const message = this.#channelMessageOf(call.params.channel, call.params.message);
    if (action === 'get')
      return { status: 200, body: this.messageView(message, { respectContentIntent: true }) };
    if (action === 'delete') {
      message.deleted = true;
      this.#announce('delete', message);
      return { status: 204 };
    }
    if (message.author.id !== this.ctx.bot.id) throw errors.cannotEditOthers();
    this.#editMessage(message, call.body, call.files, this.ctx.uploadLimit);
    return { status: 200, body: this.messageView(message) };
  }

  #openDm(call: Call): Reply {
    const channel = this.ctx.openDm(String(record(call.body).recipient_id ?? ''));
    if (!channel) throw errors.unknownUser();
    return { status: 200, body: channelPayload(channel) };
  }

  #refreshUrls(call: Call): Reply {
    const urls = record(call.body).attachment_urls;
    if (!Array.isArray(urls)) throw invalidForm([]);
    const refreshed = urls.flatMap((original) => {
      const id = typeof original === 'string' ? /\/attachments\/\d+\/(\d+)\//.exec(original)?.[1] : undefined;
      const attachment = id ? this.ctx.store.attachments.get(id) : undefined;
      return attachment ? [{ original, refreshed: this.ctx.cdn.url(attachment) }] : [];
    });
    return { status: 200, body: { refreshed_urls: refreshed } };
  }

  // --- message writes -----------------------------------------------------------------------------------

  #createMessage(
    channelId: string,
    body: unknown,
    files: readonly RecordedFile[],
    options: { interaction?: InteractionState; sizeLimit: number; allowEphemeral: boolean },
  ): MessageState {
    this.#enforce('upload-size', checkUploads(sizes(files), options.sizeLimit));
    const change = applyMessageBody(body, files, undefined, [], {
      ids: this.ctx.ids,
      channelId,
      allowEphemeral: options.allowEphemeral,
    });
    if (isEmptyMessage(change.draft)) this.#enforce('message-shape', errors.emptyMessage());
    this.#enforceIssues(messageIssues(change.draft));
    return this.#storeMessage({
      channelId,
      author: this.ctx.bot,
      content: change.draft.content,
      embeds: change.embeds,
      components: change.components,
      flags: change.draft.flags,
      attachments: change.attachments,
      ...(options.interaction ? { interaction: options.interaction } : {}),
    });
  }

  #editMessage(
    message: MessageState,
    body: unknown,
    files: readonly RecordedFile[],
    sizeLimit: number,
  ): void {
    this.#enforce('upload-size', checkUploads(sizes(files), sizeLimit));
    const change = applyMessageBody(body, files, message, this.attachmentsOf(message), {
      ids: this.ctx.ids,
      channelId: message.channelId,
      allowEphemeral: false,
    });
    if (isEmptyMessage(change.draft)) this.#enforce('message-shape', errors.emptyMessage());
    this.#enforceIssues(messageIssues(change.draft, message.flags));
    for (const attachment of change.added) this.ctx.store.attachments.set(attachment.id, attachment);
    const wasLoading = (message.flags & MessageFlags.Loading) !== 0;
    message.content = change.draft.content;
    message.embeds = change.embeds;
    message.components = change.components;
    message.flags = change.draft.flags;
    message.attachmentIds = change.attachments.map((a) => a.id);
    // Completing a deferred reply is not an edit in Discord's eyes.
    if (!wasLoading) message.editedAt = this.ctx.clock.now();
    this.#announce('update', message);
  }

  #storeMessage(input: {
    channelId: string;
    author: APIUser;
    content: string;
    embeds: MessageState['embeds'];
    components: unknown[];
    flags: number;
    attachments: AttachmentState[];
    interaction?: InteractionState;
  }): MessageState {
    const { store } = this.ctx;
    for (const attachment of input.attachments) store.attachments.set(attachment.id, attachment);
    const channel = store.channels.get(input.channelId);
    const it = input.interaction;
    const message: MessageState = {
      id: this.ctx.ids.next(),
      channelId: input.channelId,
      ...(channel?.guildId ? { guildId: channel.guildId } : {}),
      author: input.author,
      content: input.content,
      embeds: input.embeds,
      components: input.components,
      flags: input.flags,
      attachmentIds: input.attachments.map((a) => a.id),
      at: this.ctx.clock.now(),
      editedAt: null,
      type: it ? messageTypeFor(it) : MessageType.Default,
      mentions: [],
      deleted: false,
      ...(it
        ? {
            webhookId: this.ctx.applicationId,
            applicationId: this.ctx.applicationId,
            interactionMetadata: interactionMetadata(it),
          }
        : {}),
    };
    store.messages.set(message.id, message);
    return message;
  }

  #announce(kind: MessageEventKind, message: MessageState): void {
    const channel = this.ctx.store.channels.get(message.channelId);
    if (!channel?.botCanRead || (message.flags & MessageFlags.Ephemeral) !== 0) return;
    this.ctx.messageEvent(kind, message);
  }
}

function sizes(files: readonly RecordedFile[]): { size: number }[] {
  return files.map((file) => ({ size: file.bytes.length }));
}

function messageTypeFor(it: InteractionState): MessageType {
  if (it.type !== InteractionType.ApplicationCommand) return MessageType.Default;
  const data = record(record(it.payload).data);
  return data.type === ApplicationCommandType.ChatInput
    ? MessageType.ChatInputCommand
    : MessageType.ContextMenuCommand;
}

function interactionMetadata(it: InteractionState): APIMessageInteractionMetadata {
  const payload = record(it.payload);
  const user = (record(payload.member).user ?? payload.user) as APIUser;
  return {
    id: it.id,
    type: it.type,
    user,
    authorizing_integration_owners: record(payload.authorizing_integration_owners),
    ...(it.sourceMessageId ? { interacted_message_id: it.sourceMessageId } : {}),
  } as APIMessageInteractionMetadata;
}

/** MESSAGE_CONTENT does not hide the bot's own messages, DMs, or messages that mention the bot. */
export function contentExempt(message: MessageState, botId: string, store: Store): boolean {
  if (message.author.id === botId) return true;
  if (store.channels.get(message.channelId)?.type === ChannelType.DM) return true;
  return message.mentions.some((u) => u.id === botId);
}

export function blankContent<T extends { content: string; embeds: unknown[]; attachments: unknown[] }>(
  view: T,
): T {
  return { ...view, content: '', embeds: [], attachments: [], components: [] };
}
