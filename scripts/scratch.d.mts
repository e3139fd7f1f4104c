// Types of scratch.mjs (plain JavaScript: it runs before node_modules, and so before tsx, exists).
export declare const TMPFS_MAGIC: number;
export declare const SCRATCH_MIN_FREE_BYTES: number;
export declare const RAM_ROOT: string;
export declare const SCRATCH_NAME: string;

export interface ScratchFacts {
  type: number | bigint;
  bavail: number | bigint;
  bsize: number | bigint;
}

export interface ScratchOptions {
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  statfs?: (path: string) => ScratchFacts;
  /** @defaultValue RAM_ROOT */
  ramRoot?: string;
}

export function chooseScratch(options?: ScratchOptions): { dir: string; why: string } | undefined;

export function scratchEnv(
  env?: NodeJS.ProcessEnv,
  log?: (line: string) => void,
  options?: Omit<ScratchOptions, 'env'>,
): NodeJS.ProcessEnv;
