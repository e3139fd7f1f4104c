// Short-lived binary payloads in Redis (uploads, previews, finals, latents) so that job data carries
// keys, never bytes. Every blob has a TTL: durable records belong in the database, not here.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BadInputError, BlobTooLargeError } from './errors.js';
import { keys } from './queues.js';

export interface BlobStoreOptions {
  /** Shared with the queues; the caller owns it. */
  connection: Redis;
  /** The queue prefix (config.queuePrefix). */
  prefix: string;
  /** @defaultValue 86400 */
  ttlSeconds?: number;
  /** @defaultValue 26214400 (25 MiB) */
  maxBytes?: number;
}

export const DefaultBlobStoreOptions = {
  ttlSeconds: 86_400,
  maxBytes: 25 * 1024 * 1024,
} as const satisfies Partial<BlobStoreOptions>;

export interface PutOptions {
  contentType: string;
  /** Overrides the store's default TTL. */
  ttlSeconds?: number;
}

export interface Blob {
  bytes: Buffer;
  contentType: string;
}

export class BlobStore {
  readonly #connection: Redis;
  readonly #namespace: string;
  readonly #prefix: string;
  readonly ttlSeconds: number;
  readonly maxBytes: number;

  constructor(options: BlobStoreOptions) {
    const opts = { ...DefaultBlobStoreOptions, ...options };
    if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 1)
      throw new RangeError('ttlSeconds must be >= 1');
    if (!Number.isInteger(opts.maxBytes) || opts.maxBytes < 1) throw new RangeError('maxBytes must be >= 1');
    this.#connection = opts.connection;
    this.#prefix = opts.prefix;
    this.#namespace = keys.blobNamespace(opts.prefix);
    this.ttlSeconds = opts.ttlSeconds;
    this.maxBytes = opts.maxBytes;
  }

  /** Stores bytes under a fresh key and returns the key. */
  async put(bytes: Uint8Array, options: PutOptions): Promise<string> {
    if (bytes.byteLength > this.maxBytes) throw new BlobTooLargeError(bytes.byteLength, this.maxBytes);
    const ttl = options.ttlSeconds ?? this.ttlSeconds;
    if (!Number.isInteger(ttl) || ttl < 1) throw new RangeError('ttlSeconds must be an integer >= 1');
    const key = keys.blob(this.#prefix, randomUUID());
    // One MULTI so a crash between the write and the expiry cannot leave an immortal blob.
    await this.#connection
      .multi()
      .hset(
        key,
        'data',
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
        'type',
        options.contentType,
      )
      .expire(key, ttl)
      .exec();
    return key;
  }

  /** The blob, or undefined when it expired or never existed. */
  async get(key: string): Promise<Blob | undefined> {
    this.#checkKey(key);
    const [data, type] = await this.#connection.hmgetBuffer(key, 'data', 'type');
    if (!data || !type) return undefined;
    return { bytes: data, contentType: type.toString('utf8') };
  }

  /** Removes a blob; true when it existed. */
  async delete(key: string): Promise<boolean> {
    this.#checkKey(key);
    return (await this.#connection.unlink(key)) === 1;
  }

  /** Seconds left before the blob expires; undefined when it does not exist. */
  async ttl(key: string): Promise<number | undefined> {
    this.#checkKey(key);
    const seconds = await this.#connection.ttl(key);
    return seconds < 0 ? undefined : seconds;
  }

  /** Whether a key names a blob of this store (job data is checked with this before any read). */
  owns(key: string): boolean {
    return key.startsWith(this.#namespace) && key.length > this.#namespace.length && !key.includes('*');
  }

  #checkKey(key: string): void {
    // Blob keys arrive in job data; without this check a crafted job could read any Redis key.
    if (!this.owns(key)) throw new BadInputError('not a blob key of this store', { key });
  }
}
