// Types of setup.mjs (plain JavaScript: it runs before node_modules, and so before tsx, exists).
export type SystemPackage = 'redis-server' | 'chromium';

export interface SystemFacts {
  platform: NodeJS.Platform;
  /** /etc/os-release ID and ID_LIKE, e.g. `ubuntu debian`. */
  osId: string;
  isRoot: boolean;
  passwordlessSudo: boolean;
  aptGet: boolean;
  brew: boolean;
  aptListsEmpty: boolean;
}

export type InstallPlan =
  | { kind: 'none'; commands: [] }
  | { kind: 'apt'; updateFirst: boolean; update: string[]; commands: string[][]; exact: string }
  | { kind: 'brew'; commands: string[][]; exact: string }
  | { kind: 'manual'; commands: []; exact: string; reason: string };

export interface Needs {
  modules?: boolean;
  redis?: boolean;
  chromium?: boolean;
}

export interface EnsureOptions {
  root?: string;
  env?: NodeJS.ProcessEnv;
  say?: (line: string) => void;
  system?: SystemFacts;
  /** Said after the install command when redis-server cannot be installed (`set REDIS_URL …`). */
  redisAlternative?: string | undefined;
}

export const ROOT: string;
export function which(name: string, path?: string): string | undefined;
export function findChromium(env?: NodeJS.ProcessEnv): string | undefined;
export function modulesState(root?: string): 'ok' | 'missing' | 'stale';
export function probeSystem(env?: NodeJS.ProcessEnv): SystemFacts;
export function planSystemInstall(missing: readonly SystemPackage[], system: SystemFacts): InstallPlan;
export function manualLine(
  missing: readonly SystemPackage[],
  plan: Extract<InstallPlan, { kind: 'manual' }>,
  alternative?: string,
): string;
export function ensure(needs: Needs, options?: EnsureOptions): boolean;
export function needsFor(command: 'start' | 'test', env?: NodeJS.ProcessEnv): Required<Needs>;
