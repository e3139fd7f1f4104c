// The blob store a process's configuration names: Redis beside the queues (the default), or an
// S3-compatible bucket when BLOB_STORE_URL is s3://. The S3 store's bucket and credentials are
// checked here, so that a misconfiguration stops the start-up with a sentence, not every job later.
import type { Redis } from 'ioredis';
import { type BlobStore, RedisBlobStore } from '../blobs.js';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';

export interface OpenBlobStoreOptions {
  /** The Redis backend's connection (shared with the queues; the caller owns it). */
  connection: Redis;
  logger?: Logger;
  /**
   * Run the S3 store's sweeper of expired blobs in this process (workers do; one sweeper or many
   * give the same result). @defaultValue false
   */
  sweep?: boolean;
}

export async function openBlobStore(
  config: Pick<Config, 'queuePrefix' | 'blobs'>,
  options: OpenBlobStoreOptions,
): Promise<BlobStore> {
  const { s3, ttlSeconds, maxBytes } = config.blobs;
  if (s3 === undefined) {
    return new RedisBlobStore({
      connection: options.connection,
      prefix: config.queuePrefix,
      ttlSeconds,
      maxBytes,
    });
  }
  // Loaded only when used: the AWS SDK is a large import that Redis-only setups never need.
  const { S3BlobStore } = await import('./s3-blob-store.js');
  const store = new S3BlobStore({
    s3: { ...s3, sweepIntervalSeconds: options.sweep ? s3.sweepIntervalSeconds : 0 },
    prefix: config.queuePrefix,
    ttlSeconds,
    maxBytes,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  try {
    await store.check();
  } catch (error) {
    await store.close();
    throw error;
  }
  options.logger?.info(
    { bucket: s3.bucket, keyPrefix: s3.keyPrefix, endpoint: s3.endpoint, sweep: options.sweep === true },
    'blobs are stored in S3',
  );
  return store;
}
