// Redis connections and BullMQ queue settings shared by the bot side (producers) and the workers
// (consumers): queue names, the key prefix, default job options, and the start-up check that Redis
// will not evict queue data.
import type { JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobKind } from './jobs.js';
import type { Logger } from './logger.js';

export { jobKinds as queueNames } from './jobs.js';

/**
 * Who uses a connection. BullMQ's advice: producers (Queue, JobClient, quotas, blobs) fail fast when
 * Redis is down (enableOfflineQueue false) so a chat command gets an error instead of hanging; workers
 * and QueueEvents keep the offline queue and wait for Redis to come back.
 */
export type ConnectionRole = 'producer' | 'worker';

/**
 * An ioredis connection configured for BullMQ (`maxRetriesPerRequest: null`, required by blocking
 * commands). BullMQ under native ESM cannot load ioredis itself, so every Queue/Worker/QueueEvents
 * gets one of these as `connection`: a Queue shares it, Worker and QueueEvents duplicate it.
 * The caller owns the connection and quits it after closing its queues.
 */
export function createConnection(url: string, role: ConnectionRole = 'producer'): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    enableOfflineQueue: role === 'worker',
    // Reconnect with a capped backoff; BullMQ's own default for connections it creates.
    retryStrategy: (times) => Math.max(Math.min(Math.exp(times), 20_000), 1_000),
  });
}

/** createConnection, resolved once the connection is ready (producer connections reject commands before). */
export async function openConnection(url: string, role: ConnectionRole = 'producer'): Promise<Redis> {
  const connection = createConnection(url, role);
  await waitUntilReady(connection);
  return connection;
}

export function waitUntilReady(connection: Redis): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('Redis connection closed before it was ready'));
    };
    const cleanup = () => {
      connection.off('ready', onReady);
      connection.off('end', onEnd);
    };
    connection.on('ready', onReady);
    connection.on('end', onEnd);
  });
}

/** Keys outside BullMQ's own (`${prefix}:${queue}:...`) that this project stores under the prefix. */
export const keys = {
  blob: (prefix: string, id: string) => `${prefix}:blob:${id}`,
  blobNamespace: (prefix: string) => `${prefix}:blob:`,
  cancel: (prefix: string, queue: string, jobId: string) => `${prefix}:cancel:${queue}:${jobId}`,
  cancelChannel: (prefix: string) => `${prefix}:cancel`,
  posted: (prefix: string, jobRef: string) => `${prefix}:posted:${jobRef}`,
  quotaActive: (prefix: string, budget: string, user: string) => `${prefix}:quota:${budget}:active:${user}`,
  quotaWindow: (prefix: string, budget: string, user: string) => `${prefix}:quota:${budget}:window:${user}`,
  /** BullMQ's hash for one job; its layout is part of BullMQ's stable Redis format. */
  bullJob: (prefix: string, queue: string, jobId: string) => `${prefix}:${queue}:${jobId}`,
  bullList: (prefix: string, queue: string, list: 'wait' | 'active' | 'prioritized') =>
    `${prefix}:${queue}:${list}`,
} as const;

/** Retention of finished jobs: enough for result() and history, bounded so Redis does not grow. */
export const retention = {
  removeOnComplete: { age: 24 * 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 5000 },
} as const;

/**
 * Default options per queue. Transient failures (a crashed worker, Redis blips, a CUDA error) retry
 * with exponential backoff; user mistakes fail at once because processors throw UnrecoverableError
 * (see toJobError in jobs.ts). Imagine retries fewer times: one attempt is minutes of compute.
 */
export const defaultJobOptions: Readonly<Record<JobKind, JobsOptions>> = {
  imagine: { attempts: 2, backoff: { type: 'exponential', delay: 5_000 }, ...retention },
  classify: { attempts: 3, backoff: { type: 'exponential', delay: 1_000 }, ...retention },
  // 2 s doubling over 8 attempts: an image posted while the database is away (a restart, a failover)
  // is still indexed if it comes back within ~4 min (docs/RELIABILITY.md).
  'embed-image': { attempts: 8, backoff: { type: 'exponential', delay: 2_000 }, ...retention },
  search: { attempts: 3, backoff: { type: 'exponential', delay: 500 }, ...retention },
  'delete-image': { attempts: 5, backoff: { type: 'exponential', delay: 1_000 }, ...retention },
  'channel-state': { attempts: 5, backoff: { type: 'exponential', delay: 500 }, ...retention },
};

/**
 * Checks that Redis will not evict keys under memory pressure (BullMQ loses jobs silently otherwise).
 * Warns and returns the policy; returns undefined when the server does not say (managed Redis often
 * disables CONFIG, so INFO is tried too).
 */
export async function checkEvictionPolicy(connection: Redis, logger: Logger): Promise<string | undefined> {
  let policy: string | undefined;
  try {
    const reply = (await connection.config('GET', 'maxmemory-policy')) as string[];
    policy = reply[1];
  } catch {
    const info = await connection.info('memory').catch(() => '');
    policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  }
  if (policy === undefined) {
    logger.warn('could not read Redis maxmemory-policy; make sure it is noeviction');
  } else if (policy !== 'noeviction') {
    logger.warn(
      { policy },
      `Redis maxmemory-policy is ${policy}: queued jobs can be evicted; set maxmemory-policy noeviction`,
    );
  }
  return policy;
}
