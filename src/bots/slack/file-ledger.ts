// What the Slack adapter remembers of the images it has seen, in Redis: conversations.history can be
// one call a minute, so `/whatis` on "the latest image" or on a permalink, and `file_deleted` (which
// names a file but not its message), are answered from here. Kept: recent image messages per
// channel, where each indexed file was posted, and which channels have a backfill under way.
import type { Redis } from 'ioredis';

/** A file as the adapter needs it to fetch it again: the id, and what the payload said. */
export interface LedgerFile {
  id: string;
  name?: string | undefined;
  mimetype?: string | undefined;
  size?: number | undefined;
  /** url_private_download or url_private (needs the bot token). */
  url?: string | undefined;
}

export interface LedgerMessage {
  channel: string;
  ts: string;
  threadTs?: string | undefined;
  user?: string | undefined;
  files: LedgerFile[];
}

export interface FileLedgerOptions {
  connection: Redis;
  prefix: string;
  /** Image messages remembered per channel for "the latest image". @defaultValue 20 */
  recentPerChannel?: number;
  /** How long a message's files are remembered for permalinks. @defaultValue 7 days */
  messageTtlSeconds?: number;
}

export class FileLedger {
  readonly #r: Redis;
  readonly #p: string;
  readonly #keep: number;
  readonly #ttl: number;

  constructor(options: FileLedgerOptions) {
    this.#r = options.connection;
    this.#p = `${options.prefix}:slack`;
    this.#keep = options.recentPerChannel ?? 20;
    this.#ttl = options.messageTtlSeconds ?? 7 * 86_400;
  }

  #message(team: string, channel: string, ts: string) {
    return `${this.#p}:msg:${team}:${channel}:${ts}`;
  }
  #recent(team: string, channel: string) {
    return `${this.#p}:recent:${team}:${channel}`;
  }
  #files(team: string) {
    return `${this.#p}:files:${team}`;
  }
  #backfills() {
    return `${this.#p}:backfills`;
  }

  /** Remembers a message with images (a repeat replaces the earlier record). */
  async record(team: string, message: LedgerMessage): Promise<void> {
    if (message.files.length === 0) return;
    const where = await this.#r.hmget(this.#files(team), ...message.files.map((f) => f.id));
    const multi = this.#r.multi();
    message.files.forEach((file, i) => {
      const places = parsePlaces(where[i] ?? null).filter(
        (p) => p.channel !== message.channel || p.ts !== message.ts,
      );
      places.push({ channel: message.channel, ts: message.ts });
      multi.hset(this.#files(team), file.id, JSON.stringify(places));
    });
    const recent = this.#recent(team, message.channel);
    await multi
      .set(this.#message(team, message.channel, message.ts), JSON.stringify(message), 'EX', this.#ttl)
      .zadd(recent, tsScore(message.ts), message.ts)
      .zremrangebyrank(recent, 0, -this.#keep - 1)
      .expire(recent, this.#ttl)
      .exec();
  }

  async message(team: string, channel: string, ts: string): Promise<LedgerMessage | undefined> {
    const raw = await this.#r.get(this.#message(team, channel, ts));
    return raw === null ? undefined : parseMessage(raw);
  }

  /** The channel's image messages, newest first. */
  async latest(team: string, channel: string, limit = 5): Promise<LedgerMessage[]> {
    const tss = await this.#r.zrevrange(this.#recent(team, channel), 0, limit - 1);
    const out: LedgerMessage[] = [];
    for (const ts of tss) {
      const m = await this.message(team, channel, ts);
      if (m) out.push(m);
    }
    return out;
  }

  /** Where a file was posted (a file can be shared to several channels). */
  async placesOf(team: string, fileId: string): Promise<{ channel: string; ts: string }[]> {
    return parsePlaces(await this.#r.hget(this.#files(team), fileId));
  }

  /** A message is gone: forget it and its files' places in it. */
  async forgetMessage(team: string, channel: string, ts: string): Promise<void> {
    const m = await this.message(team, channel, ts);
    await this.#r
      .multi()
      .del(this.#message(team, channel, ts))
      .zrem(this.#recent(team, channel), ts)
      .exec();
    for (const file of m?.files ?? []) await this.#dropPlace(team, file.id, channel, ts);
  }

  /** A file is gone (deleted, or edited out of one message when `at` is given). */
  async forgetFile(team: string, fileId: string, at?: { channel: string; ts: string }): Promise<void> {
    const places = at ? [at] : await this.placesOf(team, fileId);
    for (const place of places) {
      const m = await this.message(team, place.channel, place.ts);
      if (m) {
        const files = m.files.filter((f) => f.id !== fileId);
        if (files.length === 0) await this.forgetMessage(team, place.channel, place.ts);
        else
          await this.#r.set(
            this.#message(team, place.channel, place.ts),
            JSON.stringify({ ...m, files }),
            'KEEPTTL',
          );
      }
      await this.#dropPlace(team, fileId, place.channel, place.ts);
    }
  }

  async #dropPlace(team: string, fileId: string, channel: string, ts: string): Promise<void> {
    const left = (await this.placesOf(team, fileId)).filter((p) => p.channel !== channel || p.ts !== ts);
    if (left.length === 0) await this.#r.hdel(this.#files(team), fileId);
    else await this.#r.hset(this.#files(team), fileId, JSON.stringify(left));
  }

  /** Channels whose backfill has not finished, so a restarted bot resumes them. */
  async backfilling(): Promise<{ team: string; channel: string }[]> {
    const members = await this.#r.smembers(this.#backfills());
    return members.flatMap((m) => {
      const [team, channel] = m.split(':');
      return team && channel ? [{ team, channel }] : [];
    });
  }

  async setBackfilling(team: string, channel: string, on: boolean): Promise<void> {
    if (on) await this.#r.sadd(this.#backfills(), `${team}:${channel}`);
    else await this.#r.srem(this.#backfills(), `${team}:${channel}`);
  }
}

/** Slack ts `1712345678.123456` as a sortable number (microsecond precision fits a double). */
function tsScore(ts: string): number {
  const [s = '0', frac = '0'] = ts.split('.');
  return Number(s) * 1e6 + Number(frac.padEnd(6, '0').slice(0, 6));
}

function parsePlaces(raw: string | null): { channel: string; ts: string }[] {
  if (raw === null) return [];
  try {
    const v: unknown = JSON.parse(raw);
    return Array.isArray(v)
      ? v.filter(
          (p): p is { channel: string; ts: string } =>
            typeof p?.channel === 'string' && typeof p?.ts === 'string',
        )
      : [];
  } catch {
    return [];
  }
}

function parseMessage(raw: string): LedgerMessage | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LedgerMessage>;
    if (typeof v.channel !== 'string' || typeof v.ts !== 'string' || !Array.isArray(v.files))
      return undefined;
    return v as LedgerMessage;
  } catch {
    return undefined;
  }
}
