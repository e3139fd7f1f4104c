// npm start's private redis-server gets a maxmemory suited to the machine (a quarter of its memory,
// or of the container's limit, 256 MiB to 8 GiB) and keeps noeviction, which BullMQ needs.
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { defaultMaxmemory, spawnRedis } from '../../src/app/redis-server.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('maxmemory of the private redis-server', () => {
  it('is a quarter of the machine or container memory, within 256 MiB and 8 GiB', () => {
    expect(defaultMaxmemory(16 * GiB, undefined)).toBe(4 * GiB);
    expect(defaultMaxmemory(24 * GiB + 3 * MiB, undefined)).toBe(6 * GiB);
    expect(defaultMaxmemory(128 * GiB, undefined)).toBe(8 * GiB);
    expect(defaultMaxmemory(512 * MiB, undefined)).toBe(256 * MiB);
    // A container limited to 2 GiB on a 64 GiB host.
    expect(defaultMaxmemory(64 * GiB, 2 * GiB)).toBe(512 * MiB);
    expect(defaultMaxmemory(4 * GiB, 64 * GiB)).toBe(GiB);
  });

  it('starts redis-server with it (or the one given), and with noeviction', async () => {
    for (const [options, expected] of [
      [{}, defaultMaxmemory()],
      [{ maxmemoryBytes: 8 * MiB }, 8 * MiB],
    ] as const) {
      const server = await spawnRedis(options);
      const client = new Redis(server.url);
      try {
        expect(await client.config('GET', 'maxmemory')).toEqual(['maxmemory', String(expected)]);
        expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      } finally {
        client.disconnect();
        await server.stop();
      }
    }
    await expect(spawnRedis({ maxmemoryBytes: 1000 })).rejects.toThrow(/maxmemoryBytes/);
  });
});
