import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keys, openConnection } from '../../src/shared/queues.js';
import { budgetOf, QuotaLimiter, type QuotaLimits, type QuotaOptions } from '../../src/shared/quota.js';
import { deletePrefix, testPrefix, useRedis } from '../helpers/redis.js';

const redis = useRedis();
let connection: Redis;
let prefix: string;
beforeAll(async () => {
  connection = await openConnection(redis.url);
});
afterEach(async () => {
  await deletePrefix(connection, prefix);
});
afterAll(async () => {
  await connection.quit();
});

/** A limiter with the given imagine limits (light: none unless given). */
function limiter(
  options: Partial<QuotaLimits> & Partial<Omit<QuotaOptions, 'connection' | 'prefix'>>,
): QuotaLimiter {
  prefix = testPrefix();
  const { concurrent = 0, perWindow = 0, ...rest } = options;
  return new QuotaLimiter({
    connection,
    prefix,
    ...rest,
    budgets: { imagine: { concurrent, perWindow }, ...rest.budgets },
  });
}

// Simulates BullMQ's job hash: present while the job lives, with finishedOn once it ended.
const jobKey = (id: string) => ({ queue: 'imagine', jobId: id });
const hashKey = (id: string) => keys.bullJob(prefix, 'imagine', id);
const createJob = (id: string) => connection.hset(hashKey(id), 'name', 'imagine', 'timestamp', Date.now());
const finishJob = (id: string) => connection.hset(hashKey(id), 'finishedOn', Date.now());

describe('QuotaLimiter', () => {
  it('refuses beyond the concurrent limit and frees the slot when the job finishes', async () => {
    const quota = limiter({ concurrent: 2 });
    await createJob('1');
    await createJob('2');
    expect(await quota.acquire('discord:u', jobKey('1'))).toEqual({ allowed: true });
    expect(await quota.acquire('discord:u', jobKey('2'))).toEqual({ allowed: true });
    expect(await quota.acquire('discord:u', jobKey('3'))).toEqual({
      allowed: false,
      budget: 'imagine',
      reason: 'concurrent',
      limit: 2,
    });
    // Another user is not affected.
    expect(await quota.acquire('slack:u', jobKey('4'))).toEqual({ allowed: true });
    await finishJob('1');
    expect(await quota.acquire('discord:u', jobKey('3'))).toEqual({ allowed: true });
    expect(await quota.usage('discord:u', 'imagine')).toEqual({ inFlight: 2, inWindow: 0 });
  });

  it('frees the slot of a cancelled job at once', async () => {
    const quota = limiter({ concurrent: 1 });
    await createJob('1');
    expect((await quota.acquire('u', jobKey('1'))).allowed).toBe(true);
    expect((await quota.acquire('u', jobKey('2'))).allowed).toBe(false);
    await connection.set(keys.cancel(prefix, 'imagine', '1'), '1');
    expect((await quota.acquire('u', jobKey('2'))).allowed).toBe(true);
  });

  it('keeps a slot whose job is not added yet, and frees it after the grace period', async () => {
    const quota = limiter({ concurrent: 1, graceSeconds: 0.3 });
    expect((await quota.acquire('u', jobKey('a'))).allowed).toBe(true);
    // The job hash does not exist yet (the submitter is between acquire and add).
    expect((await quota.acquire('u', jobKey('b'))).allowed).toBe(false);
    await new Promise((r) => setTimeout(r, 400));
    expect((await quota.acquire('u', jobKey('b'))).allowed).toBe(true);
  });

  it('refuses beyond the per-window limit with the time until the oldest submission leaves', async () => {
    const quota = limiter({ perWindow: 2, windowSeconds: 1 });
    expect((await quota.acquire('u', jobKey('1'))).allowed).toBe(true);
    expect((await quota.acquire('u', jobKey('2'))).allowed).toBe(true);
    const refused = await quota.acquire('u', jobKey('3'));
    expect(refused).toEqual({
      allowed: false,
      budget: 'imagine',
      reason: 'hourly',
      limit: 2,
      retryAfterSeconds: 1,
    });
    await new Promise((r) => setTimeout(r, 1100));
    expect((await quota.acquire('u', jobKey('3'))).allowed).toBe(true);
    expect(await quota.usage('u', 'imagine')).toEqual({ inFlight: 0, inWindow: 1 });
  });

  it('reports retryAfter in whole seconds for long windows', async () => {
    const quota = limiter({ perWindow: 1, windowSeconds: 3600 });
    await quota.acquire('u', jobKey('1'));
    const refused = await quota.acquire('u', jobKey('2'));
    expect(refused.allowed).toBe(false);
    if (!refused.allowed) {
      expect(refused.retryAfterSeconds).toBeGreaterThan(3590);
      expect(refused.retryAfterSeconds).toBeLessThanOrEqual(3600);
    }
  });

  it('grants exactly the limit when many submissions race', async () => {
    const quota = limiter({ concurrent: 3, perWindow: 100 });
    const other = await openConnection(redis.url);
    const second = new QuotaLimiter({
      connection: other,
      prefix,
      budgets: { imagine: { concurrent: 3, perWindow: 100 } },
    });
    const decisions = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? quota : second).acquire('u', jobKey(String(i)))),
    );
    expect(decisions.filter((d) => d.allowed).length).toBe(3);
    await other.quit();
  });

  it('refund forgets a submission that was never enqueued', async () => {
    const quota = limiter({ concurrent: 1, perWindow: 1 });
    expect((await quota.acquire('u', jobKey('1'))).allowed).toBe(true);
    await quota.release('u', jobKey('1'), { refund: true });
    expect((await quota.acquire('u', jobKey('2'))).allowed).toBe(true);
  });

  it('counts imagine and light jobs in separate budgets', async () => {
    expect(['imagine', 'classify', 'search', 'embed-image', 'delete-image'].map(budgetOf)).toEqual([
      'imagine',
      'light',
      'light',
      'light',
      'light',
    ]);
    const quota = limiter({ perWindow: 1, budgets: { light: { concurrent: 0, perWindow: 3 } } });
    const light = (queue: string, id: string) => quota.acquire('u', { queue, jobId: id });
    // Light jobs never spend the imagine budget...
    expect((await light('classify', 'c1')).allowed).toBe(true);
    expect((await light('search', 's1')).allowed).toBe(true);
    expect((await quota.acquire('u', jobKey('i1'))).allowed).toBe(true);
    expect(await quota.acquire('u', jobKey('i2'))).toMatchObject({
      allowed: false,
      budget: 'imagine',
      limit: 1,
    });
    // ...and a spent imagine budget leaves the light one: its own, larger limit.
    expect((await light('delete-image', 'd1')).allowed).toBe(true);
    expect(await light('embed-image', 'e1')).toMatchObject({
      allowed: false,
      budget: 'light',
      reason: 'hourly',
      limit: 3,
    });
    expect(await quota.usage('u', 'light')).toEqual({ inFlight: 0, inWindow: 3 });
    expect(await quota.usage('u', 'imagine')).toEqual({ inFlight: 0, inWindow: 1 });
    await quota.release('u', { queue: 'search', jobId: 's1' }, { refund: true });
    expect(await quota.usage('u', 'light')).toEqual({ inFlight: 0, inWindow: 2 });
  });

  it('a budget without limits is unlimited while the other is enforced', async () => {
    const quota = limiter({ concurrent: 1 });
    expect(quota.limits('light')).toEqual({ concurrent: 0, perWindow: 0 });
    for (let i = 0; i < 5; i++)
      expect((await quota.acquire('u', { queue: 'classify', jobId: `${i}` })).allowed).toBe(true);
    expect((await quota.acquire('u', jobKey('a'))).allowed).toBe(true);
    expect((await quota.acquire('u', jobKey('b'))).allowed).toBe(false);
  });

  it('refuses negative limits', () => {
    expect(() => limiter({ budgets: { light: { concurrent: -1, perWindow: 0 } } })).toThrow(
      /light.concurrent/,
    );
  });

  it('is a no-op when both limits are 0', async () => {
    const quota = limiter({});
    expect(quota.enabled).toBe(false);
    for (let i = 0; i < 5; i++) expect((await quota.acquire('u', jobKey(String(i)))).allowed).toBe(true);
  });
});
