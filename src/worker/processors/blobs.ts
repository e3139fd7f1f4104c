// Where processors read their inputs and write their outputs: the Redis BlobStore in a worker, an
// in-memory store when the CLI runs the same processors in process without Redis. Job data and
// results carry blob keys either way, so the processors have one code path.
import { randomUUID } from 'node:crypto';
import type { Blob, PutOptions } from '../../shared/blobs.js';
import { BadInputError, BlobMissingError, BlobTooLargeError } from '../../shared/errors.js';

/** The part of BlobStore processors use (every BlobStore satisfies it). */
export interface Blobs {
  get(key: string): Promise<Blob | undefined>;
  /** With `options.name`, replaces the blob of that name (a job's one preview). */
  put(bytes: Uint8Array, options: PutOptions): Promise<string>;
  delete(key: string): Promise<boolean>;
}

/** Reads a blob named in job data; `blob_missing` when it expired or never existed. */
export async function readBlob(blobs: Blobs, key: string): Promise<Uint8Array> {
  const blob = await blobs.get(key);
  if (!blob) throw new BlobMissingError(key);
  return new Uint8Array(blob.bytes.buffer, blob.bytes.byteOffset, blob.bytes.byteLength);
}

export interface MemoryBlobsOptions {
  /** Key namespace, like the queue prefix of BlobStore. @defaultValue 'local' */
  prefix?: string;
  /** @defaultValue 26214400 (25 MiB) */
  maxBytes?: number;
}

/** Blobs in a Map, for running processors in process (CLI, tests). TTLs are ignored: the process is short. */
export class MemoryBlobs implements Blobs {
  readonly #blobs = new Map<string, Blob>();
  readonly #namespace: string;
  readonly maxBytes: number;

  constructor(options: MemoryBlobsOptions = {}) {
    this.#namespace = `${options.prefix ?? 'local'}:blob:`;
    this.maxBytes = options.maxBytes ?? 25 * 1024 * 1024;
  }

  async put(bytes: Uint8Array, options: PutOptions): Promise<string> {
    if (bytes.byteLength > this.maxBytes) throw new BlobTooLargeError(bytes.byteLength, this.maxBytes);
    const key = `${this.#namespace}${options.name ?? randomUUID()}`;
    this.#blobs.set(key, { bytes: Buffer.from(bytes), contentType: options.contentType });
    return key;
  }

  async get(key: string): Promise<Blob | undefined> {
    // Same rule as BlobStore: job data may only name keys of this store.
    if (!key.startsWith(this.#namespace)) throw new BadInputError('not a blob key of this store', { key });
    return this.#blobs.get(key);
  }

  async delete(key: string): Promise<boolean> {
    if (!key.startsWith(this.#namespace)) throw new BadInputError('not a blob key of this store', { key });
    return this.#blobs.delete(key);
  }

  get size(): number {
    return this.#blobs.size;
  }
}
