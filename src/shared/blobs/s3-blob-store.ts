// Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, R2, Ceph RGW, s3rver), through the
// official AWS SDK, so that images leave Redis to the queues and scale past one machine. Keys are the
// same `<prefix>:blob:<id>` as in Redis (job data does not change); the object is `<keyPrefix>/<key>`.
//
// Expiry: every object carries its expiry time in its metadata (`x-amz-meta-expires-at`, ms since the
// epoch). get/ttl treat an expired object as gone, and a sweeper deletes expired objects every
// BLOB_SWEEP_INTERVAL_SECONDS. Lifecycle rules alone cannot do it: they count whole days (blobs live
// minutes to a day) and some stores have none (s3rver answers NotImplemented), so a bucket's rule, where
// there is one (README: a 2-day rule on the prefix), is only the backstop for a sweeper that never ran.
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Blob, BlobStore, PutOptions } from '../blobs.js';
import { BlobKeys } from '../blobs.js';
import type { S3BlobConfig } from '../config.js';
import { asCodedError, ReasonedError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';

export type S3BlobErrorReason = 'no_such_bucket' | 'bad_credentials' | 'unreachable' | 'failed';

/** What went wrong talking to the bucket, in words an operator can act on. */
export class S3BlobError extends ReasonedError<S3BlobErrorReason> {}

export interface S3BlobStoreOptions {
  /** Bucket, key prefix, endpoint, region, credentials (config.blobs.s3). */
  s3: Omit<S3BlobConfig, 'sweepIntervalSeconds' | 'presignedUrls'> & { sweepIntervalSeconds?: number };
  /** The queue prefix (config.queuePrefix): blob keys look the same as in Redis. */
  prefix: string;
  /** @defaultValue 86400 */
  ttlSeconds?: number;
  /** @defaultValue 26214400 (25 MiB) */
  maxBytes?: number;
  /** Lifetime of presignedUrl's URLs. @defaultValue 3600 */
  presignSeconds?: number;
  /** Sweep errors are logged here. @defaultValue silent */
  logger?: Logger;
  /** The clock expiry is measured with (tests move it). @defaultValue Date.now */
  now?: () => number;
}

const EXPIRES = 'expires-at';

export class S3BlobStore implements BlobStore {
  readonly kind = 's3';
  readonly client: S3Client;
  readonly bucket: string;
  readonly ttlSeconds: number;
  readonly maxBytes: number;
  readonly #keys: BlobKeys;
  readonly #keyPrefix: string;
  readonly #presignSeconds: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #where: string;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<unknown> | undefined;

  constructor(options: S3BlobStoreOptions) {
    const { s3 } = options;
    this.#keys = new BlobKeys(options);
    this.ttlSeconds = this.#keys.ttlSeconds;
    this.maxBytes = this.#keys.maxBytes;
    this.bucket = s3.bucket;
    this.#keyPrefix = s3.keyPrefix === '' ? '' : `${s3.keyPrefix}/`;
    this.#presignSeconds = options.presignSeconds ?? 3600;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
    this.#where = `s3://${s3.bucket}/${s3.keyPrefix}${s3.endpoint === undefined ? '' : ` at ${s3.endpoint}`}`;
    const credentials =
      s3.accessKeyId !== undefined && s3.secretAccessKey !== undefined
        ? {
            accessKeyId: s3.accessKeyId,
            secretAccessKey: s3.secretAccessKey,
            ...(s3.sessionToken === undefined ? {} : { sessionToken: s3.sessionToken }),
          }
        : undefined;
    this.client = new S3Client({
      region: s3.region,
      ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
      forcePathStyle: s3.forcePathStyle,
      ...(credentials === undefined ? {} : { credentials }),
      // Since 2025 the SDK adds CRC32 checksums to every request by default, which several
      // S3-compatible stores reject or ignore; a checksum only where the API requires one works with all.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // A dead endpoint should fail a job's write in seconds, not after the default retries.
      maxAttempts: 2,
    });
    const every = s3.sweepIntervalSeconds ?? 0;
    if (every > 0) {
      this.#sweeper = setInterval(() => {
        this.#sweeping ??= this.sweep()
          .catch((err: unknown) => this.#logger.warn({ err, where: this.#where }, 'blob sweep failed'))
          .finally(() => {
            this.#sweeping = undefined;
          });
      }, every * 1000);
      this.#sweeper.unref();
    }
  }

  /** Checks that the bucket exists and the credentials open it; throws S3BlobError saying which failed. */
  async check(): Promise<void> {
    await this.#call(() => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  async put(bytes: Uint8Array, options: PutOptions): Promise<string> {
    const { key, ttl } = this.#keys.forPut(bytes, options);
    const expiresAt = this.#now() + ttl * 1000;
    await this.#call(() =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.#objectKey(key),
          Body: bytes,
          ContentType: options.contentType,
          ContentLength: bytes.byteLength,
          Metadata: { [EXPIRES]: String(expiresAt) },
          // For caches between the store and a browser fetching a presigned URL.
          Expires: new Date(expiresAt),
        }),
      ),
    );
    return key;
  }

  async get(key: string): Promise<Blob | undefined> {
    this.#keys.check(key);
    const out = await this.#call(
      () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#objectKey(key) })),
      { missing: true },
    );
    if (out === undefined || !out.Body) return undefined;
    if (this.#expired(out.Metadata)) {
      await out.Body.transformToByteArray().catch(() => undefined); // let the socket go
      return undefined;
    }
    const bytes = await out.Body.transformToByteArray();
    return {
      bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      contentType: out.ContentType ?? 'application/octet-stream',
    };
  }

  async delete(key: string): Promise<boolean> {
    this.#keys.check(key);
    // S3's DELETE answers 204 whether or not the object existed: HEAD first to say which.
    const existed = (await this.#head(key)) !== undefined;
    await this.#call(() =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#objectKey(key) })),
    );
    return existed;
  }

  async ttl(key: string): Promise<number | undefined> {
    this.#keys.check(key);
    const head = await this.#head(key);
    if (head === undefined) return undefined;
    const expiresAt = Number(head.Metadata?.[EXPIRES]);
    if (!Number.isFinite(expiresAt)) return undefined;
    const left = Math.ceil((expiresAt - this.#now()) / 1000);
    return left > 0 ? left : undefined;
  }

  owns(key: string): boolean {
    return this.#keys.owns(key);
  }

  /** A presigned GET URL, valid for `expiresInSeconds` or until the blob expires, whichever is sooner. */
  async presignedUrl(key: string, expiresInSeconds = this.#presignSeconds): Promise<string | undefined> {
    const left = await this.ttl(key);
    if (left === undefined) return undefined;
    const expiresIn = Math.max(1, Math.min(expiresInSeconds, left, 7 * 86_400));
    return getSignedUrl(
      this.client,
      new GetObjectCommand({ Bucket: this.bucket, Key: this.#objectKey(key) }),
      { expiresIn },
    );
  }

  /**
   * Deletes every expired blob of this store (and objects under its namespace without an expiry,
   * which this store never writes). One HEAD per object: S3 lists carry no metadata.
   */
  async sweep(): Promise<{ checked: number; deleted: number }> {
    const prefix = this.#objectKey(this.#keys.namespace);
    let token: string | undefined;
    let checked = 0;
    let deleted = 0;
    do {
      const page = await this.#call(() =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        ),
      );
      const names = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
      checked += names.length;
      const expired: string[] = [];
      // A few HEADs at a time: enough to keep up, not enough to be throttled.
      for (let i = 0; i < names.length; i += 8) {
        const batch = names.slice(i, i + 8);
        const heads = await Promise.all(
          batch.map((name) =>
            this.#call(() => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: name })), {
              missing: true,
            }),
          ),
        );
        heads.forEach((head, j) => {
          if (head !== undefined && this.#expired(head.Metadata, true)) expired.push(batch[j]!);
        });
      }
      if (expired.length > 0) {
        await this.#call(() =>
          this.client.send(
            new DeleteObjectsCommand({
              Bucket: this.bucket,
              Delete: { Objects: expired.map((Key) => ({ Key })), Quiet: true },
            }),
          ),
        );
        deleted += expired.length;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return { checked, deleted };
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await this.#sweeping;
    this.client.destroy();
  }

  #objectKey(key: string): string {
    return `${this.#keyPrefix}${key}`;
  }

  #expired(metadata: Record<string, string> | undefined, orUnmarked = false): boolean {
    const expiresAt = Number(metadata?.[EXPIRES]);
    if (!Number.isFinite(expiresAt)) return orUnmarked;
    return expiresAt <= this.#now();
  }

  #head(key: string) {
    return this.#call(
      () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#objectKey(key) })),
      { missing: true },
    );
  }

  /** Runs one request; a missing object is undefined when `missing`, everything else an S3BlobError. */
  async #call<T>(request: () => Promise<T>, options: { missing: true }): Promise<T | undefined>;
  async #call<T>(request: () => Promise<T>): Promise<T>;
  async #call<T>(request: () => Promise<T>, options: { missing?: boolean } = {}): Promise<T | undefined> {
    try {
      return await request();
    } catch (error) {
      const name = error instanceof S3ServiceException ? error.name : undefined;
      const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
      if (options.missing && (name === 'NoSuchKey' || (name === 'NotFound' && status === 404))) {
        return undefined;
      }
      throw this.#explain(error, name, status);
    }
  }

  #explain(error: unknown, name: string | undefined, status: number | undefined): S3BlobError {
    const where = this.#where;
    if (name === 'NoSuchBucket' || (name === 'NotFound' && status === 404)) {
      return new S3BlobError(
        'config_invalid',
        'no_such_bucket',
        `the blob store's bucket "${this.bucket}" does not exist (${where}): create it, or fix BLOB_STORE_URL`,
        { cause: error, details: { bucket: this.bucket } },
      );
    }
    if (
      name === 'InvalidAccessKeyId' ||
      name === 'SignatureDoesNotMatch' ||
      name === 'AccessDenied' ||
      name === 'Forbidden' ||
      status === 403
    ) {
      return new S3BlobError(
        'config_invalid',
        'bad_credentials',
        `the blob store refused the credentials (${name ?? status}) for ${where}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
        { cause: error, details: { bucket: this.bucket } },
      );
    }
    if (name === undefined) {
      const coded = asCodedError(error);
      const message = error instanceof Error ? error.message : String(error);
      return new S3BlobError(
        'unavailable',
        'unreachable',
        `the blob store ${where} did not answer: ${message}`,
        {
          cause: error,
          details: { code: coded.code },
        },
      );
    }
    return new S3BlobError('unavailable', 'failed', `the blob store ${where} failed: ${name} (${status})`, {
      cause: error,
    });
  }
}
