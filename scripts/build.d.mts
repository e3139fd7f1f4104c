// Types of build.mjs (plain JavaScript: npm start and bin/vqclip.js import it before any compiler).
export function buildKey(root?: string, files?: readonly string[]): string;
export function compiledPath(dir: string, sourcePath: string): string;
export function ensureBuilt(options?: { root?: string }): Promise<string>;
export function entryUrl(
  sourcePath: string,
  options?: { root?: string; say?: (line: string) => void },
): Promise<string>;
