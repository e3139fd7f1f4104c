// Library channels by name, light enough for the CLI's start (no zod, no I/O): the channel a name
// people type stands for, where a channel's images live in the index, and the one upload limit.

/** A channel as stored: lowercase letters, digits, _ and -, at most 40 (it doubles as a folder name). */
export const CHANNEL_NAME = /^[a-z0-9][a-z0-9_-]{0,39}$/;

/**
 * Largest image the playground and the CLI accept, one limit for both (Discord's default
 * attachment limit, so a file that works here works there).
 */
export const UPLOAD_MAX_BYTES = 10 * 1024 * 1024;

/**
 * The channel a name people type stands for: `Holiday Photos` -> `holiday-photos` (lowercase, accents
 * dropped, runs of spaces, dots and dashes -> one `-`, other characters dropped). Undefined when
 * nothing usable is left, it is longer than 40, or it looks like a path: the caller says the rule
 * (render.ts renderChannelRule).
 */
export function channelFromName(name: string): string | undefined {
  // A path or control characters are not a name anyone types: refused rather than cleaned up.
  if (/[/\\]/.test(name) || [...name].some((ch) => ch.charCodeAt(0) < 0x20)) return undefined;
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .trim()
    .replace(/[\s.-]+/g, '-')
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[-_]+|-+$/g, '');
  return CHANNEL_NAME.test(slug) ? slug : undefined;
}

/**
 * Where library images live in the images table: one local workspace, one channel per folder. The
 * CLI's `search --channel` reads the same scope.
 */
export function libraryScope(channel: string): { platform: 'web'; workspace: string; channel: string } {
  return { platform: 'web', workspace: 'local', channel };
}
