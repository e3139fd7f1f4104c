// A real S3-protocol server on loopback for blob-store tests: s3rver (a dev dependency) on a free
// port, objects in a temp folder, one bucket made up front, the AWS SDK pointed at it. s3rver knows
// one key pair (S3RVER / S3RVER): an unknown key id fails as on S3, but it does not verify SigV4
// signatures themselves (a wrong secret passes), and it has no lifecycle rules (NotImplemented).
import { createRequire } from 'node:module';
import { afterAll, beforeAll } from 'vitest';
import type { S3BlobConfig } from '../../src/shared/config.js';
import { tempDir } from './worker-process.js';

/** The part of s3rver's API the tests use (it ships no types). */
interface S3rverServer {
  run(): Promise<{ port: number; address: string }>;
  close(): Promise<void>;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverServer;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

export const S3RVER_KEY = 'S3RVER';
export const TEST_BUCKET = 'vqclip-test';

export interface S3Server {
  readonly endpoint: string;
  /** A config for the test bucket under `keyPrefix` with the right credentials. */
  config(overrides?: Partial<S3BlobConfig>): S3BlobConfig;
  /** The same as environment variables (what loadConfig reads), for worker processes. */
  env(keyPrefix: string): Record<string, string>;
}

export async function startS3(): Promise<S3Server & { stop(): Promise<void> }> {
  const dir = await tempDir('s3');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir.path,
    vhostBuckets: false,
    configureBuckets: [{ name: TEST_BUCKET }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    config: (overrides = {}) => ({
      bucket: TEST_BUCKET,
      keyPrefix: 'blobs',
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      accessKeyId: S3RVER_KEY,
      secretAccessKey: S3RVER_KEY,
      sweepIntervalSeconds: 0,
      presignedUrls: false,
      ...overrides,
    }),
    env: (keyPrefix) => ({
      BLOB_STORE_URL: `s3://${TEST_BUCKET}/${keyPrefix}`,
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: S3RVER_KEY,
      AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
    }),
    async stop() {
      await server.close();
      await dir.remove();
    },
  };
}

/** beforeAll/afterAll for one s3rver in the calling test file; read its fields inside tests or hooks. */
export function useS3(): S3Server {
  let server: Awaited<ReturnType<typeof startS3>> | undefined;
  beforeAll(async () => {
    server = await startS3();
  });
  afterAll(async () => {
    await server?.stop();
  });
  const get = () => {
    if (!server) throw new Error('s3rver not started yet: use it inside a test or hook');
    return server;
  };
  return {
    get endpoint() {
      return get().endpoint;
    },
    config: (overrides) => get().config(overrides),
    env: (keyPrefix) => get().env(keyPrefix),
  };
}
