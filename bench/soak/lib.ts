// What the soak modules share: the module shape (a name, a run that returns tables, notes and
// details, as the benchmarks do) and the options `npm run soak` passes them.
import { Redis } from 'ioredis';
import type { BenchResult } from '../lib.js';

export interface SoakOptions {
  /** Smaller and shorter runs (a smoke test of the soak itself). */
  quick: boolean;
  /** A folder on the disk DATA_DIR would use (the AOF measurement needs a real fsync). */
  dataRoot: string;
  /** `--name=value` flags of the command line, for a module's own settings. */
  flags: Readonly<Record<string, string>>;
}

/** A soak's figures, plus the checks that did not hold (`npm run soak` then exits 1). */
export interface SoakResult extends BenchResult {
  readonly failures: readonly string[];
}

export interface SoakModule {
  name: string;
  description: string;
  run(options: SoakOptions): Promise<SoakResult>;
}

/** Counts every ioredis command this process sends, per second bucket, until stop(). */
export function countRedisCommands(): { total(): number; perSecond: Map<number, number>; stop(): void } {
  const proto = Redis.prototype as unknown as { sendCommand: (...args: unknown[]) => unknown };
  const original = proto.sendCommand;
  let total = 0;
  const perSecond = new Map<number, number>();
  proto.sendCommand = function (this: unknown, ...args: unknown[]) {
    total++;
    const s = Math.floor(Date.now() / 1000);
    perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    return original.apply(this, args);
  };
  const stop = () => {
    proto.sendCommand = original;
  };
  return { total: () => total, perSecond, stop };
}
