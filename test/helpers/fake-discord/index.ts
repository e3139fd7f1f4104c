// A local Discord for tests: the unmodified discord.js Client logs in to it over real HTTP and WebSocket
// on 127.0.0.1, receives dispatches a test sends, and answers through REST routes that enforce Discord's
// rules (rules.ts). Tests build payloads here, dispatch them, then read what the client did.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type APIAttachment,
  type APIAuthorizingIntegrationOwnersMap,
  type APIEmbed,
  type APIInteraction,
  type APIMessage,
  type APIUser,
  type ApplicationFlags,
  ApplicationIntegrationType,
  ChannelType,
  GatewayDispatchEvents,
  GatewayIntentBits,
  InteractionContextType,
  type InteractionResponseType,
  type Locale,
  MessageType,
} from 'discord-api-types/v10';
import { Cdn, pngSize } from './cdn.js';
import { FakeClock, randomToken, Snowflakes, snowflakeTime } from './clock.js';
import {
  FakeGateway,
  type GatewayReceived,
  type GatewaySession,
  PRIVILEGED_INTENTS,
  shardOf,
} from './gateway.js';
import type { RecordedRequest } from './http.js';
import { type MessageEventKind, messageEventFor, messageEventName } from './intents.js';
import {
  buttonInteraction,
  type ChatInputInput,
  chatInputInteraction,
  everyoneRole,
  guildCreatePayload,
  type InteractionBase,
  type InteractionPlace,
  type ModalSubmitInput,
  memberPayload,
  messageCommandInteraction,
  modalSubmitInteraction,
  PERMISSIONS,
  selectInteraction,
  userCommandInteraction,
  userPayload,
} from './payloads.js';
import { DefaultRateLimitOptions, RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { contentExempt, FakeRest } from './rest.js';
import { LIMITS, type RuleName } from './rules.js';
import {
  type ChannelState,
  type GuildState,
  type InteractionState,
  type MessageState,
  Store,
} from './state.js';

export { FakeClock } from './clock.js';
export { type GatewayReceived, type GatewaySession, shardOf } from './gateway.js';
export type { RecordedFile, RecordedRequest } from './http.js';
export type { ChatInputInput, ModalSubmitInput, OptionValue } from './payloads.js';
export type { RateLimitOptions } from './rate-limit.js';
export { LIMITS, RULE_NAMES, type RuleName } from './rules.js';

export interface FakeGuildOptions {
  /** @defaultValue 'Test Guild' */
  name?: string;
  /** Text channel names; the first is the default channel of interactions. @defaultValue ['general'] */
  channels?: readonly string[];
}

export interface FakeDiscordOptions {
  /** @defaultValue a random token */
  token?: string;
  /** @defaultValue a fresh snowflake */
  applicationId?: string;
  /** @defaultValue 'vqclip' */
  botName?: string;
  /** Guilds the bot is in, sent as GUILD_CREATE after READY. @defaultValue [{ name: 'Test Guild' }] */
  guilds?: readonly FakeGuildOptions[];
  /** HELLO's heartbeat_interval; discord.js first beats after a random fraction of it. @defaultValue 41_250 */
  heartbeatIntervalMs?: number;
  /** Base of the fake clock (it adds `clock.advance` offsets). @defaultValue Date.now */
  now?: () => number;
  /** Per-route limits; false turns them off. @defaultValue { limit: 5, windowMs: 5_000 } */
  rateLimit?: RateLimitOptions | false;
  /** `attachment_size_limit` of built interactions. @defaultValue 10 MiB */
  attachmentSizeLimit?: number;
  /** Largest file on channel-message routes (no interaction). @defaultValue 10 MiB */
  uploadLimit?: number;
  /** How long signed CDN URLs work. @defaultValue 24 h */
  attachmentUrlTtlMs?: number;
  /** Rules to switch off, e.g. to see a rule test fail without its rule. @defaultValue [] */
  disabledRules?: readonly RuleName[];
  /** Privileged intents the app is approved for (bitfield). @defaultValue all three */
  allowedPrivilegedIntents?: number;
  /** READY's application.flags. @defaultValue 0 */
  applicationFlags?: number;
  /** GET /gateway/bot's `shards` (what `shards: 'auto'` starts). @defaultValue 1 */
  recommendedShards?: number;
  /** GET /gateway/bot's `session_start_limit.max_concurrency` (IDENTIFYs per 5 s). @defaultValue 1 */
  maxConcurrency?: number;
}

export const DefaultFakeDiscordOptions = {
  botName: 'vqclip',
  guilds: [{ name: 'Test Guild', channels: ['general'] }],
  heartbeatIntervalMs: 41_250,
  rateLimit: DefaultRateLimitOptions,
  attachmentSizeLimit: LIMITS.attachmentSizeLimit,
  uploadLimit: 10 * 1024 * 1024,
  attachmentUrlTtlMs: 24 * 60 * 60_000,
  disabledRules: [],
  allowedPrivilegedIntents: PRIVILEGED_INTENTS,
  applicationFlags: 0,
  recommendedShards: 1,
  maxConcurrency: 1,
} as const satisfies Omit<Required<FakeDiscordOptions>, 'token' | 'applicationId' | 'now'>;

/**
 * Where an interaction happens:
 * - `guild`: a guild the bot is in (guild install, context 0).
 * - `bot-dm`: the user's DM with the bot (context 1).
 * - `foreign-guild`: a guild without the bot, the app user-installed (context 0): no channel access, 5 follow-ups.
 * - `private-channel`: a DM or group DM between users, user-installed (context 2): same limits.
 */
export type Where = 'guild' | 'bot-dm' | 'foreign-guild' | 'private-channel';

export interface PlaceInput {
  /** @defaultValue 'guild' */
  where?: Where;
  /** The invoking user. @defaultValue fake.user */
  user?: APIUser;
  /** A channel of the guild (`where: 'guild'`). @defaultValue the guild's first channel */
  channelId?: string;
  /** @defaultValue options.attachmentSizeLimit */
  attachmentSizeLimit?: number;
  /** Overrides authorizing_integration_owners. */
  owners?: APIAuthorizingIntegrationOwnersMap;
  locale?: Locale;
}

export interface WaitOptions {
  /** Real milliseconds before giving up. @defaultValue 5_000 */
  timeoutMs?: number;
  /** Words for the timeout error. */
  what?: string;
}

export interface UserMessageInput {
  /** @defaultValue the default channel */
  channelId?: string;
  content?: string;
  /** @defaultValue fake.user */
  author?: APIUser;
  /** Attachments from `addAttachment`. */
  attachments?: readonly APIAttachment[];
  embeds?: readonly APIEmbed[];
  mentionsBot?: boolean;
  /** When it was sent (its id is dated so); for seeding history. @defaultValue now */
  at?: number;
  /** Send MESSAGE_CREATE; false only stores it (history). @defaultValue true */
  dispatch?: boolean;
}

/** What a test sees of one dispatched interaction. */
export class InteractionHandle {
  constructor(
    private readonly fake: FakeDiscord,
    private readonly state: InteractionState,
  ) {}

  get id(): string {
    return this.state.id;
  }
  get token(): string {
    return this.state.token;
  }
  get payload(): APIInteraction {
    return this.state.payload;
  }
  /** Fake-clock time of dispatch: the 3 s and 15 min deadlines count from here. */
  get dispatchedAt(): number {
    return this.state.dispatchedAt;
  }
  /** The accepted callback type (4 reply, 5 defer, 6 deferred update, 7 update, 9 modal...). */
  get ackType(): InteractionResponseType | undefined {
    return this.state.ack?.type;
  }

  /** Every request made with this interaction's id or token, refused ones included, in order. */
  requests(): RecordedRequest[] {
    return this.fake.requests.filter((r) => r.interactionId === this.state.id);
  }

  /** Requests Discord refused (status >= 400). */
  rejected(): RecordedRequest[] {
    return this.requests().filter((r) => r.status >= 400);
  }

  /** The "@original" message now (after every edit); undefined before a reply/defer. */
  original(): APIMessage | undefined {
    return this.state.originalId ? this.fake.message(this.state.originalId) : undefined;
  }

  /** Follow-up messages now, oldest first (a follow-up that filled a deferred reply is the original). */
  followUps(): APIMessage[] {
    return this.state.followUpIds
      .filter((id) => id !== this.state.originalId)
      .flatMap((id) => {
        const message = this.fake.message(id);
        return message ? [message] : [];
      });
  }

  /** Resolves once a callback was accepted. */
  waitForAck(options: WaitOptions = {}): Promise<InteractionResponseType> {
    return this.fake.waitFor(() => this.state.ack?.type, {
      what: `the ack of interaction ${this.id}`,
      ...options,
    });
  }

  /** Resolves with the first request of this interaction that matches (answered, with status set). */
  waitForRequest(
    match: (r: RecordedRequest) => boolean,
    options: WaitOptions = {},
  ): Promise<RecordedRequest> {
    return this.fake.waitFor(() => this.requests().find((r) => r.status !== 0 && match(r)), {
      what: `a matching request of interaction ${this.id}`,
      ...options,
    });
  }
}

export class FakeDiscord {
  readonly clock: FakeClock;
  readonly token: string;
  readonly applicationId: string;
  readonly bot: APIUser;
  /** The default human user: owner and member of every guild, invoker of built interactions. */
  readonly user: APIUser;
  readonly #options: Omit<Required<FakeDiscordOptions>, 'token' | 'applicationId' | 'now'>;
  readonly #ids: Snowflakes;
  readonly #store = new Store();
  readonly #events = new EventEmitter();
  readonly #server: Server;
  readonly #gateway: FakeGateway;
  readonly #rest: FakeRest;
  readonly #cdn: Cdn;
  readonly #disabled: ReadonlySet<RuleName>;
  #port = 0;
  #foreign: { guild: GuildState; channel: ChannelState } | undefined;

  /** Use `startFakeDiscord`. */
  constructor(options: FakeDiscordOptions = {}) {
    this.#options = { ...DefaultFakeDiscordOptions, ...options };
    this.clock = new FakeClock(options.now);
    this.#ids = new Snowflakes(this.clock);
    this.#events.setMaxListeners(0);
    this.token = options.token ?? `${randomToken(18)}.${randomToken(4)}.${randomToken(20)}`;
    this.applicationId = options.applicationId ?? this.#ids.next();
    this.bot = userPayload(this.applicationId, this.#options.botName, true);
    this.user = userPayload(this.#ids.next(), 'alice');
    this.#disabled = new Set(this.#options.disabledRules);
    for (const guild of this.#options.guilds) this.#addGuild(guild);
    this.#server = createServer((req, res) => void this.#onRequest(req, res));
    this.#cdn = new Cdn(() => this.cdnUrl, this.clock, this.#options.attachmentUrlTtlMs);
    this.#gateway = new FakeGateway({
      token: this.token,
      heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
      allowedPrivilegedIntents: this.#options.allowedPrivilegedIntents,
      resumeUrl: () => this.gatewayUrl,
      ready: (session) => ({
        data: {
          v: 10,
          user: this.bot,
          guilds: [...this.#store.guilds.keys()]
            .filter((id) => onShard(id, session.shard))
            .map((id) => ({ id, unavailable: true })),
          application: {
            id: this.applicationId,
            flags: this.#options.applicationFlags as ApplicationFlags,
            flags_new: String(this.#options.applicationFlags),
          },
          shard: [...session.shard],
        },
      }),
      afterReady: (session) =>
        (session.intents & GatewayIntentBits.Guilds) === 0
          ? []
          : [...this.#store.guilds.values()]
              .filter((guild) => onShard(guild.id, session.shard))
              .map((guild) => ({
                t: GatewayDispatchEvents.GuildCreate,
                d: guildCreatePayload(guild, this.#channelsOf(guild), this.bot),
              })),
    });
    for (const event of ['identify', 'resume', 'close', 'dispatch', 'heartbeat']) {
      this.#gateway.on(event, () => this.#events.emit('change'));
    }
    const limiter =
      this.#options.rateLimit === false
        ? undefined
        : new RateLimiter(this.clock, { ...DefaultRateLimitOptions, ...this.#options.rateLimit });
    this.#rest = new FakeRest({
      store: this.#store,
      clock: this.clock,
      ids: this.#ids,
      cdn: this.#cdn,
      limiter,
      enabled: (rule) => !this.#disabled.has(rule),
      token: this.token,
      applicationId: this.applicationId,
      applicationFlags: this.#options.applicationFlags,
      bot: this.bot,
      uploadLimit: this.#options.uploadLimit,
      gatewayUrl: () => this.gatewayUrl,
      recommendedShards: this.#options.recommendedShards,
      maxConcurrency: this.#options.maxConcurrency,
      messageContentApproved:
        (this.#options.allowedPrivilegedIntents & GatewayIntentBits.MessageContent) !== 0,
      messageEvent: (kind, message) => this.#messageEvent(kind, message),
      knownUser: (userId) => this.#knownUser(userId),
      openDm: (userId) => {
        const user = this.#knownUser(userId);
        return user ? this.#store.channels.get(this.dmChannel(user)) : undefined;
      },
      changed: () => this.#events.emit('change'),
    });
    this.#server.on('upgrade', (req, socket, head) => this.#gateway.handleUpgrade(req, socket, head));
  }

  /** @internal */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  get port(): number {
    return this.#port;
  }
  /** For `new Client({ rest: { agent: discordRestAgent(), api: fake.apiUrl } })` (rest-agent.ts says why the agent). */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.#port}/api`;
  }
  /** Serves attachments under /attachments/... */
  get cdnUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }
  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.#port}`;
  }

  /** The first guild the bot is in. */
  get guild(): { id: string; name: string } {
    const guild = this.#store.guilds.values().next().value;
    if (!guild) throw new Error('fake-discord has no guilds (options.guilds was empty)');
    return { id: guild.id, name: guild.name };
  }
  /** Every guild the bot is in, with its first text channel, in the order of `options.guilds`. */
  guilds(): { id: string; name: string; channelId: string }[] {
    return [...this.#store.guilds.values()].map((g) => ({
      id: g.id,
      name: g.name,
      channelId: g.channelIds[0] ?? '',
    }));
  }

  /** The first text channel of the first guild. */
  get channel(): { id: string; name: string } {
    const id = this.#store.guilds.get(this.guild.id)?.channelIds[0];
    const channel = id ? this.#store.channels.get(id) : undefined;
    if (!channel) throw new Error('fake-discord: the first guild has no channels');
    return { id: channel.id, name: channel.name ?? '' };
  }

  /** The channel id by name, in the given guild or any guild the bot is in. */
  channelId(name: string, guildId?: string): string {
    for (const channel of this.#store.channels.values()) {
      if (channel.name === name && channel.botCanRead && (!guildId || channel.guildId === guildId))
        return channel.id;
    }
    throw new Error(`fake-discord: no channel named ${name}`);
  }

  /** A new human user, member of every guild the bot is in. */
  addUser(username: string): APIUser {
    const user = userPayload(this.#ids.next(), username);
    for (const guild of this.#store.guilds.values()) guild.members.push(user);
    return user;
  }

  /** The id of the DM channel between the bot and `user` (made on first use). */
  dmChannel(user: APIUser = this.user): string {
    for (const channel of this.#store.channels.values()) {
      if (channel.type === ChannelType.DM && channel.botCanRead && channel.recipient?.id === user.id)
        return channel.id;
    }
    const channel: ChannelState = {
      id: this.#ids.next(),
      type: ChannelType.DM,
      recipient: user,
      botCanRead: true,
    };
    this.#store.channels.set(channel.id, channel);
    return channel.id;
  }

  // --- recording ----------------------------------------------------------------------------------------

  /** Every REST request, in arrival order (status 0 while still being answered). */
  get requests(): readonly RecordedRequest[] {
    return this.#rest.requests;
  }

  /** Requests whose route (`'PATCH /webhooks/:app/:token/messages/@original'`) or path matches. */
  requestsTo(route: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => (typeof route === 'string' ? r.route === route : route.test(r.route)));
  }

  /** How many requests were answered 429. */
  get rateLimitedCount(): number {
    return this.requests.filter((r) => r.status === 429).length;
  }

  /**
   * Resolves when `probe` returns something other than undefined/null/false. Re-checked on every request
   * and gateway event, and every 10 ms, because a probe may also read client-side state (discord.js caches).
   */
  waitFor<T>(probe: () => T | undefined | null | false, options: WaitOptions = {}): Promise<T> {
    const { timeoutMs = 5_000, what = 'a condition' } = options;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let poll: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        if (poll) clearInterval(poll);
        this.#events.off('change', check);
      };
      function settle(value: T | undefined | null | false): boolean {
        if (value === undefined || value === null || value === false) return false;
        done();
        resolve(value);
        return true;
      }
      const check = (): void => {
        try {
          settle(probe());
        } catch (error) {
          done();
          reject(error);
        }
      };
      this.#events.on('change', check);
      poll = setInterval(check, 10);
      timer = setTimeout(() => {
        done();
        const recent = this.requests
          .slice(-8)
          .map((r) => `  ${r.route} -> ${r.status}`)
          .join('\n');
        reject(new Error(`fake-discord: no ${what} within ${timeoutMs} ms; last requests:\n${recent}`));
      }, timeoutMs);
      check();
    });
  }

  /** Resolves with the first answered request that matches. */
  waitForRequest(
    match: (r: RecordedRequest) => boolean,
    options: WaitOptions = {},
  ): Promise<RecordedRequest> {
    return this.waitFor(() => this.requests.find((r) => r.status !== 0 && match(r)), {
      what: 'matching request',
      ...options,
    });
  }

  // --- gateway ------------------------------------------------------------------------------------------

  /** Sends a raw dispatch to every session (buffered for disconnected ones). */
  dispatch(t: string, d: unknown): void {
    this.#gateway.dispatch(t, d);
  }

  /**
   * Closes every gateway socket with `code` from the server side. 4000 (or most 4xxx) makes discord.js
   * resume; non-resumable codes (4007, 4009, 1000...) also end the session so it must identify again.
   */
  closeGateway(code: number, options: { invalidateSession?: boolean; reason?: string } = {}): void {
    this.#gateway.close(code, options);
  }

  /** op 7 Reconnect: the client should reconnect and resume. */
  requestReconnect(): void {
    this.#gateway.requestReconnect();
  }

  /** op 9 Invalid Session. */
  invalidateSessions(resumable: boolean): void {
    this.#gateway.invalidateSessions(resumable);
  }

  /** Gateway sessions so far (intents, sequence, connected). */
  sessions(): GatewaySession[] {
    return this.#gateway.sessions();
  }

  /** Every payload clients sent (op 1 heartbeats, op 2 identify, op 6 resume...). */
  get gatewayReceived(): readonly GatewayReceived[] {
    return this.#gateway.received;
  }

  /** The intents of the latest IDENTIFY. */
  get intents(): number | undefined {
    return this.sessions().at(-1)?.intents;
  }

  /** Resolves once `count` sessions have identified (got READY). */
  waitForReady(count = 1, options: WaitOptions = {}): Promise<GatewaySession> {
    return this.waitFor(() => this.sessions()[count - 1], { what: `READY #${count}`, ...options });
  }

  /** Resolves once `count` RESUMEs succeeded in total. */
  waitForResume(count = 1, options: WaitOptions = {}): Promise<number> {
    return this.waitFor(
      () => {
        const resumes = this.#gateway.resumes;
        return resumes >= count ? resumes : undefined;
      },
      { what: `RESUME #${count}`, ...options },
    );
  }

  // --- interactions -------------------------------------------------------------------------------------

  slashCommand(input: Omit<ChatInputInput, 'commandId'> & { commandId?: string } & PlaceInput) {
    const command = this.#registered(input.name, 1, input.commandId);
    return chatInputInteraction(this.#base(input), {
      ...input,
      commandId: command.id,
      ...(command.guildId ? { commandGuildId: command.guildId } : {}),
    });
  }

  /** Message context-menu command on `target` (e.g. `fake.message(id)` or a posted user message). */
  messageCommand(input: { name: string; target: APIMessage; commandId?: string } & PlaceInput) {
    const command = this.#registered(input.name, 3, input.commandId);
    return messageCommandInteraction(this.#base(input), { ...input, commandId: command.id });
  }

  userCommand(input: { name: string; target: APIUser; commandId?: string } & PlaceInput) {
    const command = this.#registered(input.name, 2, input.commandId);
    return userCommandInteraction(this.#base(input), { ...input, commandId: command.id });
  }

  /**
   * A click on a button of `message` (usually `fake.message(id)` of a bot message). Throws when the
   * message has no enabled component with that custom_id: Discord could not send such a click.
   */
  buttonClick(input: { customId: string; message: APIMessage } & PlaceInput) {
    assertClickable(input.message, input.customId);
    return buttonInteraction(this.#base(input), input);
  }

  selectMenu(input: { customId: string; message: APIMessage; values: string[] } & PlaceInput) {
    assertClickable(input.message, input.customId);
    return selectInteraction(this.#base(input), input);
  }

  modalSubmit(input: ModalSubmitInput & PlaceInput) {
    return modalSubmitInteraction(this.#base(input), input);
  }

  /** Dispatches INTERACTION_CREATE; the 3 s ack window and 15 min token lifetime start now. */
  interact(payload: APIInteraction): InteractionHandle {
    const channelId = payload.channel?.id ?? payload.channel_id ?? '';
    const source = payload.message;
    if (source && !this.#store.messages.has(source.id)) this.#adoptMessage(source, payload.guild_id);
    const state: InteractionState = {
      id: payload.id,
      token: payload.token,
      type: payload.type,
      payload,
      dispatchedAt: this.clock.now(),
      botPresent: this.#store.channels.get(channelId)?.botCanRead ?? false,
      sizeLimit: payload.attachment_size_limit,
      channelId,
      ...(payload.guild_id ? { guildId: payload.guild_id } : {}),
      ...(source ? { sourceMessageId: source.id } : {}),
      followUpIds: [],
    };
    this.#store.addInteraction(state);
    this.#gateway.dispatch(GatewayDispatchEvents.InteractionCreate, payload);
    return new InteractionHandle(this, state);
  }

  // --- messages and attachments -------------------------------------------------------------------------

  /** The current state of a message (fresh signed attachment URLs), or undefined once deleted. */
  message(id: string): APIMessage | undefined {
    const message = this.#store.liveMessage(id);
    return message ? this.#rest.messageView(message) : undefined;
  }

  /** Live messages of a channel, oldest first, ephemeral ones included. */
  channelMessages(channelId: string = this.channel.id): APIMessage[] {
    return this.#store.channelMessages(channelId).map((m) => this.#rest.messageView(m));
  }

  /** Stores a file on the fake CDN and returns its attachment object (for options, modals, messages). */
  addAttachment(
    bytes: Uint8Array,
    meta: { filename: string; contentType: string; channelId?: string; description?: string },
  ): APIAttachment {
    const size = meta.contentType === 'image/png' ? pngSize(bytes) : undefined;
    const attachment = {
      id: this.#ids.next(),
      filename: meta.filename,
      contentType: meta.contentType,
      bytes: Buffer.from(bytes),
      channelId: meta.channelId ?? this.channel.id,
      ...(meta.description !== undefined ? { description: meta.description } : {}),
      ...(size ? { width: size.width, height: size.height } : {}),
    };
    this.#store.attachments.set(attachment.id, attachment);
    return this.#cdn.toApi(attachment);
  }

  /** The bytes of any attachment the fake holds (added by a test or uploaded by the client). */
  attachmentBytes(id: string): Buffer | undefined {
    return this.#store.attachments.get(id)?.bytes;
  }

  /** A message by a user: stored (history) and, unless `dispatch: false`, sent as MESSAGE_CREATE. */
  postUserMessage(input: UserMessageInput = {}): APIMessage {
    const channelId = input.channelId ?? this.channel.id;
    const channel = this.#store.channels.get(channelId);
    if (!channel) throw new Error(`fake-discord: unknown channel ${channelId}`);
    const at = input.at ?? this.clock.now();
    const message: MessageState = {
      id: input.at === undefined ? this.#ids.next() : this.#ids.at(at),
      channelId,
      ...(channel.guildId ? { guildId: channel.guildId } : {}),
      author: input.author ?? this.user,
      content: input.content ?? '',
      embeds: [...(input.embeds ?? [])],
      components: [],
      flags: 0,
      attachmentIds: (input.attachments ?? []).map((a) => a.id),
      at,
      editedAt: null,
      type: MessageType.Default,
      mentions: input.mentionsBot ? [this.bot] : [],
      deleted: false,
    };
    this.#store.messages.set(message.id, message);
    if (input.dispatch !== false) this.#messageEvent('create', message);
    return this.#rest.messageView(message);
  }

  /** A user edits their message: MESSAGE_UPDATE. */
  editUserMessage(
    id: string,
    patch: { content?: string; attachments?: readonly APIAttachment[]; embeds?: readonly APIEmbed[] },
  ): APIMessage {
    const message = this.#store.liveMessage(id);
    if (!message) throw new Error(`fake-discord: no message ${id}`);
    if (patch.content !== undefined) message.content = patch.content;
    if (patch.attachments) message.attachmentIds = patch.attachments.map((a) => a.id);
    if (patch.embeds) message.embeds = [...patch.embeds];
    message.editedAt = this.clock.now();
    this.#messageEvent('update', message);
    return this.#rest.messageView(message);
  }

  /** Deletes any message (a user's or the bot's): MESSAGE_DELETE. */
  deleteMessage(id: string): void {
    const message = this.#store.liveMessage(id);
    if (!message) throw new Error(`fake-discord: no message ${id}`);
    message.deleted = true;
    this.#messageEvent('delete', message);
  }

  /** Registered commands (global, or of one guild), as the last PUT/POST left them. */
  commands(guildId?: string) {
    return this.#store.commands.get(guildId ?? '') ?? [];
  }

  async close(): Promise<void> {
    await this.#gateway.shutdown();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // --- internals ----------------------------------------------------------------------------------------

  #addGuild(options: FakeGuildOptions): void {
    // Guilds after the first are dated 1 ms apart (in the past), so that consecutive guilds fall on
    // consecutive shards ((id >> 22) % count) as they would in the wild, not all on one.
    const index = this.#store.guilds.size;
    const first = this.#store.guilds.keys().next().value;
    const id = first === undefined ? this.#ids.next() : this.#ids.at(snowflakeTime(first) - index);
    const channelIds = (options.channels ?? ['general']).map((name) => {
      const channel: ChannelState = {
        id: this.#ids.next(),
        type: ChannelType.GuildText,
        name,
        guildId: id,
        botCanRead: true,
      };
      this.#store.channels.set(channel.id, channel);
      return channel.id;
    });
    this.#store.guilds.set(id, {
      id,
      name: options.name ?? 'Test Guild',
      ownerId: this.user.id,
      roles: [everyoneRole(id)],
      channelIds,
      members: [this.user],
      joinedAt: this.clock.now(),
    });
  }

  #knownUser(id: string): APIUser | undefined {
    if (id === this.user.id) return this.user;
    for (const guild of this.#store.guilds.values()) {
      const member = guild.members.find((u) => u.id === id);
      if (member) return member;
    }
    return undefined;
  }

  #channelsOf(guild: GuildState): ChannelState[] {
    return guild.channelIds.flatMap((id) => {
      const channel = this.#store.channels.get(id);
      return channel ? [channel] : [];
    });
  }

  #foreignPlace(): { guild: GuildState; channel: ChannelState } {
    if (!this.#foreign) {
      const guildId = this.#ids.next();
      const channel: ChannelState = {
        id: this.#ids.next(),
        type: ChannelType.GuildText,
        name: 'elsewhere',
        guildId,
        botCanRead: false,
      };
      this.#store.channels.set(channel.id, channel);
      const guild: GuildState = {
        id: guildId,
        name: 'Foreign Guild',
        ownerId: this.user.id,
        roles: [everyoneRole(guildId)],
        channelIds: [channel.id],
        members: [],
        joinedAt: this.clock.now(),
      };
      this.#foreign = { guild, channel };
    }
    return this.#foreign;
  }

  #place(input: PlaceInput): InteractionPlace {
    const user = input.user ?? this.user;
    const where = input.where ?? 'guild';
    const userInstall = { [ApplicationIntegrationType.UserInstall]: user.id };
    switch (where) {
      case 'guild': {
        const channelId = input.channelId ?? this.channel.id;
        const channel = this.#store.channels.get(channelId);
        const guild = channel?.guildId ? this.#store.guilds.get(channel.guildId) : undefined;
        if (!channel || !guild) throw new Error(`fake-discord: ${channelId} is not a channel of a bot guild`);
        return {
          context: InteractionContextType.Guild,
          owners: input.owners ?? { [ApplicationIntegrationType.GuildInstall]: guild.id },
          user,
          channel,
          guild: { id: guild.id, joinedAt: guild.joinedAt },
          appPermissions: PERMISSIONS.botInGuild,
          memberPermissions: PERMISSIONS.member,
          botPresent: true,
        };
      }
      case 'bot-dm': {
        const channel = this.#store.channels.get(this.dmChannel(user));
        if (!channel) throw new Error('fake-discord: DM channel vanished');
        return {
          context: InteractionContextType.BotDM,
          owners: input.owners ?? userInstall,
          user,
          channel,
          appPermissions: PERMISSIONS.userInstall,
          memberPermissions: PERMISSIONS.member,
          botPresent: true,
        };
      }
      case 'foreign-guild': {
        const { guild, channel } = this.#foreignPlace();
        return {
          context: InteractionContextType.Guild,
          owners: input.owners ?? userInstall,
          user,
          channel,
          guild: { id: guild.id, joinedAt: guild.joinedAt },
          appPermissions: PERMISSIONS.userInstall,
          memberPermissions: PERMISSIONS.member,
          botPresent: false,
        };
      }
      case 'private-channel': {
        const channel = this.#privateChannel(user);
        return {
          context: InteractionContextType.PrivateChannel,
          owners: input.owners ?? userInstall,
          user,
          channel,
          appPermissions: PERMISSIONS.userInstall,
          memberPermissions: PERMISSIONS.member,
          botPresent: false,
        };
      }
    }
  }

  /** One DM between `user` and another person per user, where the bot has no access. */
  #privateChannel(user: APIUser): ChannelState {
    for (const channel of this.#store.channels.values()) {
      if (channel.type === ChannelType.DM && !channel.botCanRead && channel.privateOf === user.id)
        return channel;
    }
    const channel: ChannelState = {
      id: this.#ids.next(),
      type: ChannelType.DM,
      recipient: userPayload(this.#ids.next(), 'bob'),
      botCanRead: false,
      privateOf: user.id,
    };
    this.#store.channels.set(channel.id, channel);
    return channel;
  }

  #base(input: PlaceInput): InteractionBase {
    return {
      id: this.#ids.next(),
      token: `aW50ZXJhY3Rpb246${randomToken(60)}`,
      applicationId: this.applicationId,
      place: this.#place(input),
      attachmentSizeLimit: input.attachmentSizeLimit ?? this.#options.attachmentSizeLimit,
      ...(input.locale ? { locale: input.locale } : {}),
    };
  }

  /** The registered command of that name and type, or a stand-in id when none was registered. */
  #registered(name: string, type: number, commandId?: string): { id: string; guildId?: string } {
    if (commandId) return { id: commandId };
    for (const [scope, commands] of this.#store.commands) {
      const command = commands.find((c) => c.name === name && c.type === type);
      if (command) return { id: command.id, ...(scope ? { guildId: scope } : {}) };
    }
    return { id: this.#ids.next() };
  }

  #adoptMessage(message: APIMessage, guildId: string | undefined): void {
    this.#store.messages.set(message.id, {
      id: message.id,
      channelId: message.channel_id,
      ...(guildId ? { guildId } : {}),
      author: message.author,
      content: message.content,
      embeds: message.embeds,
      components: message.components ?? [],
      flags: message.flags ?? 0,
      attachmentIds: message.attachments.map((a) => a.id).filter((id) => this.#store.attachments.has(id)),
      at: Date.parse(message.timestamp) || this.clock.now(),
      editedAt: null,
      type: message.type,
      mentions: message.mentions,
      deleted: false,
    });
  }

  #messageEvent(kind: MessageEventKind, message: MessageState): void {
    const view = this.#rest.messageView(message);
    const guild = message.guildId ? this.#store.guilds.get(message.guildId) : undefined;
    if (message.guildId && !guild) return;
    const {
      permissions: _permissions,
      user: _user,
      ...member
    } = memberPayload(message.author, guild?.joinedAt ?? 0, '0');
    const enforce = !this.#disabled.has('message-content-intent');
    const input = {
      kind,
      message: view,
      channelType: this.#store.channels.get(message.channelId)?.type ?? ChannelType.GuildText,
      ...(message.guildId ? { guildId: message.guildId, member } : {}),
      contentExempt: contentExempt(message, this.bot.id, this.#store),
    };
    this.#gateway.dispatch(
      messageEventName(kind),
      (session: GatewaySession) => messageEventFor(input, session.intents, enforce),
      message.guildId ?? null,
    );
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.cdnUrl);
    if (url.pathname.startsWith('/api/')) {
      await this.#rest.handle(req, res, url.pathname.slice('/api'.length), url.searchParams);
      return;
    }
    if (req.method === 'GET' && url.pathname.startsWith('/attachments/')) {
      const found = this.#cdn.lookup(
        url.pathname,
        url.searchParams,
        !this.#disabled.has('attachment-url-expiry'),
      );
      const attachment = found.ok ? this.#store.attachments.get(found.attachmentId) : undefined;
      if (!attachment) {
        // Discord's CDN answers an expired signed URL with 404 and this sentence.
        const expired = !found.ok && found.reason === 'expired';
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(expired ? 'This content is no longer available.' : 'Not Found');
        return;
      }
      res.writeHead(200, {
        'content-type': attachment.contentType,
        'content-length': attachment.bytes.length,
      });
      res.end(attachment.bytes);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
  }
}

/** Whether a guild's events go to this `[shard_id, num_shards]`. */
function onShard(guildId: string, [shard, count]: readonly [number, number]): boolean {
  return shardOf(guildId, count) === shard;
}

function assertClickable(message: APIMessage, customId: string): void {
  const found = (nodes: readonly unknown[]): boolean =>
    nodes.some((node) => {
      if (typeof node !== 'object' || node === null) return false;
      const c = node as {
        custom_id?: unknown;
        disabled?: unknown;
        components?: unknown;
        accessory?: unknown;
      };
      if (c.custom_id === customId && c.disabled !== true) return true;
      return (
        found(Array.isArray(c.components) ? c.components : []) || (c.accessory ? found([c.accessory]) : false)
      );
    });
  if (!found(message.components ?? [])) {
    throw new Error(
      `fake-discord: message ${message.id} has no enabled component with custom_id ${customId}`,
    );
  }
}

/**
 * Starts a fake Discord on a free port of 127.0.0.1. Call `close()` when done.
 *
 * ```ts
 * const fake = await startFakeDiscord({ heartbeatIntervalMs: 1_000 });
 * const client = new Client({ intents, partials: [Partials.Channel], rest: { agent: discordRestAgent(), api: fake.apiUrl, retries: 0 } });
 * await client.login(fake.token);                       // then await once(client, Events.ClientReady)
 * const handle = fake.interact(fake.slashCommand({ name: 'imagine', options: { prompt: 'a cat' } }));
 * await handle.waitForAck();                            // the adapter deferred or replied
 * await fake.waitFor(() => handle.original()?.attachments.length);
 * ```
 */
export async function startFakeDiscord(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const fake = new FakeDiscord(options);
  await fake.listen();
  return fake;
}
