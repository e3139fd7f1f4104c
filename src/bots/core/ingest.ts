// Downloads of the images people attach in chat: the one place the bot fetches a URL it was handed, so
// it is a server-side request forgery guard first (https to the platform's file hosts only, every
// redirect re-checked before it is followed, no IP literals, and every connection only to public
// addresses whatever the name resolves to: address-guard.ts) and a size guard second (bytes counted
// while streaming, magic bytes and the pixel count checked before anything decodes).
//
// The one exception is the operator's: the origins of DISCORD_CDN_URL and SLACK_API_URL (a proxy in
// front of the platform; the tests' fake CDNs on 127.0.0.1) are trusted as configured, loopback
// included. They come from the environment only and match a whole origin (scheme, host and port), so
// a URL a user posts reaches loopback or a private network only if the operator pointed one there.
import {
  CancelledError,
  CodedError,
  DownloadFailedError,
  HostNotAllowedError,
  ImageTooLargeError,
  MissingScopeError,
  NotAnImageError,
} from '../../shared/errors.js';
import { DefaultImageLimits, type ImageFormat, probeImage } from '../../shared/image/decode.js';
import type { Platform } from '../../shared/jobs.js';
import { publicFetch } from './address-guard.js';

/** Where Discord serves attachments (`url`) and their media-proxy copies (`proxy_url`). */
export const discordFileHosts = ['cdn.discordapp.com', 'media.discordapp.net'] as const;

/** Where Slack serves `url_private` files: commercial Slack and GovSlack (slack-gov.com). */
export const slackFileHosts = ['files.slack.com', 'files.slack-gov.com'] as const;

/**
 * Allowed hosts per platform. The playground and the CLI take uploads as bytes and download nothing.
 * Discord's `images-ext-*.discordapp.net` is left out on purpose: it proxies any site's images.
 */
export const DefaultFileHosts: Readonly<Record<Platform, readonly string[]>> = {
  discord: discordFileHosts,
  slack: slackFileHosts,
  web: [],
  cli: [],
};

/** What an HTML body means. Slack answers `url_private` with its login page when `files:read` is missing. */
export type HtmlMeaning = 'not_an_image' | 'missing_scope';

export interface DownloadOptions {
  /** Hosts to fetch from over https: exact names or `*.suffix` (any depth of subdomain, not the suffix itself). */
  readonly allowedHosts: readonly string[];
  /**
   * Full origins allowed as well, http and IP literals included (`http://127.0.0.1:8080`): for a proxy
   * in front of the platform, and for tests. Only ever from the operator's configuration: these are
   * the one place where loopback and private addresses are reached. @defaultValue none
   */
  readonly allowedOrigins?: readonly string[];
  /** Largest body accepted; checked against Content-Length and while streaming. @defaultValue 32 MiB */
  readonly maxBytes?: number;
  /** Largest width x height accepted (from the header, before decoding). @defaultValue 8192 * 8192 */
  readonly maxPixels?: number;
  /** For the whole download, redirects and body included. @defaultValue 20 000 ms */
  readonly timeoutMs?: number;
  /**
   * Request headers, e.g. Slack's `Authorization: Bearer` for `url_private`. Sent on every hop, and every
   * hop is an allowed host (a redirect elsewhere fails before it is requested), so they reach nobody else.
   * @defaultValue none
   */
  readonly headers?: Readonly<Record<string, string>>;
  /** The platform, for error details (the user's sentence names it). @defaultValue none */
  readonly platform?: Platform;
  /**
   * The fetch to use for every hop. It replaces the connection-level address guard too, so only tests
   * give one. @defaultValue publicFetch (public addresses only), or globalThis.fetch for `allowedOrigins`
   */
  readonly fetch?: typeof fetch;
  /** A size the platform reported before the download: over maxBytes refuses without a request. @defaultValue none */
  readonly declaredSize?: number;
  /** What an HTML body means. @defaultValue 'not_an_image' */
  readonly htmlMeans?: HtmlMeaning;
  /** Cancels the download (the caller's own deadline or the user's cancel). @defaultValue none */
  readonly signal?: AbortSignal;
}

export const DefaultDownloadOptions = {
  maxBytes: DefaultImageLimits.maxBytes,
  maxPixels: DefaultImageLimits.maxPixels,
  timeoutMs: 20_000,
  htmlMeans: 'not_an_image',
} as const satisfies Required<Pick<DownloadOptions, 'maxBytes' | 'maxPixels' | 'timeoutMs' | 'htmlMeans'>>;

/** Redirects followed at most; one more is `too_many_redirects`. */
export const MAX_REDIRECTS = 3;

export interface DownloadedImage {
  readonly bytes: Uint8Array;
  /** From the magic bytes, not the response header (servers mislabel; the bytes do not). */
  readonly contentType: string;
  /** As sharp reads it (AVIF reads as `heif`). */
  readonly format: ImageFormat;
  readonly width: number;
  readonly height: number;
}

/** The host rules of one platform, to spread into DownloadOptions. */
export interface IngestPolicy {
  readonly allowedHosts: readonly string[];
  readonly allowedOrigins: readonly string[];
  readonly platform: Platform;
  readonly htmlMeans: HtmlMeaning;
}

/**
 * The download rules for a platform: its file hosts, plus `extraOrigin` (a proxy, or a test's local
 * server) when given. `downloadImage(url, { ...ingestPolicy('slack'), headers, maxBytes })`.
 */
export function ingestPolicy(platform: Platform, extraOrigin?: string): IngestPolicy {
  return {
    allowedHosts: DefaultFileHosts[platform],
    allowedOrigins: extraOrigin === undefined ? [] : [originOf(extraOrigin)],
    platform,
    htmlMeans: platform === 'slack' ? 'missing_scope' : 'not_an_image',
  };
}

function originOf(origin: string): string {
  const url = new URL(origin);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new RangeError(`allowed origins are http or https, got ${origin}`);
  }
  return url.origin;
}

const HOST_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function hostMatches(host: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => (p.startsWith('*.') ? host.endsWith(p.slice(1)) : host === p));
}

// After WHATWG parsing every IPv4 spelling (`2130706433`, `0x7f.1`) is dotted decimal and IPv6 is bracketed.
function isIpLiteral(host: string): boolean {
  return host.startsWith('[') || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

interface Rules {
  readonly hosts: readonly string[];
  readonly origins: ReadonlySet<string>;
  readonly platform: Platform | undefined;
}

/** Throws HostNotAllowedError unless `url` may be requested. Runs before every hop. */
function checkUrl(url: URL, rules: Rules): void {
  if (rules.origins.has(url.origin) && url.username === '' && url.password === '') return;
  const host = url.hostname.toLowerCase();
  const refuse = (shown: string): never => {
    throw new HostNotAllowedError(shown.slice(0, 200), rules.platform);
  };
  if (url.protocol !== 'https:') refuse(`${url.protocol}//${url.host}`);
  // Credentials and odd ports have no place in a platform's file URL; an IP literal would slip past a
  // wide `*.suffix` pattern (`*.0.1`) and is how internal addresses are usually reached.
  if (url.username !== '' || url.password !== '') refuse(`credentials@${url.host}`);
  if (url.port !== '') refuse(url.host);
  if (isIpLiteral(host)) refuse(host);
  if (!hostMatches(host, rules.hosts)) refuse(host);
}

function checkLimit(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * Downloads an image from an allowed host, capped in bytes, pixels and time, and returns its bytes
 * with the format and size read from its header. Throws (all CodedErrors):
 * - `host_not_allowed`: the URL or a redirect leaves the allow-list (nothing is requested there);
 * - `download_failed` with `reason` `status` (and `status`), `timeout`, `network` or `too_many_redirects`;
 * - `image_too_large` with `{bytes, maxBytes}` (declared or Content-Length), `{maxBytes}` (counted while
 *   streaming, the download stops there) or `{pixels, maxPixels}`;
 * - `not_an_image` (`reason`: `html`, `signature`, `empty`, `truncated`, or sharp's reading), or
 *   `missing_scope` (`files:read`) for an HTML body when `htmlMeans` says so;
 * - the signal's reason (or `cancelled`) when `signal` aborts.
 *
 * Content-Type policy: an HTML type is refused before the body is read (with its own error); any other
 * type, `text/plain` and `application/octet-stream` included, is judged by the magic bytes, because
 * platforms label uploads by what the uploading client claimed and only the bytes are certain.
 */
export async function downloadImage(url: string | URL, options: DownloadOptions): Promise<DownloadedImage> {
  const o = { ...DefaultDownloadOptions, ...options };
  const maxBytes = checkLimit('maxBytes', o.maxBytes);
  const maxPixels = checkLimit('maxPixels', o.maxPixels);
  const timeoutMs = checkLimit('timeoutMs', o.timeoutMs);
  const hosts = o.allowedHosts.map((h) => h.toLowerCase());
  for (const h of hosts) if (!HOST_PATTERN.test(h)) throw new RangeError(`bad allowed host pattern ${h}`);
  const rules: Rules = {
    hosts,
    origins: new Set((o.allowedOrigins ?? []).map(originOf)),
    platform: o.platform,
  };
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw new HostNotAllowedError('(not a URL)', rules.platform);
  }
  checkUrl(current, rules);
  if (o.declaredSize !== undefined && o.declaredSize > maxBytes) {
    throw new ImageTooLargeError({ bytes: o.declaredSize, maxBytes });
  }

  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = o.signal ? AbortSignal.any([timeout, o.signal]) : timeout;
  // The operator's origins are trusted as configured; every other host connects to public addresses only.
  const transport = (at: URL): typeof fetch =>
    o.fetch ?? (rules.origins.has(at.origin) ? globalThis.fetch : publicFetch);
  // Why a fetch or a read failed, in our codes: the caller's abort wins, then our timeout, then the network.
  const explain = (error: unknown): CodedError => {
    if (error instanceof CodedError) return error;
    // The address guard refuses inside the connection's lookup; fetch wraps that in its TypeError.
    for (
      let cause = (error as { cause?: unknown })?.cause;
      cause;
      cause = (cause as { cause?: unknown }).cause
    ) {
      if (cause instanceof HostNotAllowedError) {
        return new HostNotAllowedError(String(cause.details.host), rules.platform);
      }
    }
    if (o.signal?.aborted) {
      const reason: unknown = o.signal.reason;
      return reason instanceof CodedError ? reason : new CancelledError();
    }
    if (timeout.aborted) return new DownloadFailedError('timeout', { timeoutMs }, error);
    return new DownloadFailedError('network', {}, error);
  };

  let response: Response;
  for (let hop = 0; ; hop++) {
    try {
      response = await transport(current)(current, { headers: { ...o.headers }, redirect: 'manual', signal });
    } catch (error) {
      throw explain(error);
    }
    if (![301, 302, 303, 307, 308].includes(response.status)) break;
    discard(response);
    const location = response.headers.get('location');
    if (location === null) throw new DownloadFailedError('status', { status: response.status });
    if (hop >= MAX_REDIRECTS) throw new DownloadFailedError('too_many_redirects', { max: MAX_REDIRECTS });
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new HostNotAllowedError('(bad redirect)', rules.platform);
    }
    checkUrl(next, rules);
    current = next;
  }

  if (!response.ok) {
    discard(response);
    throw new DownloadFailedError('status', { status: response.status });
  }
  const declared = contentLength(response.headers.get('content-length'));
  if (declared !== undefined && declared > maxBytes) {
    discard(response);
    throw new ImageTooLargeError({ bytes: declared, maxBytes });
  }
  const type = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const htmlError = (): CodedError =>
    o.htmlMeans === 'missing_scope'
      ? new MissingScopeError('files:read', { ...(rules.platform && { platform: rules.platform }) })
      : new NotAnImageError('the link leads to a web page, not an image', { reason: 'html' });
  if (type === 'text/html' || type === 'application/xhtml+xml') {
    discard(response);
    throw htmlError();
  }

  let bytes: Uint8Array;
  try {
    bytes = await readCapped(response, maxBytes, (head) => {
      if (sniff(head) === undefined) throw notImage(head, htmlError);
    });
  } catch (error) {
    throw explain(error);
  }
  if (bytes.length === 0) throw new NotAnImageError('the file is empty', { reason: 'empty' });
  const signature = sniff(bytes);
  if (signature === undefined) throw notImage(bytes, htmlError);
  if (isTruncated(bytes, signature.format)) {
    throw new NotAnImageError('the image is incomplete', { reason: 'truncated', format: signature.format });
  }
  const info = await probeImage(bytes, { maxBytes, maxPixels });
  return {
    bytes,
    contentType: signature.contentType,
    format: info.format,
    width: info.width,
    height: info.height,
  };
}

function contentLength(header: string | null): number | undefined {
  return header !== null && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
}

/** Frees the connection of a response whose body we will not read. */
function discard(response: Response): void {
  response.body?.cancel().catch(() => {});
}

/** Enough for every signature below and for an HTML start after a BOM and some whitespace. */
const SNIFF_BYTES = 64;

/**
 * Reads the body, counting bytes as they arrive (Content-Length can be absent, wrong, or the size
 * before decompression): past maxBytes it cancels the stream at once instead of buffering first.
 * `checkHead` sees the first SNIFF_BYTES, so a video or a web page stops there too.
 */
async function readCapped(
  response: Response,
  maxBytes: number,
  checkHead: (head: Uint8Array) => void,
): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  let checked = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) throw new ImageTooLargeError({ maxBytes });
      chunks.push(value);
      if (!checked && total >= SNIFF_BYTES) {
        checked = true;
        checkHead(concat(chunks, total).subarray(0, SNIFF_BYTES));
      }
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  return concat(chunks, total);
}

function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function notImage(head: Uint8Array, htmlError: () => CodedError): CodedError {
  return looksLikeHtml(head)
    ? htmlError()
    : new NotAnImageError('the file is not a PNG, JPEG, GIF, WebP, AVIF or HEIF image', {
        reason: 'signature',
      });
}

function looksLikeHtml(head: Uint8Array): boolean {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head.subarray(0, SNIFF_BYTES));
  return /^\ufeff?\s*<(!doctype\s+html|html|head|body|script|!--)/i.test(text);
}

type Sniffed = 'png' | 'jpeg' | 'gif' | 'webp' | 'avif' | 'heif';

// Six signatures and a completeness check are smaller than a dependency: file-type knows hundreds of
// formats we would refuse anyway, and sharp does the real parsing right after.
function sniff(b: Uint8Array): { format: Sniffed; contentType: string } | undefined {
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b.length >= 8 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((v, i) => b[i] === v)) {
    return { format: 'png', contentType: 'image/png' };
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    return { format: 'jpeg', contentType: 'image/jpeg' };
  }
  if (b.length >= 6 && (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a')) {
    return { format: 'gif', contentType: 'image/gif' };
  }
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') {
    return { format: 'webp', contentType: 'image/webp' };
  }
  if (b.length >= 12 && ascii(4, 8) === 'ftyp') {
    // The major brand, then the compatible brands of the ftyp box (a `mif1` file may well be AVIF).
    const boxEnd = Math.min(
      b.length,
      ((b[0] ?? 0) << 24) | ((b[1] ?? 0) << 16) | ((b[2] ?? 0) << 8) | (b[3] ?? 0),
    );
    const brands = [ascii(8, 12)];
    for (let at = 16; at + 4 <= boxEnd; at += 4) brands.push(ascii(at, at + 4));
    if (brands.some((x) => x === 'avif' || x === 'avis'))
      return { format: 'avif', contentType: 'image/avif' };
    if (brands.some((x) => ['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'].includes(x))) {
      return { format: 'heif', contentType: 'image/heif' };
    }
  }
  return undefined;
}

/**
 * Formats whose end can be checked without decoding: a PNG ends with its IEND chunk, a WebP's RIFF
 * header says its length. JPEG and GIF readers tolerate trailing data and carry no length, and
 * HEIF boxes would need parsing: the decoder (decodeImage, `failOn: 'warning'`) judges those.
 */
function isTruncated(b: Uint8Array, format: Sniffed): boolean {
  if (format === 'png') {
    // IEND's length field (zero) before its type: four bytes alone could occur inside compressed data.
    const at = Buffer.from(b.buffer, b.byteOffset, b.byteLength).lastIndexOf('IEND');
    return at < 4 || b[at - 1] !== 0 || b[at - 2] !== 0 || b[at - 3] !== 0 || b[at - 4] !== 0;
  }
  if (format === 'webp') {
    const riffSize = ((b[4] ?? 0) | ((b[5] ?? 0) << 8) | ((b[6] ?? 0) << 16) | ((b[7] ?? 0) << 24)) >>> 0;
    return b.length < riffSize + 8;
  }
  return false;
}
