// The fake gateway: Discord's WebSocket protocol as @discordjs/ws speaks it (json encoding, optional
// zlib-stream), with HELLO, heartbeat ACKs, IDENTIFY -> READY + GUILD_CREATE, sequence numbers, and
// RESUME replaying what a session missed while disconnected. The server side can close sockets with any
// code, so a test can make discord.js resume or re-identify. Sharding as Discord does it: IDENTIFY's
// `shard: [id, count]` (a bad pair is closed with 4010), each guild's events only on shard
// (guild_id >> 22) % count, events of no guild (DMs) on shard 0 only.
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createDeflate, type Deflate, constants as zlibConstants } from 'node:zlib';
import {
  GatewayCloseCodes,
  GatewayDispatchEvents,
  GatewayIntentBits,
  GatewayOpcodes,
  type GatewayReadyDispatchData,
} from 'discord-api-types/v10';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { randomToken } from './clock.js';

export const PRIVILEGED_INTENTS =
  GatewayIntentBits.GuildMembers | GatewayIntentBits.GuildPresences | GatewayIntentBits.MessageContent;

/** Codes after which Discord will not resume the session: the client must identify again. */
const NON_RESUMABLE_CLOSES: ReadonlySet<number> = new Set([
  1000,
  1001,
  GatewayCloseCodes.AuthenticationFailed,
  GatewayCloseCodes.InvalidSeq,
  GatewayCloseCodes.SessionTimedOut,
  GatewayCloseCodes.InvalidShard,
  GatewayCloseCodes.ShardingRequired,
  GatewayCloseCodes.InvalidAPIVersion,
  GatewayCloseCodes.InvalidIntents,
  GatewayCloseCodes.DisallowedIntents,
]);

export interface GatewayOptions {
  token: string;
  heartbeatIntervalMs: number;
  /** Privileged intents the app is approved for; IDENTIFY asking for others is closed with 4014. */
  allowedPrivilegedIntents: number;
  resumeUrl: () => string;
  /** READY's user/application/guild list, and the dispatches that follow it (GUILD_CREATE...). */
  ready: (session: GatewaySession) => {
    data: Omit<GatewayReadyDispatchData, 'session_id' | 'resume_gateway_url'>;
  };
  afterReady: (session: GatewaySession) => { t: string; d: unknown }[];
}

/** What a test can see of a gateway session. */
export interface GatewaySession {
  readonly id: string;
  readonly intents: number;
  /** Last sequence number sent (or buffered) on this session. */
  readonly seq: number;
  readonly connected: boolean;
  /** The raw IDENTIFY `d` the client sent. */
  readonly identify: Readonly<Record<string, unknown>>;
  /** IDENTIFY's `[shard_id, num_shards]`; [0, 1] when it sent none. */
  readonly shard: readonly [number, number];
}

/** The shard a guild's events go to: (guild_id >> 22) % count, as Discord routes them. */
export function shardOf(guildId: string, count: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(count));
}

/** The guild a dispatch belongs to: its `guild_id`, or the id of a GUILD_* object; else none (a DM). */
function guildOfDispatch(t: string, d: unknown): string | undefined {
  if (typeof d !== 'object' || d === null) return undefined;
  const record = d as { guild_id?: unknown; id?: unknown };
  if (typeof record.guild_id === 'string') return record.guild_id;
  if (/^GUILD_(CREATE|UPDATE|DELETE)$/.test(t) && typeof record.id === 'string') return record.id;
  return undefined;
}

/** One received gateway payload, for tests that check what the client sent. */
export interface GatewayReceived {
  op: number;
  d: unknown;
  sessionId?: string;
  /** Real time (Date.now), not the fake clock: heartbeats run on real timers. */
  at: number;
}

interface Session {
  id: string;
  intents: number;
  seq: number;
  identify: Record<string, unknown>;
  shard: [number, number];
  history: { op: 0; t: string; s: number; d: unknown }[];
  connection: Connection | null;
  invalid: boolean;
}

interface Connection {
  ws: WebSocket;
  /** zlib-stream: one deflate context per connection, and the bytes it produced since the last flush. */
  deflate?: { stream: Deflate; pending: Buffer[] };
  session?: Session;
  query: URLSearchParams;
}

const HISTORY_LIMIT = 1_000;

export class FakeGateway extends EventEmitter {
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sessions = new Map<string, Session>();
  readonly #connections = new Set<Connection>();
  readonly received: GatewayReceived[] = [];
  /** Successful RESUMEs so far. */
  resumes = 0;

  constructor(private readonly options: GatewayOptions) {
    super();
    this.#wss.on('connection', (ws: WebSocket, req: IncomingMessage) => this.#accept(ws, req));
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#wss.emit('connection', ws, req));
  }

  sessions(): GatewaySession[] {
    return [...this.#sessions.values()].map((s) => this.#view(s));
  }

  /**
   * Sends a dispatch to every live session of the shard it belongs to (buffered for disconnected
   * ones, replayed on RESUME). `data` may be a function of the session, returning undefined to skip
   * it (intent filtering); its guild then comes from `guildId` (null: none, shard 0), else from the
   * data (`guild_id`, or the id of a GUILD_* object).
   */
  dispatch(
    t: string,
    data: unknown | ((session: GatewaySession) => unknown | undefined),
    guildId?: string | null,
  ): void {
    const guild =
      guildId === undefined ? (typeof data === 'function' ? undefined : guildOfDispatch(t, data)) : guildId;
    for (const session of this.#sessions.values()) {
      if (session.invalid) continue;
      const [shard, count] = session.shard;
      if (shard !== (guild === undefined || guild === null ? 0 : shardOf(guild, count))) continue;
      const d =
        typeof data === 'function' ? (data as (s: GatewaySession) => unknown)(this.#view(session)) : data;
      if (d === undefined) continue;
      this.#dispatchTo(session, t, d);
    }
  }

  /** Closes every open socket from the server side; non-resumable codes also end their sessions. */
  close(code: number, options: { invalidateSession?: boolean; reason?: string } = {}): void {
    const invalidate = options.invalidateSession ?? NON_RESUMABLE_CLOSES.has(code);
    for (const connection of this.#connections) {
      if (invalidate && connection.session) connection.session.invalid = true;
      connection.ws.close(code, options.reason ?? 'closed by fake-discord');
    }
  }

  /** op 7: Discord asks the client to reconnect and resume. */
  requestReconnect(): void {
    for (const connection of this.#connections)
      this.#send(connection, { op: GatewayOpcodes.Reconnect, d: null });
  }

  /** op 9: `resumable` false ends the sessions, so clients identify again. */
  invalidateSessions(resumable: boolean): void {
    for (const connection of this.#connections) {
      if (!resumable && connection.session) connection.session.invalid = true;
      this.#send(connection, { op: GatewayOpcodes.InvalidSession, d: resumable });
    }
  }

  async shutdown(): Promise<void> {
    for (const connection of this.#connections) connection.ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #view(session: Session): GatewaySession {
    return {
      id: session.id,
      intents: session.intents,
      seq: session.seq,
      connected: session.connection !== null,
      identify: session.identify,
      shard: session.shard,
    };
  }

  #accept(ws: WebSocket, req: IncomingMessage): void {
    const query = new URL(req.url ?? '/', 'ws://fake').searchParams;
    const connection: Connection = { ws, query };
    this.#connections.add(connection);
    ws.on('close', (code) => this.#onClose(connection, code));
    ws.on('error', () => {});
    if ((query.get('v') ?? '10') !== '10') {
      ws.close(GatewayCloseCodes.InvalidAPIVersion, 'fake-discord speaks gateway v10 only');
      return;
    }
    if ((query.get('encoding') ?? 'json') !== 'json') {
      ws.close(GatewayCloseCodes.DecodeError, 'fake-discord supports encoding=json only');
      return;
    }
    if (query.get('compress') === 'zlib-stream') {
      // One deflate context for the whole connection, each payload ending in a sync flush (00 00 ff ff),
      // which is what @discordjs/ws (via zlib-sync) waits for before parsing.
      const stream = createDeflate();
      const pending: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => pending.push(chunk));
      connection.deflate = { stream, pending };
    }
    ws.on('message', (raw: RawData) => this.#onMessage(connection, raw));
    this.#send(connection, {
      op: GatewayOpcodes.Hello,
      d: { heartbeat_interval: this.options.heartbeatIntervalMs },
    });
  }

  #onClose(connection: Connection, code: number): void {
    this.#connections.delete(connection);
    connection.deflate?.stream.close();
    const session = connection.session;
    if (session?.connection === connection) {
      session.connection = null;
      // A client that closes with 1000/1001 ends its session; 4xxx (discord.js uses 4200) keeps it.
      if (code === 1000 || code === 1001) session.invalid = true;
    }
    this.emit('close', { code, sessionId: session?.id });
  }

  #onMessage(connection: Connection, raw: RawData): void {
    let payload: { op?: unknown; d?: unknown };
    try {
      // Clients always send plain JSON; compression only runs server to client.
      const bytes = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw as ArrayBuffer);
      payload = JSON.parse(bytes.toString('utf8')) as { op?: unknown; d?: unknown };
    } catch {
      connection.ws.close(GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    const op = typeof payload.op === 'number' ? payload.op : -1;
    this.received.push({
      op,
      d: payload.d,
      ...(connection.session ? { sessionId: connection.session.id } : {}),
      at: Date.now(),
    });
    switch (op) {
      case GatewayOpcodes.Heartbeat:
        this.#send(connection, { op: GatewayOpcodes.HeartbeatAck });
        this.emit('heartbeat', payload.d);
        return;
      case GatewayOpcodes.Identify:
        this.#identify(connection, payload.d);
        return;
      case GatewayOpcodes.Resume:
        this.#resume(connection, payload.d);
        return;
      case GatewayOpcodes.PresenceUpdate:
      case GatewayOpcodes.VoiceStateUpdate:
      case GatewayOpcodes.RequestGuildMembers:
      case GatewayOpcodes.RequestSoundboardSounds:
        if (!connection.session)
          connection.ws.close(GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
        return;
      default:
        connection.ws.close(GatewayCloseCodes.UnknownOpcode, 'Unknown opcode.');
    }
  }

  #identify(connection: Connection, d: unknown): void {
    if (connection.session) {
      connection.ws.close(GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
      return;
    }
    const data = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>;
    if (data.token !== this.options.token) {
      connection.ws.close(GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
      return;
    }
    const intents = data.intents;
    if (typeof intents !== 'number' || !Number.isInteger(intents) || intents < 0) {
      connection.ws.close(GatewayCloseCodes.InvalidIntents, 'Invalid intent(s).');
      return;
    }
    if ((intents & PRIVILEGED_INTENTS & ~this.options.allowedPrivilegedIntents) !== 0) {
      connection.ws.close(GatewayCloseCodes.DisallowedIntents, 'Disallowed intent(s).');
      return;
    }
    const shard = data.shard ?? [0, 1];
    if (
      !Array.isArray(shard) ||
      shard.length !== 2 ||
      !shard.every((n) => Number.isInteger(n)) ||
      !(shard[1] >= 1 && shard[0] >= 0 && shard[0] < shard[1])
    ) {
      connection.ws.close(GatewayCloseCodes.InvalidShard, 'Invalid shard.');
      return;
    }
    const session: Session = {
      id: randomToken(16),
      intents,
      seq: 0,
      identify: data,
      shard: [shard[0], shard[1]],
      history: [],
      connection,
      invalid: false,
    };
    this.#sessions.set(session.id, session);
    connection.session = session;
    const ready = this.options.ready(this.#view(session)).data;
    this.#dispatchTo(session, GatewayDispatchEvents.Ready, {
      ...ready,
      session_id: session.id,
      resume_gateway_url: this.options.resumeUrl(),
    });
    for (const { t, d: extra } of this.options.afterReady(this.#view(session)))
      this.#dispatchTo(session, t, extra);
    this.emit('identify', this.#view(session));
    this.emit('ready', this.#view(session));
  }

  #resume(connection: Connection, d: unknown): void {
    const data = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>;
    const session = typeof data.session_id === 'string' ? this.#sessions.get(data.session_id) : undefined;
    const seq = typeof data.seq === 'number' ? data.seq : -1;
    this.emit('resume-attempt', { sessionId: data.session_id, seq });
    if (data.token !== this.options.token) {
      connection.ws.close(GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
      return;
    }
    const oldest = session?.history[0]?.s ?? 1;
    if (!session || session.invalid || seq > session.seq || seq < oldest - 1) {
      this.#send(connection, { op: GatewayOpcodes.InvalidSession, d: false });
      return;
    }
    session.connection?.ws.close(GatewayCloseCodes.SessionTimedOut, 'Session resumed elsewhere.');
    session.connection = connection;
    connection.session = session;
    for (const payload of session.history) if (payload.s > seq) this.#send(connection, payload);
    this.#dispatchTo(session, GatewayDispatchEvents.Resumed, null);
    this.resumes += 1;
    this.emit('resume', this.#view(session));
  }

  #dispatchTo(session: Session, t: string, d: unknown): void {
    const payload = { op: 0 as const, t, s: ++session.seq, d };
    session.history.push(payload);
    if (session.history.length > HISTORY_LIMIT) session.history.shift();
    if (session.connection) this.#send(session.connection, payload);
    this.emit('dispatch', { t, sessionId: session.id, s: payload.s });
  }

  #send(connection: Connection, payload: unknown): void {
    if (connection.ws.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(payload);
    const { deflate } = connection;
    if (!deflate) {
      connection.ws.send(text);
      return;
    }
    deflate.stream.write(text);
    deflate.stream.flush(zlibConstants.Z_SYNC_FLUSH, () => {
      const bytes = Buffer.concat(deflate.pending.splice(0));
      if (connection.ws.readyState === WebSocket.OPEN) connection.ws.send(bytes);
    });
  }
}
