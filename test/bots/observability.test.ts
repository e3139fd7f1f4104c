// The bot process's /metrics and /healthz (METRICS_PORT) over HTTP against real Redis: the depth of
// every queue as BullMQ counts it, a healthz that follows Redis going away, and a clear line for a
// port in use.
import { createServer } from 'node:net';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobClient } from '../../src/bots/core/job-client.js';
import { startBotObservability } from '../../src/bots/observability.js';
import { RedisBlobStore } from '../../src/shared/blobs.js';
import { loadConfig } from '../../src/shared/config.js';
import { jobKinds } from '../../src/shared/jobs.js';
import { UndoStack } from '../../src/shared/lifecycle.js';
import { silentLogger } from '../../src/shared/logger.js';
import { openConnection } from '../../src/shared/queues.js';
import { parseMetrics, sample } from '../helpers/prometheus.js';
import { clearPrefix, startRedis, testPrefix, useRedis } from '../helpers/redis.js';

const redis = useRedis();
const undos: UndoStack[] = [];
afterAll(async () => {
  for (const u of undos.reverse()) await u.release();
});

async function start(redisUrl: string, env: Record<string, string> = {}) {
  const prefix = testPrefix();
  const config = loadConfig({ QUEUE_PREFIX: prefix, METRICS_PORT: '0', ...env });
  const undo = new UndoStack(silentLogger);
  undos.push(undo);
  const connection = await openConnection(redisUrl);
  connection.on('error', () => {});
  undo.push('connection', () => connection.quit().catch(() => {}));
  const started = await startBotObservability(config, { connection }, { undo, logger: silentLogger });
  return { prefix, connection, started, undo };
}

describe('bot /metrics and /healthz', () => {
  let url: string;
  beforeAll(() => {
    url = redis.url;
  });

  it('reports the depth of every queue as BullMQ counts it', async () => {
    const { prefix, connection, started } = await start(url);
    expect(started).toBeDefined();
    const client = new JobClient({ connection, prefix });
    const blobs = new RedisBlobStore({ connection, prefix, ttlSeconds: 60 });
    const image = await blobs.put(new Uint8Array([1, 2, 3]), { contentType: 'image/png' });
    const origin = { platform: 'cli' as const, user: 'u' };
    for (let i = 0; i < 3; i++)
      await client.submit('classify', { image, labels: ['a', 'b'], origin }, { userId: `u${i}` });
    await client.submit(
      'search',
      { query: 'a boat', k: 3, platform: 'web', workspace: 'w', channel: 'c', origin },
      { userId: 'u' },
    );
    const delayed = new Queue('imagine', { connection, prefix });
    await delayed.add('later', { x: 1 }, { delay: 60_000 });
    await delayed.close();

    const res = await fetch(`${started!.url}/metrics`);
    expect(res.status).toBe(200);
    const m = parseMetrics(await res.text());
    for (const kind of jobKinds) {
      const queue = new Queue(kind, { connection, prefix });
      const counts = await queue.getJobCounts('wait', 'prioritized', 'active', 'delayed', 'failed');
      await queue.close();
      expect(sample(m, 'vqclip_queue_jobs', { kind, state: 'waiting' }), kind).toBe(
        (counts.wait ?? 0) + (counts.prioritized ?? 0),
      );
      expect(sample(m, 'vqclip_queue_jobs', { kind, state: 'delayed' }), kind).toBe(counts.delayed);
    }
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'classify', state: 'waiting' })).toBe(3);
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'search', state: 'waiting' })).toBe(1);
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'imagine', state: 'delayed' })).toBe(1);
    expect(sample(m, 'vqclip_queue_jobs', { kind: 'imagine', state: 'waiting' })).toBe(0);
    expect((await fetch(`${started!.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${started!.url}/nothing`)).status).toBe(404);
    await client.close();
    await clearPrefix(connection, prefix);
  });

  it('answers 503 naming Redis while Redis is gone', { timeout: 30_000 }, async () => {
    const own = await startRedis();
    const { started } = await start(own.url);
    const healthy = await fetch(`${started!.url}/healthz`);
    expect(healthy.status).toBe(200);
    expect(await healthy.json()).toEqual({ status: 'ok', checks: { redis: 'ok' } });
    await own.stop();
    const res = await fetch(`${started!.url}/healthz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; checks: { redis: string } };
    expect(body.status).toBe('unhealthy');
    expect(body.checks.redis).not.toBe('ok');
  });

  it('listens on nothing without METRICS_PORT, and names the variable when the port is taken', async () => {
    expect((await start(url, { METRICS_PORT: '' })).started).toBeUndefined();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(start(url, { METRICS_PORT: String(port) })).rejects.toThrow(
        `port ${port} on 127.0.0.1 is in use: set METRICS_PORT to a free port`,
      );
    } finally {
      blocker.close();
    }
  });
});
