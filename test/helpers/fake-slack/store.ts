// The fake workspace's state: channels, users, messages by channel and ts (with their current text and
// blocks), ephemeral messages, files with their bytes and shares, and published views. The Web API, the
// file host and the tests all read and write this one store.

import type { ChannelKind, Clock } from './rules.js';

export interface SlackChannel {
  id: string;
  name: string;
  is_channel: boolean;
  is_group: boolean;
  is_im: boolean;
  is_private: boolean;
  is_member: boolean;
  is_archived: boolean;
  created: number;
  /** Set on ims: the other party. */
  user?: string;
}

export interface SlackUser {
  id: string;
  team_id: string;
  name: string;
  real_name: string;
  is_bot: boolean;
  deleted: boolean;
  profile: { display_name: string; real_name: string };
}

export interface FileShare {
  ts: string;
  channel_name: string;
  team_id: string;
  share_user_id: string;
  reply_users: string[];
  reply_users_count: number;
  reply_count: number;
  source: string;
  thread_ts?: string;
}

/** The file object Slack returns from files.info and puts in messages and events. */
export interface SlackFile {
  id: string;
  created: number;
  timestamp: number;
  name: string;
  title: string;
  mimetype: string;
  filetype: string;
  pretty_type: string;
  user: string;
  user_team: string;
  editable: boolean;
  size: number;
  mode: 'hosted' | 'tombstone';
  is_external: boolean;
  external_type: string;
  is_public: boolean;
  public_url_shared: boolean;
  display_as_bot: boolean;
  username: string;
  url_private: string;
  url_private_download: string;
  permalink: string;
  permalink_public: string;
  file_access: 'visible';
  has_rich_preview: boolean;
  channels: string[];
  groups: string[];
  ims: string[];
  shares: { public?: Record<string, FileShare[]>; private?: Record<string, FileShare[]> };
  original_w?: number;
  original_h?: number;
  alt_txt?: string;
}

/** A file entry in a message once the file is gone. */
export interface FileTombstone {
  id: string;
  mode: 'tombstone';
}

export interface SlackMessage {
  type: 'message';
  ts: string;
  text: string;
  user?: string;
  bot_id?: string;
  app_id?: string;
  team?: string;
  subtype?: string;
  blocks?: unknown[];
  files?: (SlackFile | FileTombstone)[];
  upload?: boolean;
  thread_ts?: string;
  reply_count?: number;
  reply_users?: string[];
  latest_reply?: string;
  edited?: { user: string; ts: string };
  bot_profile?: { id: string; app_id: string; name: string; team_id: string; deleted: boolean };
}

export interface EphemeralMessage {
  channel: string;
  user: string;
  message_ts: string;
  text: string;
  blocks?: unknown[];
  thread_ts?: string;
  /** Where it came from: chat.postEphemeral, a response_url, or an ack body. */
  via: 'chat.postEphemeral' | 'response_url' | 'ack';
}

export interface FileRecord {
  file: SlackFile;
  bytes: Buffer | undefined;
  /** The length promised to files.getUploadURLExternal. */
  declaredLength: number | undefined;
  uploadKey: string | undefined;
  completed: boolean;
  deleted: boolean;
}

export interface StoredView {
  id: string;
  user: string;
  view: Record<string, unknown>;
  hash: string;
  at: number;
}

export class WorkspaceStore {
  readonly channels = new Map<string, SlackChannel>();
  readonly users = new Map<string, SlackUser>();
  readonly messages = new Map<string, SlackMessage[]>();
  readonly ephemerals: EphemeralMessage[] = [];
  readonly files = new Map<string, FileRecord>();
  /** The latest home view per user; every publish is also kept in homeViewHistory. */
  readonly homeViews = new Map<string, StoredView>();
  readonly homeViewHistory: StoredView[] = [];
  readonly modals = new Map<string, StoredView>();
  #lastTsMicros = 0;
  #ids = 0;

  constructor(
    readonly teamId: string,
    private readonly clock: Clock,
  ) {}

  /** Ids in Slack's style: a type letter and upper-case base-36 (F0A1B2C3D). */
  newId(prefix: string): string {
    this.#ids += 1;
    return `${prefix}0${this.#ids.toString(36).toUpperCase().padStart(8, '0')}`;
  }

  /** Message timestamps are unique and increasing, from the clock; a frozen clock still yields new ones. */
  newTs(): string {
    const micros = Math.max(this.clock.now() * 1000, this.#lastTsMicros + 1);
    this.#lastTsMicros = micros;
    return formatTs(micros);
  }

  channelKind(id: string): ChannelKind | undefined {
    const c = this.channels.get(id);
    if (c === undefined) return undefined;
    return c.is_im ? 'im' : c.is_private ? 'private' : 'public';
  }

  channelMessages(channel: string): SlackMessage[] {
    let list = this.messages.get(channel);
    if (list === undefined) {
      list = [];
      this.messages.set(channel, list);
    }
    return list;
  }

  message(channel: string, ts: string): SlackMessage | undefined {
    return this.messages.get(channel)?.find((m) => m.ts === ts);
  }

  /** Inserts in ts order, so seeded history with old timestamps lands where it belongs. */
  insertMessage(channel: string, message: SlackMessage): void {
    const list = this.channelMessages(channel);
    if (list.some((m) => m.ts === message.ts))
      throw new Error(`fake-slack: message ${channel}/${message.ts} exists`);
    const at = list.findIndex((m) => compareTs(m.ts, message.ts) > 0);
    if (at < 0) list.push(message);
    else list.splice(at, 0, message);
    if (message.thread_ts !== undefined && message.thread_ts !== message.ts) {
      const parent = this.message(channel, message.thread_ts);
      if (parent !== undefined) {
        parent.thread_ts = parent.ts;
        parent.reply_count = (parent.reply_count ?? 0) + 1;
        const who = message.user ?? '';
        parent.reply_users = [...new Set([...(parent.reply_users ?? []), who])];
        parent.latest_reply = message.ts;
      }
    }
    for (const f of message.files ?? []) {
      if (f.mode !== 'tombstone') this.recordShare(f.id, channel, message);
    }
  }

  removeMessage(channel: string, ts: string): SlackMessage | undefined {
    const list = this.messages.get(channel);
    const at = list?.findIndex((m) => m.ts === ts) ?? -1;
    if (list === undefined || at < 0) return undefined;
    return list.splice(at, 1)[0];
  }

  /** Puts the share in the file's `shares` and channel lists, and refreshes the copies held by messages. */
  recordShare(fileId: string, channel: string, message: SlackMessage): void {
    const rec = this.files.get(fileId);
    const ch = this.channels.get(channel);
    if (rec === undefined || ch === undefined) return;
    const f = rec.file;
    const bucket = ch.is_private || ch.is_im ? 'private' : 'public';
    const shares = f.shares[bucket] ?? {};
    f.shares[bucket] = shares;
    const share: FileShare = {
      ts: message.ts,
      channel_name: ch.name,
      team_id: this.teamId,
      share_user_id: message.user ?? '',
      reply_users: [],
      reply_users_count: 0,
      reply_count: 0,
      source: 'UNKNOWN',
      ...(message.thread_ts !== undefined && message.thread_ts !== message.ts
        ? { thread_ts: message.thread_ts }
        : {}),
    };
    shares[channel] = [...(shares[channel] ?? []), share];
    const list = ch.is_im ? f.ims : ch.is_private ? f.groups : f.channels;
    if (!list.includes(channel)) list.push(channel);
    f.is_public = f.is_public || bucket === 'public';
  }

  isShared(fileId: string): boolean {
    const rec = this.files.get(fileId);
    if (rec === undefined || rec.deleted) return false;
    const { shares } = rec.file;
    return Object.keys(shares.public ?? {}).length + Object.keys(shares.private ?? {}).length > 0;
  }

  fileByUrl(url: string): FileRecord | undefined {
    for (const rec of this.files.values()) {
      const f = rec.file;
      if (f.url_private === url || f.url_private_download === url || f.permalink === url) return rec;
    }
    return undefined;
  }

  /** Replaces the file in every message by a tombstone, as Slack does when a file is deleted. */
  tombstoneFile(fileId: string): string[] {
    const channels: string[] = [];
    for (const [channel, list] of this.messages) {
      for (const m of list) {
        if (m.files?.some((f) => f.id === fileId)) {
          m.files = m.files.map((f) => (f.id === fileId ? { id: fileId, mode: 'tombstone' } : f));
          if (!channels.includes(channel)) channels.push(channel);
        }
      }
    }
    return channels;
  }
}

function formatTs(micros: number): string {
  const s = Math.floor(micros / 1e6);
  return `${s}.${String(micros - s * 1e6).padStart(6, '0')}`;
}

export function compareTs(a: string, b: string): number {
  return tsMicros(a) - tsMicros(b);
}

export function tsMicros(ts: string): number {
  const [s = '0', frac = '0'] = ts.split('.');
  return Number(s) * 1e6 + Number(frac.padEnd(6, '0').slice(0, 6));
}

/** Width and height from a PNG's IHDR, so files.info shows original_w/original_h for PNGs. */
export function pngSize(bytes: Uint8Array): { w: number; h: number } | undefined {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 24 || sig.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { w: view.getUint32(16), h: view.getUint32(20) };
}

const mimeByExt: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  txt: 'text/plain',
  json: 'application/json',
  pdf: 'application/pdf',
};

export function guessMimetype(name: string): string {
  const ext = name.split('.').pop()?.toLowerCase() ?? '';
  return mimeByExt[ext] ?? 'application/octet-stream';
}

export function filetypeOf(name: string, mimetype: string): string {
  const ext = name.includes('.') ? (name.split('.').pop()?.toLowerCase() ?? '') : '';
  if (ext !== '') return ext === 'jpeg' ? 'jpg' : ext;
  return mimetype.split('/')[1] ?? 'binary';
}

/**
 * A hosted file as Slack describes it, served by the fake's file host at `base`: what addFile and
 * files.getUploadURLExternal both create (not shared anywhere yet).
 */
export function hostedFile(f: {
  id: string;
  name: string;
  title: string;
  mimetype: string;
  user: string;
  teamId: string;
  size: number;
  base: string;
  nowSec: number;
  /** Part of permalink_public after the team and file ids. @defaultValue none */
  publicSuffix?: string;
}): SlackFile {
  const name = encodeURIComponent(f.name);
  const filetype = filetypeOf(f.name, f.mimetype);
  return {
    id: f.id,
    created: f.nowSec,
    timestamp: f.nowSec,
    name: f.name,
    title: f.title,
    mimetype: f.mimetype,
    filetype,
    pretty_type: filetype.toUpperCase(),
    user: f.user,
    user_team: f.teamId,
    editable: false,
    size: f.size,
    mode: 'hosted',
    is_external: false,
    external_type: '',
    is_public: false,
    public_url_shared: false,
    display_as_bot: false,
    username: '',
    url_private: `${f.base}/files-pri/${f.teamId}-${f.id}/${name}`,
    url_private_download: `${f.base}/files-pri/${f.teamId}-${f.id}/download/${name}`,
    permalink: `${f.base}/files/${f.user}/${f.id}/${name}`,
    permalink_public: `${f.base}/public/${f.teamId}-${f.id}${f.publicSuffix === undefined ? '' : `-${f.publicSuffix}`}`,
    file_access: 'visible',
    has_rich_preview: false,
    channels: [],
    groups: [],
    ims: [],
    shares: {},
  };
}
