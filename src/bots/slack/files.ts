// Slack files both ways. Out: the external upload flow (filesUploadV2 = getUploadURLExternal ->
// upload -> completeUploadExternal), then waiting for the asynchronous share before any block names
// the file, and deleting what the bot no longer shows (replaced previews). In: payload file objects
// read into what ChatCore.ingest downloads, with files.info first for the size and for files gone.
import type { webApi } from '@slack/bolt';
import { NotAnImageError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { RemoteImage } from '../core/chat.js';
import type { LedgerFile } from './file-ledger.js';
import { fromSlackError, slackErrorOf } from './slack-errors.js';

type WebClient = webApi.WebClient;

/** The fields of Slack's file object the adapter reads (payloads, files.info). */
export interface SlackFileObject {
  id?: string | undefined;
  name?: string | undefined;
  title?: string | undefined;
  mimetype?: string | undefined;
  size?: number | undefined;
  mode?: string | undefined;
  url_private?: string | undefined;
  url_private_download?: string | undefined;
  shares?: {
    public?: Record<string, { ts?: string }[]>;
    private?: Record<string, { ts?: string }[]>;
  };
}

/** Images CLIP can read; the download still checks magic bytes (a mimetype is the uploader's claim). */
const IMAGE_TYPES = /^image\/(png|jpeg|jpg|gif|webp|avif|heic|heif|tiff|bmp)$/i;

export function isImageFile(file: SlackFileObject): boolean {
  return file.mode !== 'tombstone' && typeof file.mimetype === 'string' && IMAGE_TYPES.test(file.mimetype);
}

export function ledgerFile(file: SlackFileObject & { id: string }): LedgerFile {
  return {
    id: file.id,
    ...(file.name === undefined ? {} : { name: file.name }),
    ...(file.mimetype === undefined ? {} : { mimetype: file.mimetype }),
    ...(file.size === undefined ? {} : { size: file.size }),
    ...((file.url_private_download ?? file.url_private)
      ? { url: file.url_private_download ?? file.url_private }
      : {}),
  };
}

/** The file objects of a message that are live (not tombstones) and have an id. */
export function filesOf(message: { files?: unknown } | undefined): (SlackFileObject & { id: string })[] {
  const files = message?.files;
  if (!Array.isArray(files)) return [];
  return files.filter(
    (f): f is SlackFileObject & { id: string } =>
      typeof f === 'object' && f !== null && typeof (f as SlackFileObject).id === 'string',
  );
}

export interface SlackFilesOptions {
  client: WebClient;
  token: string;
  logger: Logger;
  /** How long to wait for an upload to be shared before giving up on showing it. @defaultValue 20000 */
  shareTimeoutMs?: number;
}

export class SlackFiles {
  readonly #client: WebClient;
  readonly #token: string;
  readonly #logger: Logger;
  readonly #shareTimeoutMs: number;
  readonly #waiters = new Map<string, Set<() => void>>();

  constructor(options: SlackFilesOptions) {
    this.#client = options.client;
    this.#token = options.token;
    this.#logger = options.logger;
    this.#shareTimeoutMs = options.shareTimeoutMs ?? 20_000;
  }

  /** Uploads bytes into a channel (or a thread of it); returns the file id. Sharing follows later. */
  async upload(input: {
    bytes: Uint8Array;
    filename: string;
    channel: string;
    threadTs?: string | undefined;
    title?: string;
    altText?: string;
  }): Promise<string> {
    const common = {
      file: Buffer.from(input.bytes),
      filename: input.filename,
      ...(input.title === undefined ? {} : { title: input.title }),
      ...(input.altText === undefined ? {} : { alt_text: input.altText }),
    };
    const result = await this.#client.filesUploadV2(
      input.threadTs === undefined
        ? { ...common, channel_id: input.channel }
        : { ...common, channel_id: input.channel, thread_ts: input.threadTs },
    );
    const id = result.files[0]?.files?.[0]?.id;
    if (id === undefined) throw new Error('files.completeUploadExternal returned no file');
    return id;
  }

  /** A `file_shared` event: wakes whoever waits for that file (files.info confirms it). */
  shared(fileId: string): void {
    for (const wake of this.#waiters.get(fileId) ?? []) wake();
  }

  /**
   * Waits until the file is shared in `channel` (polling files.info, woken early by file_shared);
   * returns the ts of the message that shares it, or undefined when it did not come in time.
   */
  async waitShared(
    fileId: string,
    channel: string,
    timeoutMs = this.#shareTimeoutMs,
  ): Promise<string | undefined> {
    const until = performance.now() + timeoutMs;
    let pause = 100;
    for (;;) {
      const info = await this.#client.files.info({ file: fileId }).catch((error: unknown) => {
        this.#logger.debug({ err: error, fileId }, 'files.info failed while waiting for a share');
        return undefined;
      });
      const file = info?.file as SlackFileObject | undefined;
      const share = file?.shares?.public?.[channel]?.[0] ?? file?.shares?.private?.[channel]?.[0];
      if (share) return share.ts ?? '';
      const left = until - performance.now();
      if (left <= 0) return undefined;
      await this.#pause(fileId, Math.min(pause, left));
      pause = Math.min(pause * 2, 1000);
    }
  }

  #pause(fileId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const set = this.#waiters.get(fileId) ?? new Set();
      this.#waiters.set(fileId, set);
      const wake = () => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.#waiters.delete(fileId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      set.add(wake);
    });
  }

  /**
   * Deletes a file the bot posted, and the thread message that shared it, so a replaced preview
   * leaves nothing behind. Failures are logged: a leftover preview is not worth failing a job for.
   */
  async remove(fileId: string, share?: { channel: string; ts: string | undefined }): Promise<void> {
    if (share?.ts) {
      await this.#client.chat
        .delete({ channel: share.channel, ts: share.ts })
        .catch((error: unknown) => this.#logger.debug({ err: error, fileId }, 'could not delete a share'));
    }
    await this.#client.files.delete({ file: fileId }).catch((error: unknown) => {
      if (slackErrorOf(error) !== 'file_deleted')
        this.#logger.warn({ err: error, fileId }, 'could not delete a file');
    });
  }

  /** files.info, with Slack's refusals as the core's errors (missing files:read, a deleted file). */
  async info(fileId: string): Promise<SlackFileObject & { id: string }> {
    try {
      const res = await this.#client.files.info({ file: fileId });
      return { ...(res.file as SlackFileObject), id: fileId };
    } catch (error) {
      throw fromSlackError(error);
    }
  }

  /**
   * What ChatCore.ingest downloads: url_private with the bot token (only ever sent to allowed
   * hosts), and the size Slack reports so an oversized file is refused before a byte is fetched.
   */
  remoteImage(file: SlackFileObject | LedgerFile): RemoteImage {
    const url =
      'url' in file && typeof file.url === 'string'
        ? file.url
        : ((file as SlackFileObject).url_private_download ?? (file as SlackFileObject).url_private);
    if (url === undefined) throw new NotAnImageError('the file has no download link', { reason: 'no_url' });
    return {
      url,
      headers: { Authorization: `Bearer ${this.#token}` },
      ...(file.name === undefined ? {} : { name: file.name }),
      ...(file.size === undefined ? {} : { size: file.size }),
    };
  }
}
