// What Slack does with an image block's `image_url`: its servers download the URL when the message is
// posted or edited (no credentials, no cookies) and refuse the whole message with `invalid_blocks`,
// "downloading image failed [json-pointer:/blocks/N/image_url]", when the download fails or is not an
// image of a kind Slack shows (png, jpg, gif; webp is refused too). That wording is what Slack answers
// (slackapi/python-slack-sdk#1782, otiai10/amesh-bot#24). Structural checks (http(s), 3000
// characters, alt_text) come first in rules.ts; only images that pass them are downloaded.
import { isRecord } from './rules.js';

export interface ImageFetch {
  url: string;
  /** Fake-clock time of the download. */
  at: number;
  ok: boolean;
  status?: number;
  /** What was downloaded, by its first bytes. */
  kind?: 'png' | 'jpeg' | 'gif';
  bytes?: number;
  /** Why it failed: a network error, an HTTP status, or not an image. */
  reason?: string;
}

/** image_url values of image blocks and elements that rules.ts would otherwise accept. */
export function downloadableImageUrls(blocks: unknown): string[] {
  const urls = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const child of node) walk(child);
      return;
    }
    if (!isRecord(node)) return;
    if (
      node.type === 'image' &&
      typeof node.image_url === 'string' &&
      node.slack_file === undefined &&
      typeof node.alt_text === 'string' &&
      node.alt_text.length > 0 &&
      node.alt_text.length <= 2000 &&
      isFetchableUrl(node.image_url)
    ) {
      urls.add(node.image_url);
    }
    for (const [key, child] of Object.entries(node)) {
      if (key !== 'slack_file' && typeof child === 'object' && child !== null) walk(child);
    }
  };
  walk(blocks);
  return [...urls];
}

export function isFetchableUrl(url: string): boolean {
  return /^https?:\/\//i.test(url) && url.length <= 3000;
}

/** The kind of image by its magic bytes; undefined for anything Slack would not show. */
export function sniffImage(bytes: Uint8Array): ImageFetch['kind'] {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes[0] === 0x47 && bytes[1] === 0x49 && bytes[2] === 0x46 && bytes[3] === 0x38) return 'gif';
  return undefined;
}

/** Downloads one image_url the way Slack's servers would (plain GET, a deadline, redirects followed). */
export async function fetchImageUrl(url: string, at: number, timeoutMs: number): Promise<ImageFetch> {
  try {
    const res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(timeoutMs) });
    const body = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) return { url, at, ok: false, status: res.status, reason: `HTTP ${res.status}` };
    const kind = sniffImage(body);
    if (kind === undefined) return { url, at, ok: false, status: res.status, reason: 'not an image' };
    return { url, at, ok: true, status: res.status, kind, bytes: body.byteLength };
  } catch (error) {
    return { url, at, ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

/** The blocks of a Web API call or a response_url post: `blocks` (JSON string or array) and `view.blocks`. */
export function blocksOfArgs(args: Record<string, unknown>): unknown[] {
  const parse = (v: unknown): unknown => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v);
    } catch {
      return undefined;
    }
  };
  const out: unknown[] = [];
  const blocks = parse(args.blocks);
  if (Array.isArray(blocks)) out.push(...blocks);
  const view = parse(args.view);
  if (isRecord(view) && Array.isArray(view.blocks)) out.push(...view.blocks);
  return out;
}
