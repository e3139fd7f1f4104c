// Slack's side of Socket Mode: single-use ws:// tickets from apps.connections.open, `hello` on connect,
// envelopes out, acks back with their latency, the 3-second ack deadline (events_api envelopes are
// retried by Slack, commands and interactions are not), and the server-initiated disconnects Bolt must survive.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';

export type EnvelopeType = 'slash_commands' | 'events_api' | 'interactive';

export interface EnvelopeRecord {
  envelopeId: string;
  type: EnvelopeType;
  payload: unknown;
  /** 0 for the first delivery; Slack retries unacked events_api envelopes up to 3 times. */
  attempt: number;
  sentAtMs: number;
  ack?: AckRecord;
  timedOut: boolean;
}

export interface AckRecord {
  envelopeId: string;
  type: EnvelopeType;
  /** The ack's payload (what Bolt's `ack(x)` sent); `{}` for a bare ack. */
  payload: unknown;
  latencyMs: number;
  /** Arrived after the deadline: Slack has already shown the user an error or scheduled a retry. */
  late: boolean;
}

export interface TimeoutRecord {
  envelopeId: string;
  type: EnvelopeType;
  attempt: number;
  slackWouldRetry: boolean;
}

export type AckOutcome =
  | { acked: true; envelopeId: string; type: EnvelopeType; payload: unknown; latencyMs: number }
  | { acked: false; envelopeId: string; type: EnvelopeType; timedOut: true; latencyMs: number };

export interface SocketModeServerOptions {
  appId: string;
  ackTimeoutMs: number;
  /** Re-send unacked events_api envelopes with retry_attempt/retry_reason, as Slack does. */
  retryUnackedEvents: boolean;
  /** Server pings; Bolt's client drops a connection whose pings stop for 30 s once they have started. */
  pingIntervalMs: number;
  onAck(record: AckRecord, envelope: EnvelopeRecord): void;
}

interface Pending {
  record: EnvelopeRecord;
  timer: NodeJS.Timeout;
  resolve: (o: AckOutcome) => void;
}

export class SocketModeServer {
  readonly envelopes: EnvelopeRecord[] = [];
  readonly acks: AckRecord[] = [];
  readonly timeouts: TimeoutRecord[] = [];
  /** Frames from the app that name no envelope the fake sent. */
  readonly strayFrames: unknown[] = [];
  /** How many connections got their `hello`; a reconnect makes it grow. */
  connectionsOpened = 0;
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #open = new Set<WebSocket>();
  readonly #tickets = new Set<string>();
  readonly #pending = new Map<string, Pending>();
  readonly #waiters = new Set<() => void>();
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: SocketModeServerOptions) {}

  /** A single-use URL, as apps.connections.open returns; each reconnect asks for a new one. */
  newUrl(origin: string): string {
    const ticket = randomUUID();
    this.#tickets.add(ticket);
    return `${origin.replace(/^http/, 'ws')}/link/?ticket=${ticket}&app_id=${this.options.appId}`;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const ticket = url.searchParams.get('ticket') ?? '';
    if (url.pathname !== '/link/' || !this.#tickets.delete(ticket)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws));
  }

  get connected(): boolean {
    return [...this.#open].some((ws) => ws.readyState === ws.OPEN);
  }

  /** Resolves once `count` connections in total have received their hello. */
  waitForConnection(count = 1, timeoutMs = 10_000): Promise<void> {
    if (this.connectionsOpened >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`fake-slack: ${count} Socket Mode connection(s) not opened within ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        if (this.connectionsOpened < count) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  /**
   * Sends an envelope on the newest connection. Resolves with the ack, or with `acked: false` at the
   * deadline; an ack after that is still recorded in `acks` with `late: true`.
   */
  send(type: EnvelopeType, payload: unknown, attempt = 0): Promise<AckOutcome> {
    const ws = [...this.#open].reverse().find((s) => s.readyState === s.OPEN);
    if (ws === undefined) return Promise.reject(new Error('fake-slack: no open Socket Mode connection'));
    const record: EnvelopeRecord = {
      envelopeId: randomUUID(),
      type,
      payload,
      attempt,
      sentAtMs: performance.now(),
      timedOut: false,
    };
    this.envelopes.push(record);
    const frame = {
      envelope_id: record.envelopeId,
      type,
      payload,
      accepts_response_payload: type !== 'events_api',
      ...(type === 'events_api'
        ? { retry_attempt: attempt, retry_reason: attempt > 0 ? 'timeout' : '' }
        : {}),
    };
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(record.envelopeId);
        record.timedOut = true;
        const slackWouldRetry = type === 'events_api' && attempt < 3;
        this.timeouts.push({ envelopeId: record.envelopeId, type, attempt, slackWouldRetry });
        if (slackWouldRetry && this.options.retryUnackedEvents && this.connected) {
          this.send(type, payload, attempt + 1).catch(() => {});
        }
        resolve({
          acked: false,
          envelopeId: record.envelopeId,
          type,
          timedOut: true,
          latencyMs: performance.now() - record.sentAtMs,
        });
      }, this.options.ackTimeoutMs);
      this.#pending.set(record.envelopeId, { record, timer, resolve });
      ws.send(JSON.stringify(frame));
    });
  }

  /** Asks every connection to reconnect (`refresh_requested`, `warning`, `link_disabled`...); resolves when they closed. */
  disconnect(reason = 'refresh_requested'): Promise<void> {
    const sockets = [...this.#open];
    for (const ws of sockets) {
      ws.send(JSON.stringify({ type: 'disconnect', reason, debug_info: { host: 'applink-fake-1' } }));
    }
    return this.#closed(sockets);
  }

  /** Closes the connections from the server side: a clean close frame, or `abrupt` for a dead TCP socket. */
  drop(options: { abrupt?: boolean; code?: number } = {}): Promise<void> {
    const sockets = [...this.#open];
    for (const ws of sockets) {
      if (options.abrupt === true) ws.terminate();
      else ws.close(options.code ?? 1001, 'going away');
    }
    return this.#closed(sockets);
  }

  close(): void {
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    for (const t of this.#timers) clearInterval(t);
    for (const ws of this.#open) ws.terminate();
    this.#open.clear();
    this.#wss.close();
  }

  #accept(ws: WebSocket): void {
    this.#open.add(ws);
    let ping: NodeJS.Timeout | undefined;
    if (this.options.pingIntervalMs > 0) {
      ping = setInterval(() => ws.ping(), this.options.pingIntervalMs);
      ping.unref();
      this.#timers.add(ping);
    }
    ws.on('close', () => {
      this.#open.delete(ws);
      if (ping !== undefined) {
        clearInterval(ping);
        this.#timers.delete(ping);
      }
    });
    ws.on('message', (data) => this.#onFrame(String(data)));
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: this.#open.size,
        debug_info: { host: 'applink-fake-1', build_number: 1, approximate_connection_time: 18060 },
        connection_info: { app_id: this.options.appId },
      }),
    );
    this.connectionsOpened += 1;
    for (const w of [...this.#waiters]) w();
  }

  #onFrame(text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.strayFrames.push(text);
      return;
    }
    const id =
      typeof frame === 'object' && frame !== null && 'envelope_id' in frame
        ? String(frame.envelope_id)
        : undefined;
    const record = id === undefined ? undefined : this.envelopes.find((e) => e.envelopeId === id);
    if (id === undefined || record === undefined || record.ack !== undefined) {
      this.strayFrames.push(frame);
      return;
    }
    const payload = (frame as { payload?: unknown }).payload ?? {};
    const latencyMs = performance.now() - record.sentAtMs;
    const ack: AckRecord = { envelopeId: id, type: record.type, payload, latencyMs, late: record.timedOut };
    record.ack = ack;
    this.acks.push(ack);
    this.options.onAck(ack, record);
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.#pending.delete(id);
    pending.resolve({ acked: true, envelopeId: id, type: record.type, payload, latencyMs });
  }

  #closed(sockets: WebSocket[]): Promise<void> {
    return Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === ws.CLOSED) resolve();
            else ws.once('close', () => resolve());
          }),
      ),
    ).then(() => {});
  }
}
