// One file over HTTP(S) for `models pull`: streamed to `dest.part`, resumed with a Range request
// after an interruption, checked (size; sha256 when known) and only then renamed to `dest`, so a
// file at `dest` is always whole. Redirects are followed by hand so that a token never leaves the
// origin it was meant for and Hugging Face's headers on the first hop (size, sha256) are seen.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { type ErrorCode, ReasonedError } from '../../../shared/errors.js';

// As shared DownloadFailedError: `download_failed` with the reason in details. Writing the file is
// not the download's failure. The URL stays out of details: a signed redirect can carry a token.
const downloadErrorCodes = {
  not_found: 'download_failed',
  unauthorized: 'download_failed',
  http_status: 'download_failed',
  network: 'download_failed',
  size_mismatch: 'download_failed',
  checksum: 'download_failed',
  disk: 'internal',
} as const satisfies Record<string, ErrorCode>;

export type DownloadErrorReason = keyof typeof downloadErrorCodes;

export class DownloadError extends ReasonedError<
  DownloadErrorReason,
  (typeof downloadErrorCodes)[DownloadErrorReason]
> {
  override readonly name = 'DownloadError';
  constructor(
    reason: DownloadErrorReason,
    message: string,
    readonly url: string,
    options: { cause?: unknown } = {},
  ) {
    super(downloadErrorCodes[reason], reason, message, options);
  }
}

export interface DownloadProgress {
  readonly label: string;
  readonly received: number;
  /** Total bytes when the server said; undefined for a chunked reply. */
  readonly total: number | undefined;
  /** Bytes that were already on disk from an earlier, interrupted run. */
  readonly resumedFrom: number;
  readonly done: boolean;
}

export interface DownloadOptions {
  /** Names the file in progress reports. @defaultValue the destination's path */
  readonly label?: string;
  /** Extra request headers (e.g. Authorization), sent to the first URL's origin only. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Expected size in bytes, checked when done. @defaultValue undefined (the server's length is still checked) */
  readonly size?: number;
  /** Expected lowercase hex sha256 of the whole file. @defaultValue undefined (Hugging Face's X-Linked-Etag when sent) */
  readonly sha256?: string;
  /** Called for every chunk at most every `progressIntervalMs`, and once at the end. */
  readonly onProgress?: (p: DownloadProgress) => void;
  /** @defaultValue 500 */
  readonly progressIntervalMs?: number;
  /** Abort when no byte arrives for this long. @defaultValue 60_000 */
  readonly stallTimeoutMs?: number;
  /** @defaultValue globalThis.fetch */
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
}

export const DefaultDownloadOptions = {
  progressIntervalMs: 500,
  stallTimeoutMs: 60_000,
} as const satisfies Partial<DownloadOptions>;

export interface DownloadResult {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Bytes kept from an earlier run (0 when the download started from scratch). */
  readonly resumedFrom: number;
}

/** What we remember beside `dest.part`, so a resume asks for the same file version it started with. */
interface PartMeta {
  readonly url: string;
  readonly validator?: string;
  readonly total?: number;
}

const MAX_REDIRECTS = 10;
const SHA256 = /^[0-9a-f]{64}$/;

/** Response headers along the redirect chain, first hop first. */
interface Fetched {
  readonly res: Response;
  readonly finalUrl: string;
  readonly linkedSize: number | undefined;
  readonly linkedSha256: string | undefined;
}

async function request(
  url: string,
  headers: Record<string, string>,
  authHeaders: Readonly<Record<string, string>>,
  doFetch: typeof fetch,
  signal: AbortSignal,
): Promise<Fetched> {
  let current = new URL(url);
  const origin = current.origin;
  let linkedSize: number | undefined;
  let linkedSha256: string | undefined;
  for (let hop = 0; ; hop++) {
    let res: Response;
    try {
      res = await doFetch(current, {
        headers: current.origin === origin ? { ...headers, ...authHeaders } : headers,
        redirect: 'manual',
        signal,
      });
    } catch (cause) {
      throw networkError(current.href, cause, signal);
    }
    // Hugging Face puts the LFS object's size and sha256 on the resolve reply, before the CDN hop.
    const ls = res.headers.get('x-linked-size');
    if (ls && /^\d+$/.test(ls)) linkedSize ??= Number(ls);
    const le = res.headers.get('x-linked-etag')?.replace(/^W\//, '').replaceAll('"', '').toLowerCase();
    if (le && SHA256.test(le)) linkedSha256 ??= le;
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      if (hop >= MAX_REDIRECTS) {
        throw new DownloadError('http_status', `too many redirects fetching ${url}`, url);
      }
      current = new URL(location, current);
      continue;
    }
    return { res, finalUrl: current.href, linkedSize, linkedSha256 };
  }
}

function networkError(url: string, cause: unknown, signal: AbortSignal): DownloadError {
  const inner = (cause as { cause?: { code?: string; message?: string } }).cause;
  const why = signal.aborted
    ? String(signal.reason instanceof Error ? signal.reason.message : (signal.reason ?? 'aborted'))
    : (inner?.code ?? inner?.message ?? (cause as Error).message);
  return new DownloadError('network', `cannot download ${url}: ${why}`, url, { cause });
}

function statusError(url: string, res: Response): DownloadError {
  const s = res.status;
  if (s === 404) return new DownloadError('not_found', `${url}: HTTP 404 Not Found`, url);
  if (s === 401 || s === 403) {
    return new DownloadError(
      'unauthorized',
      `${url}: HTTP ${s} ${res.statusText || 'Unauthorized'} (a gated or private file: set HF_TOKEN to an ` +
        'access token that may read it, or check the URL)',
      url,
    );
  }
  return new DownloadError('http_status', `${url}: HTTP ${s} ${res.statusText}`.trimEnd(), url);
}

function diskError(path: string, url: string, cause: unknown): DownloadError {
  const code = (cause as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOSPC' || code === 'EDQUOT' ? 'the disk is full' : ((cause as Error).message ?? String(cause));
  return new DownloadError('disk', `cannot write ${path}: ${why}`, url, { cause });
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function readMeta(path: string): Promise<PartMeta | undefined> {
  try {
    const m = JSON.parse(await readFile(path, 'utf8')) as PartMeta;
    return typeof m.url === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/** Parses `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`). */
function contentRange(h: string | null): { start: number; total: number | undefined } | undefined {
  const m = h && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(h.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/**
 * Downloads `url` to `dest`. An existing `dest.part` from an interrupted run of the same URL is
 * continued with `Range` (and `If-Range`, so a file that changed on the server starts over); a
 * server that ignores ranges gets the whole file again. Throws DownloadError; `dest.part` stays for
 * the next run unless its content is known bad (size or checksum).
 */
export async function download(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const o = { ...DefaultDownloadOptions, ...options };
  const part = `${dest}.part`;
  const metaPath = `${dest}.part.json`;
  const label = o.label ?? dest;
  const doFetch = o.fetch ?? globalThis.fetch;

  const meta = await readMeta(metaPath);
  let have = meta?.url === url ? await sizeOf(part) : 0;
  if (have === 0) await rm(part, { force: true });

  // Stalls abort through our own controller; the caller's signal aborts it too.
  const controller = new AbortController();
  const onAbort = () => controller.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let stallTimer: NodeJS.Timeout | undefined;
  const armStall = () => {
    clearTimeout(stallTimer);
    stallTimer = setTimeout(
      () => controller.abort(new Error(`no data for ${o.stallTimeoutMs / 1000} s`)),
      o.stallTimeoutMs,
    );
  };

  try {
    armStall();
    // Byte ranges and lengths must count the file's own bytes, not a compressed transfer of them.
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (have > 0) {
      headers.range = `bytes=${have}-`;
      if (meta?.validator) headers['if-range'] = meta.validator;
    }
    let fetched = await request(url, headers, o.headers ?? {}, doFetch, controller.signal);
    let { res } = fetched;

    if (res.status === 416 && have > 0) {
      // Our part is as long as the file (or longer): done if the server's total agrees, else restart.
      await res.body?.cancel();
      const total = contentRange(res.headers.get('content-range'))?.total ?? meta?.total;
      if (total === undefined || total !== have) {
        await rm(part, { force: true });
        have = 0;
        fetched = await request(
          url,
          { 'accept-encoding': 'identity' },
          o.headers ?? {},
          doFetch,
          controller.signal,
        );
        res = fetched.res;
      }
    }
    const complete416 = res.status === 416;
    if (!res.ok && !complete416) {
      await res.body?.cancel();
      throw statusError(url, res);
    }

    let total: number | undefined;
    let append = false;
    if (complete416) {
      total = have;
      append = true;
    } else if (res.status === 206) {
      const range = contentRange(res.headers.get('content-range'));
      if (!range || range.start !== have) {
        await res.body?.cancel();
        throw new DownloadError(
          'http_status',
          `${url}: asked for bytes from ${have}, the server sent ${res.headers.get('content-range') ?? 'no Content-Range'}`,
          url,
        );
      }
      total = range.total;
      append = true;
    } else {
      // 200: the whole file, whether we asked for a range or not.
      const len = res.headers.get('content-length');
      const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
      total = len && /^\d+$/.test(len) && !encoded ? Number(len) : undefined;
      have = 0;
    }
    total ??= fetched.linkedSize;
    const expectedSize = o.size ?? fetched.linkedSize;
    const expectedSha = o.sha256?.toLowerCase() ?? fetched.linkedSha256;
    if (expectedSize !== undefined && total !== undefined && expectedSize !== total) {
      await res.body?.cancel();
      throw new DownloadError(
        'size_mismatch',
        `${url}: the server offers ${total} bytes, expected ${expectedSize}`,
        url,
      );
    }

    // If-Range takes a strong ETag or a Last-Modified date; without one a resume trusts the URL alone.
    const etag = res.headers.get('etag');
    const validator =
      (etag && !etag.startsWith('W/') ? etag : undefined) ?? res.headers.get('last-modified') ?? undefined;
    const newMeta: PartMeta = {
      url,
      ...(validator ? { validator } : {}),
      ...(total !== undefined ? { total } : {}),
    };
    try {
      await writeFile(metaPath, JSON.stringify(newMeta));
    } catch (cause) {
      throw diskError(metaPath, url, cause);
    }

    const hash = createHash('sha256');
    if (append && have > 0) await hashFile(part, hash);
    let received = have;
    const resumedFrom = have;
    let lastReport = 0;
    const report = (done: boolean) => {
      const now = Date.now();
      if (!o.onProgress || (!done && now - lastReport < o.progressIntervalMs)) return;
      lastReport = now;
      o.onProgress({ label, received, total, resumedFrom, done });
    };

    if (!complete416) {
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        fh = await open(part, append ? 'a' : 'w');
      } catch (cause) {
        await res.body?.cancel();
        throw diskError(part, url, cause);
      }
      try {
        report(false);
        if (res.body) {
          const reader = res.body.getReader();
          for (;;) {
            let chunk: Awaited<ReturnType<typeof reader.read>>;
            try {
              chunk = await reader.read();
            } catch (cause) {
              throw new DownloadError(
                'network',
                `${url}: the connection broke after ${received} of ${total ?? '?'} bytes ` +
                  `(${networkError(url, cause, controller.signal).message.replace(/^cannot download \S+: /, '')}); ` +
                  'run the same command again to resume',
                url,
                { cause },
              );
            }
            if (chunk.done) break;
            armStall();
            try {
              await fh.write(chunk.value);
            } catch (cause) {
              await reader.cancel().catch(() => {});
              throw diskError(part, url, cause);
            }
            hash.update(chunk.value);
            received += chunk.value.length;
            report(false);
          }
        }
      } finally {
        await fh.close().catch(() => {});
      }
    }

    if (total !== undefined && received < total) {
      throw new DownloadError(
        'network',
        `${url}: the connection ended after ${received} of ${total} bytes; run the same command again to resume`,
        url,
      );
    }
    if (
      (total !== undefined && received !== total) ||
      (expectedSize !== undefined && received !== expectedSize)
    ) {
      await rm(part, { force: true });
      throw new DownloadError(
        'size_mismatch',
        `${url}: received ${received} bytes, expected ${expectedSize ?? total}`,
        url,
      );
    }
    const sha256 = hash.digest('hex');
    if (expectedSha !== undefined && sha256 !== expectedSha) {
      await rm(part, { force: true });
      await rm(metaPath, { force: true });
      throw new DownloadError(
        'checksum',
        `${url}: sha256 ${sha256} does not match the expected ${expectedSha}; the partial file was deleted`,
        url,
      );
    }
    try {
      await rename(part, dest);
      await rm(metaPath, { force: true });
    } catch (cause) {
      throw diskError(dest, url, cause);
    }
    report(true);
    return { path: dest, bytes: received, sha256, resumedFrom };
  } finally {
    clearTimeout(stallTimer);
    o.signal?.removeEventListener('abort', onAbort);
  }
}
