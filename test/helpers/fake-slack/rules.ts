// The rules of Slack that shape an adapter, as pure functions and small counters: rate-limit windows,
// response_url use limits, trigger_id expiry, Block Kit checks and the scope each Web API method needs.
// Time comes from an injectable Clock so tests can jump minutes without waiting.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface ManualClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

/** A clock that moves only when told; starts at 2026-01-01 unless given a start. */
export function createManualClock(startMs = Date.UTC(2026, 0, 1)): ManualClock {
  let t = startMs;
  return {
    now: () => t,
    advance(ms) {
      t += ms;
    },
    set(ms) {
      t = ms;
    },
  };
}

export interface RateLimit {
  /** Calls allowed in one window. */
  limit: number;
  windowMs: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSec: number };

/**
 * A sliding window per key (Slack counts per method, per workspace, per app). Refused calls take no slot,
 * as at Slack, so a client that keeps retrying early never digs itself deeper.
 */
export class SlidingWindow {
  readonly #hits = new Map<string, number[]>();

  constructor(
    readonly rule: RateLimit,
    private readonly clock: Clock,
  ) {}

  take(key: string): TakeResult {
    const now = this.clock.now();
    const hits = (this.#hits.get(key) ?? []).filter((t) => t > now - this.rule.windowMs);
    this.#hits.set(key, hits);
    if (hits.length >= this.rule.limit) {
      const oldest = hits[0] ?? now;
      return { ok: false, retryAfterSec: Math.max(1, Math.ceil((oldest + this.rule.windowMs - now) / 1000)) };
    }
    hits.push(now);
    return { ok: true };
  }
}

export interface UseLimit {
  maxUses: number;
  /** Lifetime from creation; after it the URL is expired whatever its use count. */
  lifetimeMs: number;
}

export type UseResult = { ok: true; use: number } | { ok: false; error: 'used_url' | 'expired_url' };

/** response_url: 5 uses within 30 minutes of the payload that carried it. */
export function takeUse(
  record: { createdAt: number; uses: number },
  limit: UseLimit,
  now: number,
): UseResult {
  if (now - record.createdAt > limit.lifetimeMs) return { ok: false, error: 'expired_url' };
  if (record.uses >= limit.maxUses) return { ok: false, error: 'used_url' };
  record.uses += 1;
  return { ok: true, use: record.uses };
}

export type TriggerResult = { ok: true } | { ok: false; error: 'invalid_trigger_id' | 'expired_trigger_id' };

/** A trigger_id opens one view, within 3 seconds of the payload that carried it. */
export function takeTrigger(
  record: { createdAt: number; used: boolean } | undefined,
  lifetimeMs: number,
  now: number,
): TriggerResult {
  if (record === undefined || record.used) return { ok: false, error: 'invalid_trigger_id' };
  if (now - record.createdAt > lifetimeMs) return { ok: false, error: 'expired_trigger_id' };
  record.used = true;
  return { ok: true };
}

/** `not_shown`: a file Slack does not show in image blocks (only png, jpg and gif: WebP is refused). */
export type FileVisibility = 'shared' | 'unshared' | 'missing' | 'not_shown';

export interface BlockRules {
  maxBlocks: number;
  /** How the workspace sees a file that a slack_file object names by id or by url. */
  fileVisibility(ref: { id?: string; url?: string }): FileVisibility;
  /** True for URLs Slack itself cannot fetch without auth (url_private on the file host). */
  isPrivateFileUrl(url: string): boolean;
  /**
   * Whether an image_url was downloaded as an image for this call (image-urls.ts). Absent: no
   * download is checked (blocks checked outside a Web API call).
   */
  imageDownloaded?(url: string): boolean;
}

const knownBlockTypes = new Set([
  'actions',
  'card',
  'carousel',
  'context',
  'context_actions',
  'divider',
  'file',
  'header',
  'image',
  'input',
  'markdown',
  'rich_text',
  'section',
  'table',
  'video',
]);

/**
 * Slack's Block Kit errors, in Slack's own wording where known ("invalid slack file [json-pointer:...]").
 * Returns an empty list for valid blocks. Carousel and card internals are not checked: their shape is new.
 */
export function checkBlocks(blocks: unknown, rules: BlockRules): string[] {
  const errors: string[] = [];
  const at = (msg: string, pointer: string) => errors.push(`${msg} [json-pointer:${pointer}]`);
  if (!Array.isArray(blocks)) {
    at('must be an array', '/blocks');
    return errors;
  }
  if (blocks.length > rules.maxBlocks) at(`no more than ${rules.maxBlocks} items allowed`, '/blocks');
  const blockIds = new Set<string>();
  for (const [i, block] of blocks.entries()) {
    const p = `/blocks/${i}`;
    if (!isRecord(block)) {
      at('must be an object', p);
      continue;
    }
    if (typeof block.type !== 'string' || !knownBlockTypes.has(block.type)) {
      at(`unsupported type: ${String(block.type)}`, `${p}/type`);
      continue;
    }
    if (block.block_id !== undefined) {
      if (typeof block.block_id !== 'string' || block.block_id.length > 255) {
        at('must be a string of at most 255 characters', `${p}/block_id`);
      } else if (blockIds.has(block.block_id)) at('duplicate block_id', `${p}/block_id`);
      else blockIds.add(block.block_id);
    }
    checkBlockFields(block, p, at);
    walkImages(block, p, rules, at);
  }
  return errors;
}

type At = (msg: string, pointer: string) => void;

function checkBlockFields(block: Record<string, unknown>, p: string, at: At): void {
  const text = isRecord(block.text) ? block.text : undefined;
  switch (block.type) {
    case 'section':
      if (text === undefined && !Array.isArray(block.fields)) at('must provide text or fields', p);
      if (typeof text?.text === 'string' && text.text.length > 3000) {
        at('must be less than 3001 characters', `${p}/text/text`);
      }
      break;
    case 'header':
      if (text?.type !== 'plain_text') at('must be a plain_text object', `${p}/text`);
      else if (typeof text.text !== 'string' || text.text.length > 150) {
        at('must be less than 151 characters', `${p}/text/text`);
      }
      break;
    case 'actions': {
      const elements = Array.isArray(block.elements) ? block.elements : [];
      if (elements.length === 0) at('must provide at least 1 item', `${p}/elements`);
      if (elements.length > 25) at('no more than 25 items allowed', `${p}/elements`);
      const actionIds = new Set<string>();
      for (const [j, el] of elements.entries()) {
        const q = `${p}/elements/${j}`;
        if (!isRecord(el)) {
          at('must be an object', q);
          continue;
        }
        if (typeof el.action_id === 'string') {
          if (el.action_id.length > 255) at('must be less than 256 characters', `${q}/action_id`);
          if (actionIds.has(el.action_id)) at('duplicate action_id', `${q}/action_id`);
          actionIds.add(el.action_id);
        }
        if (el.type === 'button') {
          const label = isRecord(el.text) ? el.text : undefined;
          if (label?.type !== 'plain_text' || typeof label.text !== 'string') {
            at('must be a plain_text object', `${q}/text`);
          } else if (label.text.length > 75) at('must be less than 76 characters', `${q}/text/text`);
          if (typeof el.value === 'string' && el.value.length > 2000) {
            at('must be less than 2001 characters', `${q}/value`);
          }
        }
      }
      break;
    }
    case 'context': {
      const elements = Array.isArray(block.elements) ? block.elements : [];
      if (elements.length === 0) at('must provide at least 1 item', `${p}/elements`);
      if (elements.length > 10) at('no more than 10 items allowed', `${p}/elements`);
      break;
    }
  }
}

/** Every image, as block or element (section accessory, context element), at any depth. */
function walkImages(node: unknown, p: string, rules: BlockRules, at: At): void {
  if (Array.isArray(node)) {
    node.forEach((child, i) => {
      walkImages(child, `${p}/${i}`, rules, at);
    });
    return;
  }
  if (!isRecord(node)) return;
  if (node.type === 'image') checkImage(node, p, rules, at);
  for (const [key, child] of Object.entries(node)) {
    if (typeof child === 'object' && child !== null && key !== 'slack_file')
      walkImages(child, `${p}/${key}`, rules, at);
  }
}

function checkImage(img: Record<string, unknown>, p: string, rules: BlockRules, at: At): void {
  let altOk = false;
  if (typeof img.alt_text !== 'string' || img.alt_text.length === 0) {
    at('missing required field: alt_text', `${p}/alt_text`);
  } else if (img.alt_text.length > 2000) at('must be less than 2001 characters', `${p}/alt_text`);
  else altOk = true;
  const hasUrl = img.image_url !== undefined;
  const hasFile = img.slack_file !== undefined;
  if (hasUrl === hasFile) {
    at('must provide exactly one of image_url or slack_file', p);
    return;
  }
  if (hasUrl) {
    const url = img.image_url;
    if (typeof url !== 'string' || !/^https?:\/\//.test(url) || url.length > 3000) {
      at('invalid_url', `${p}/image_url`);
    } else if (rules.isPrivateFileUrl(url)) {
      // Slack fetches image_url without credentials, so a url_private link never renders.
      at('downloading image failed', `${p}/image_url`);
    } else if (altOk && rules.imageDownloaded !== undefined && !rules.imageDownloaded(url)) {
      // Downloaded when the message is posted or edited; a failed or non-image download refuses it.
      at('downloading image failed', `${p}/image_url`);
    }
    return;
  }
  const ref = img.slack_file;
  if (!isRecord(ref) || (typeof ref.id === 'string') === (typeof ref.url === 'string')) {
    at('must provide exactly one of id or url', `${p}/slack_file`);
    return;
  }
  const visibility = rules.fileVisibility(
    typeof ref.id === 'string' ? { id: ref.id } : { url: String(ref.url) },
  );
  if (visibility !== 'shared') at('invalid slack file', `${p}/slack_file`);
}

export type ChannelKind = 'public' | 'private' | 'im';

/** The scope a bot token needs for each method the fake serves; undefined: any valid token. */
export function scopeFor(method: string, kind: ChannelKind | undefined): string | undefined {
  const prefix = kind === 'private' ? 'groups' : kind === 'im' ? 'im' : 'channels';
  switch (method) {
    case 'chat.postMessage':
    case 'chat.update':
    case 'chat.postEphemeral':
    case 'chat.delete':
      return 'chat:write';
    case 'files.getUploadURLExternal':
    case 'files.completeUploadExternal':
    case 'files.delete':
      return 'files:write';
    case 'files.info':
      return 'files:read';
    case 'conversations.history':
      return `${prefix}:history`;
    case 'conversations.info':
      return `${prefix}:read`;
    case 'conversations.join':
      return 'channels:join';
    case 'users.info':
      return 'users:read';
    case 'apps.connections.open':
      return 'connections:write';
    default:
      return undefined;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
