// The fake CDN: signed attachment URLs in Discord's shape (`?ex=<hex expiry>&is=<hex issued>&hm=<mac>`)
// that stop working when the fake clock passes `ex`, so code that stores URLs instead of ids fails here
// as it would on Discord. Every read of a message signs its attachment URLs afresh.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { APIAttachment } from 'discord-api-types/v10';
import type { FakeClock } from './clock.js';
import type { AttachmentState } from './state.js';

export type CdnLookup =
  | { ok: true; attachmentId: string }
  | { ok: false; reason: 'not-found' | 'bad-signature' | 'expired' };

export class Cdn {
  readonly #secret = randomBytes(32);

  constructor(
    private readonly baseUrl: () => string,
    private readonly clock: FakeClock,
    private readonly ttlMs: number,
  ) {}

  path(attachment: AttachmentState): string {
    return `/attachments/${attachment.channelId}/${attachment.id}/${encodeURIComponent(attachment.filename)}`;
  }

  url(attachment: AttachmentState): string {
    const issued = Math.floor(this.clock.now() / 1000);
    const expires = Math.floor((this.clock.now() + this.ttlMs) / 1000);
    const ex = expires.toString(16);
    const is = issued.toString(16);
    const path = this.path(attachment);
    return `${this.baseUrl()}${path}?ex=${ex}&is=${is}&hm=${this.#mac(path, ex, is)}&`;
  }

  toApi(attachment: AttachmentState): APIAttachment {
    const url = this.url(attachment);
    return {
      id: attachment.id,
      filename: attachment.filename,
      size: attachment.bytes.length,
      url,
      proxy_url: url,
      content_type: attachment.contentType,
      ...(attachment.width !== undefined
        ? { width: attachment.width, height: attachment.height ?? null }
        : {}),
      ...(attachment.description !== undefined ? { description: attachment.description } : {}),
      ...(attachment.title !== undefined ? { title: attachment.title } : {}),
    };
  }

  /** Checks the signature and expiry of a request to `path?query`; `enforceExpiry` off accepts old URLs. */
  lookup(path: string, query: URLSearchParams, enforceExpiry: boolean): CdnLookup {
    const match = /^\/attachments\/(\d+)\/(\d+)\/[^/]+$/.exec(path);
    if (!match?.[2]) return { ok: false, reason: 'not-found' };
    const ex = query.get('ex') ?? '';
    const is = query.get('is') ?? '';
    const given = Buffer.from(query.get('hm') ?? '', 'utf8');
    const expected = Buffer.from(this.#mac(path, ex, is), 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return { ok: false, reason: 'bad-signature' };
    }
    if (enforceExpiry && Number.parseInt(ex, 16) * 1000 <= this.clock.now())
      return { ok: false, reason: 'expired' };
    return { ok: true, attachmentId: match[2] };
  }

  #mac(path: string, ex: string, is: string): string {
    return createHmac('sha256', this.#secret).update(`${path}|${ex}|${is}`).digest('hex');
  }
}

/** Width and height from a PNG's IHDR, so uploaded images carry dimensions as on Discord. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 24 || signature.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}
