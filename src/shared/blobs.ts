// Short-lived binary payloads (uploads, previews, finals, latents) so that job data carries keys,
// never bytes. One interface, two backends: Redis (the embedded default, beside the queues) and
// S3-compatible object storage (blobs/s3-blob-store.ts, BLOB_STORE_URL=s3://bucket/prefix). Every
// blob has a TTL: durable records belong in the database, not here.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BadInputError, BlobTooLargeError } from './errors.js';
import { keys } from './queues.js';

export interface PutOptions {
  contentType: string;
  /** Overrides the store's default TTL. */
  ttlSeconds?: number;
  /**
   * A stable name instead of a fresh key: a later put with the same name replaces the blob, so a
   * running job's previews take one key however long it runs. Letters, digits and `_:.-`.
   */
  name?: string;
}

export interface Blob {
  bytes: Buffer;
  contentType: string;
}

/** What bots and workers store images in; keys are `<prefix>:blob:<id>` whatever the backend. */
export interface BlobStore {
  /** Which backend: logs and the health line say where images live. */
  readonly kind: 'redis' | 's3';
  readonly ttlSeconds: number;
  readonly maxBytes: number;
  /** Stores bytes under a fresh key (or `options.name`'s) and returns the key. */
  put(bytes: Uint8Array, options: PutOptions): Promise<string>;
  /** The blob, or undefined when it expired or never existed. */
  get(key: string): Promise<Blob | undefined>;
  /** Removes a blob; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** Seconds left before the blob expires; undefined when it does not exist. */
  ttl(key: string): Promise<number | undefined>;
  /** Whether a key names a blob of this store (job data is checked with this before any read). */
  owns(key: string): boolean;
  /**
   * A URL that GETs the blob straight from the store for `expiresInSeconds` (presigned), so that a
   * browser or chat platform need not go through this process; undefined when the store has no such
   * URLs (Redis) or the blob does not exist.
   */
  presignedUrl(key: string, expiresInSeconds?: number): Promise<string | undefined>;
  /** Stops background work (the S3 sweeper). Connections passed in stay open: the caller owns them. */
  close(): Promise<void>;
}

export const DefaultBlobStoreOptions = {
  ttlSeconds: 86_400,
  maxBytes: 25 * 1024 * 1024,
} as const;

const namePattern = /^[A-Za-z0-9_:.-]{1,120}$/;

/**
 * The key rules both backends share: a fresh or named key inside the namespace, the size cap and TTL
 * checks, and refusing foreign keys (they arrive in job data: without the check a crafted job could
 * read any Redis key or bucket object).
 */
export class BlobKeys {
  readonly prefix: string;
  readonly namespace: string;
  readonly ttlSeconds: number;
  readonly maxBytes: number;

  constructor(options: { prefix: string; ttlSeconds?: number | undefined; maxBytes?: number | undefined }) {
    const ttlSeconds = options.ttlSeconds ?? DefaultBlobStoreOptions.ttlSeconds;
    const maxBytes = options.maxBytes ?? DefaultBlobStoreOptions.maxBytes;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be >= 1');
    if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError('maxBytes must be >= 1');
    this.prefix = options.prefix;
    this.namespace = keys.blobNamespace(options.prefix);
    this.ttlSeconds = ttlSeconds;
    this.maxBytes = maxBytes;
  }

  /** The key and TTL of a put, after its checks. */
  forPut(bytes: Uint8Array, options: PutOptions): { key: string; ttl: number } {
    if (bytes.byteLength > this.maxBytes) throw new BlobTooLargeError(bytes.byteLength, this.maxBytes);
    const ttl = options.ttlSeconds ?? this.ttlSeconds;
    if (!Number.isInteger(ttl) || ttl < 1) throw new RangeError('ttlSeconds must be an integer >= 1');
    if (options.name !== undefined && !namePattern.test(options.name))
      throw new RangeError(`blob name ${JSON.stringify(options.name)} must be 1-120 of [A-Za-z0-9_:.-]`);
    return { key: keys.blob(this.prefix, options.name ?? randomUUID()), ttl };
  }

  owns(key: string): boolean {
    return key.startsWith(this.namespace) && key.length > this.namespace.length && !key.includes('*');
  }

  check(key: string): void {
    if (!this.owns(key)) throw new BadInputError('not a blob key of this store', { key });
  }
}

export interface RedisBlobStoreOptions {
  /** Shared with the queues; the caller owns it. */
  connection: Redis;
  /** The queue prefix (config.queuePrefix). */
  prefix: string;
  /** @defaultValue 86400 */
  ttlSeconds?: number;
  /** @defaultValue 26214400 (25 MiB) */
  maxBytes?: number;
}

/** Blobs as Redis hashes (data, type) with EXPIRE: the embedded default, in the queues' memory. */
export class RedisBlobStore implements BlobStore {
  readonly kind = 'redis';
  readonly #connection: Redis;
  readonly #keys: BlobKeys;
  readonly ttlSeconds: number;
  readonly maxBytes: number;

  constructor(options: RedisBlobStoreOptions) {
    this.#keys = new BlobKeys(options);
    this.#connection = options.connection;
    this.ttlSeconds = this.#keys.ttlSeconds;
    this.maxBytes = this.#keys.maxBytes;
  }

  async put(bytes: Uint8Array, options: PutOptions): Promise<string> {
    const { key, ttl } = this.#keys.forPut(bytes, options);
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

  async get(key: string): Promise<Blob | undefined> {
    this.#keys.check(key);
    const [data, type] = await this.#connection.hmgetBuffer(key, 'data', 'type');
    if (!data || !type) return undefined;
    return { bytes: data, contentType: type.toString('utf8') };
  }

  async delete(key: string): Promise<boolean> {
    this.#keys.check(key);
    return (await this.#connection.unlink(key)) === 1;
  }

  async ttl(key: string): Promise<number | undefined> {
    this.#keys.check(key);
    const seconds = await this.#connection.ttl(key);
    return seconds < 0 ? undefined : seconds;
  }

  owns(key: string): boolean {
    return this.#keys.owns(key);
  }

  async presignedUrl(key: string): Promise<string | undefined> {
    this.#keys.check(key);
    return undefined;
  }

  async close(): Promise<void> {}
}
