// Slack's side of HTTP mode: signed POSTs to the app's request URL, encoded per kind (slash commands
// form-encoded, events as JSON, interactions as `payload=<json>`), timed against the 3-second deadline.
// Options forge the signature or age the timestamp so tests can watch Bolt answer 401.

import { signedHeaders } from './signing.js';
import type { EnvelopeType } from './socket-mode.js';

export interface HttpPostOptions {
  /** 'forged' signs with a wrong secret; 'none' sends no signature headers. @defaultValue 'valid' */
  signature?: 'valid' | 'forged' | 'none';
  /** Seconds since the epoch for x-slack-request-timestamp. @defaultValue now */
  timestampSec?: number;
  /** Sends a timestamp 6 minutes old (Bolt refuses anything older than 5). */
  stale?: boolean;
  /** Slack's retry headers on redelivered events. */
  retryNum?: number;
  retryReason?: string;
  /** When to give up waiting, as Slack does. @defaultValue the fake's ackTimeoutMs */
  deadlineMs?: number;
}

export interface HttpDelivery {
  url: string;
  kind: EnvelopeType;
  payload: unknown;
  /** undefined when the app did not answer before the deadline. */
  status: number | undefined;
  text: string;
  /** The response parsed as JSON when it is JSON, else the text. */
  body: unknown;
  headers: Record<string, string>;
  latencyMs: number;
  timedOut: boolean;
}

export class HttpModeClient {
  readonly deliveries: HttpDelivery[] = [];
  readonly timeouts: HttpDelivery[] = [];
  readonly #inflight = new Set<AbortController>();

  constructor(
    private readonly options: {
      signingSecret: string;
      ackTimeoutMs: number;
      onResponse(delivery: HttpDelivery): void;
    },
  ) {}

  async post(
    url: string,
    kind: EnvelopeType,
    payload: unknown,
    opts: HttpPostOptions = {},
  ): Promise<HttpDelivery> {
    const { body, contentType } = encode(kind, payload);
    const nowSec = Math.floor(Date.now() / 1000);
    const ts = opts.timestampSec ?? (opts.stale === true ? nowSec - 6 * 60 : nowSec);
    const signature = opts.signature ?? 'valid';
    const headers: Record<string, string> = {
      'content-type': contentType,
      'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
    };
    if (signature !== 'none') {
      const secret =
        signature === 'forged' ? `${this.options.signingSecret}-forged` : this.options.signingSecret;
      Object.assign(headers, signedHeaders(secret, ts, body));
    }
    if (opts.retryNum !== undefined) {
      headers['x-slack-retry-num'] = String(opts.retryNum);
      headers['x-slack-retry-reason'] = opts.retryReason ?? 'http_timeout';
    }
    const abort = new AbortController();
    this.#inflight.add(abort);
    const deadline = setTimeout(() => abort.abort(), opts.deadlineMs ?? this.options.ackTimeoutMs);
    const started = performance.now();
    let delivery: HttpDelivery;
    try {
      const res = await fetch(url, { method: 'POST', headers, body, signal: abort.signal });
      const text = await res.text();
      delivery = {
        url,
        kind,
        payload,
        status: res.status,
        text,
        body: parseMaybeJson(text),
        headers: Object.fromEntries(res.headers.entries()),
        latencyMs: performance.now() - started,
        timedOut: false,
      };
    } catch (error) {
      if (!abort.signal.aborted) throw error;
      delivery = {
        url,
        kind,
        payload,
        status: undefined,
        text: '',
        body: undefined,
        headers: {},
        latencyMs: performance.now() - started,
        timedOut: true,
      };
      this.timeouts.push(delivery);
    } finally {
      clearTimeout(deadline);
      this.#inflight.delete(abort);
    }
    this.deliveries.push(delivery);
    if (!delivery.timedOut) this.options.onResponse(delivery);
    return delivery;
  }

  close(): void {
    for (const a of this.#inflight) a.abort();
  }
}

function encode(kind: EnvelopeType, payload: unknown): { body: string; contentType: string } {
  switch (kind) {
    case 'slash_commands': {
      const fields = Object.entries(payload as Record<string, unknown>).map(([k, v]): [string, string] => [
        k,
        String(v),
      ]);
      return {
        body: new URLSearchParams(fields).toString(),
        contentType: 'application/x-www-form-urlencoded',
      };
    }
    case 'interactive':
      return {
        body: new URLSearchParams({ payload: JSON.stringify(payload) }).toString(),
        contentType: 'application/x-www-form-urlencoded',
      };
    case 'events_api':
      return { body: JSON.stringify(payload), contentType: 'application/json' };
  }
}

function parseMaybeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
