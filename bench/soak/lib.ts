// What the soak modules share: the module shape (a name, a run that returns tables, notes and
// details, as the benchmarks do) and the options `npm run soak` passes them.
import type { BenchResult } from '../lib.js';

export interface SoakOptions {
  /** Smaller and shorter runs (a smoke test of the soak itself). */
  quick: boolean;
  /** A folder on the disk DATA_DIR would use (the AOF measurement needs a real fsync). */
  dataRoot: string;
  /** `--name=value` flags of the command line, for a module's own settings. */
  flags: Readonly<Record<string, string>>;
}

export interface SoakModule {
  name: string;
  description: string;
  run(options: SoakOptions): Promise<BenchResult>;
}
