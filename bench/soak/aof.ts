// The AOF fsync policy of the private redis-server (and the compose service), chosen from numbers:
// what `always` costs submissions (throughput, latency) against `everysec`, and how many
// acknowledged submissions each loses when redis-server is SIGKILLed mid-load and restarted by its
// watchdog. A SIGKILL of redis-server alone leaves the kernel's page cache intact, so it shows only
// what was acknowledged before it was even written (`aof_delayed_fsync`: everysec postpones writes
// while a slow fsync is in flight); what a power cut or kernel crash loses (written, not yet
// fsynced) cannot be produced on a running machine and is bounded from the submit rate instead.
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { type AppendFsync, type PrivateRedis, spawnRedis } from '../../src/app/redis-server.js';
import { JobClient } from '../../src/bots/core/job-client.js';
import type { JobRef } from '../../src/bots/core/job-status.js';
import { createConnection, openConnection, waitUntilReady } from '../../src/shared/queues.js';
import { percentile, type Row } from '../lib.js';
import type { SoakModule } from './lib.js';

interface PolicyFigures {
  policy: AppendFsync;
  submitsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** One submitter at a time: what a single chat command pays. */
  singleP50Ms: number;
  singleP99Ms: number;
  killedAfter: number;
  acknowledged: number;
  lost: number;
  delayedFsync: number;
  outageMs: number;
}

const origin = { platform: 'web', workspace: 'w', channel: 'c', user: 'soak' } as const;

/** `concurrency` submitters for `seconds`; the latency of each submit() that resolved. */
async function load(
  jobs: JobClient,
  seconds: number,
  concurrency: number,
  onAck: (ref: JobRef) => void,
): Promise<{ latencies: number[]; refused: number }> {
  const latencies: number[] = [];
  let refused = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const { jobId } = await jobs.submit(
            'imagine',
            { prompt: `a soak test ${randomUUID()}`, seed: 1, origin },
            { userId: 'web:soak' },
          );
          latencies.push(performance.now() - t0);
          onAck(jobId);
        } catch {
          refused++;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }),
  );
  return { latencies, refused };
}

/** `aof_delayed_fsync` of an `INFO persistence` reply: writes everysec postponed past their reply. */
export function aofDelayedFsync(info: string): number {
  return Number(/^aof_delayed_fsync:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}

async function delayedFsync(url: string): Promise<number> {
  const c = await openConnection(url);
  try {
    return aofDelayedFsync(await c.info('persistence'));
  } finally {
    c.disconnect();
  }
}

async function measurePolicy(
  policy: AppendFsync,
  dir: string,
  seconds: number,
  concurrency: number,
): Promise<PolicyFigures> {
  const redis: PrivateRedis = await spawnRedis({ dataDir: join(dir, policy), appendfsync: policy });
  const connection = await openConnection(redis.url);
  connection.on('error', () => {});
  const prefix = `soak${randomUUID().slice(0, 8)}`;
  const jobs = new JobClient({ connection, prefix });
  try {
    // Cost: a clean run.
    const clean = await load(jobs, seconds, concurrency, () => {});
    const sorted = [...clean.latencies].sort((a, b) => a - b);
    const single = (await load(jobs, Math.min(seconds, 3), 1, () => {})).latencies.sort((a, b) => a - b);
    // Loss: the same load, redis-server SIGKILLed half-way; the watchdog starts it again.
    const acked: JobRef[] = [];
    const killAt = (seconds * 1000) / 2;
    let outageMs = Number.NaN;
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, killAt));
      const pid = redis.pid;
      const t0 = performance.now();
      process.kill(pid, 'SIGKILL');
      const probe = createConnection(redis.url, 'worker');
      probe.on('error', () => {});
      await waitUntilReady(probe);
      while (redis.pid === pid) await new Promise((r) => setTimeout(r, 5));
      await probe.ping();
      outageMs = performance.now() - t0;
      probe.disconnect();
    })();
    await load(jobs, seconds, concurrency, (ref) => acked.push(ref));
    await killer;
    const queue = new Queue('imagine', { connection, prefix });
    let lost = 0;
    for (let i = 0; i < acked.length; i += 500) {
      const batch = acked.slice(i, i + 500);
      const pipeline = connection.pipeline();
      for (const ref of batch) pipeline.exists(`${prefix}:imagine:${ref.slice('imagine:'.length)}`);
      const replies = (await pipeline.exec()) ?? [];
      lost += replies.filter(([, v]) => v !== 1).length;
    }
    await queue.obliterate({ force: true });
    await queue.close();
    return {
      policy,
      submitsPerSecond: clean.latencies.length / seconds,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      singleP50Ms: percentile(single, 50),
      singleP99Ms: percentile(single, 99),
      killedAfter: killAt / 1000,
      acknowledged: acked.length,
      lost,
      delayedFsync: await delayedFsync(redis.url),
      outageMs,
    };
  } finally {
    await jobs.close();
    connection.disconnect();
    await redis.stop();
  }
}

/** The disk under the AOF: median and p99 of one 4 KiB write + fsync. */
function diskFsyncMs(dir: string, n = 60): { p50: number; p99: number } {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  const samples: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      writeSync(fd, block);
      fsyncSync(fd);
      samples.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

export const aofSoak: SoakModule = {
  name: 'aof',
  description: 'AOF fsync policy: always vs everysec, submit cost and acknowledged jobs lost to SIGKILL',
  async run(options) {
    const seconds = options.quick ? 3 : 6;
    const concurrency = 16;
    // On the disk DATA_DIR lives on (the OS temp folder may be a tmpfs, where fsync costs nothing).
    const dir = await mkdtemp(join(options.dataRoot, 'soak-aof-'));
    try {
      const disk = diskFsyncMs(dir);
      const figures: PolicyFigures[] = [];
      for (const policy of ['everysec', 'always'] as const)
        figures.push(await measurePolicy(policy, dir, seconds, concurrency));
      const rows: Row[] = figures.map((f) => ({
        name: f.policy,
        cells: {
          'submits/s': Math.round(f.submitsPerSecond),
          'p50 ms': f.p50Ms,
          'p99 ms': f.p99Ms,
          'p50 ms (1 submitter)': f.singleP50Ms,
          'p99 ms (1 submitter)': f.singleP99Ms,
          'acked (kill run)': f.acknowledged,
          'lost on SIGKILL': f.lost,
          aof_delayed_fsync: f.delayedFsync,
          'outage ms': Math.round(f.outageMs),
        },
      }));
      const everysec = figures[0]!;
      const always = figures[1]!;
      return {
        // appendfsync always writes before it replies: a SIGKILL of redis-server must lose nothing.
        failures: always.lost > 0 ? [`appendfsync always lost ${always.lost} acknowledged jobs`] : [],
        tables: [{ title: `AOF fsync policy (${concurrency} submitters, ${seconds} s per run)`, rows }],
        notes: [
          `disk under the AOF: write 4 KiB + fsync p50 ${disk.p50.toFixed(2)} ms, p99 ${disk.p99.toFixed(2)} ms`,
          `always costs ${(100 * (1 - always.submitsPerSecond / everysec.submitsPerSecond)).toFixed(0)}% of submit throughput; p99 ${everysec.p99Ms.toFixed(1)} -> ${always.p99Ms.toFixed(1)} ms`,
          `a power cut with everysec could lose up to ~1-2 s of acknowledged writes: at this rate ~${Math.round(everysec.submitsPerSecond)}-${Math.round(2 * everysec.submitsPerSecond)} submissions (an upper bound from the rate, not a measurement)`,
          'SIGKILL of redis-server alone keeps the page cache: a loss there needs writes postponed past the reply (aof_delayed_fsync > 0)',
        ],
        details: { figures, disk, seconds, concurrency },
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
