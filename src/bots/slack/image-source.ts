// Which image a /whatis or a shortcut means: the message a shortcut was used on, the message a
// pasted permalink names, or the latest image posted in the channel. The adapter's ledger answers
// first (history can be one call a minute); files.info then gives the live size and link, so a
// deleted file or a missing files:read scope is said before anything is downloaded.
import { ForbiddenError, NoImageError, NotAnImageError } from '../../shared/errors.js';
import type { SlackContext } from './context.js';
import type { LedgerFile, LedgerMessage } from './file-ledger.js';
import { filesOf, isImageFile, ledgerFile, type SlackFileObject } from './files.js';
import { HistoryBusyError } from './history.js';
import type { MessageRef } from './permalinks.js';
import { slackErrorOf } from './slack-errors.js';

export interface FoundImage {
  file: SlackFileObject & { id: string };
  channel: string;
  ts: string;
}

/** The first image of a message's files, checked live; Slack's payload files may be stale. */
export async function imageOfFiles(
  ctx: SlackContext,
  files: readonly (SlackFileObject | LedgerFile)[],
  where: 'message' | 'channel',
): Promise<SlackFileObject & { id: string }> {
  const live = files.filter((f): f is (SlackFileObject | LedgerFile) & { id: string } => f.id !== undefined);
  if (live.length === 0) throw new NoImageError(where);
  const candidate = live.find((f) => isImageFile(f)) ?? live[0];
  if (!candidate) throw new NoImageError(where);
  const info = await ctx.files.info(candidate.id);
  if (!isImageFile(info)) throw new NotAnImageError('the file is not an image', { mimetype: info.mimetype });
  return info;
}

/** The message a shortcut was used on (its files travel in the payload). */
export async function imageOfMessage(
  ctx: SlackContext,
  channel: string,
  message: { ts?: string; files?: unknown },
): Promise<FoundImage> {
  const file = await imageOfFiles(ctx, filesOf(message), 'message');
  return { file, channel, ts: message.ts ?? '' };
}

/** The message a permalink names; only in the channel the command was typed in. */
export async function imageOfPermalink(
  ctx: SlackContext,
  team: string,
  channel: string,
  ref: MessageRef,
): Promise<FoundImage> {
  // The bot may sit in channels the person cannot read: answering for them would leak their images.
  if (ref.channel !== channel) throw new ForbiddenError('other_channel', { channel: ref.channel });
  const known = await ctx.ledger.message(team, ref.channel, ref.ts);
  if (known) return { file: await imageOfFiles(ctx, known.files, 'message'), channel, ts: ref.ts };
  const message = await lookUp(ctx, team, ref);
  if (!message) throw new NoImageError('message');
  return imageOfMessage(ctx, channel, message);
}

/** The newest image in the channel that still exists. */
export async function latestImage(ctx: SlackContext, team: string, channel: string): Promise<FoundImage> {
  const known = await ctx.ledger.latest(team, channel, 5);
  for (const m of known) {
    const found = await tryMessage(ctx, team, m);
    if (found) return found;
  }
  // Nothing seen since the bot joined: one page of history, if the allowance is free right now.
  const page = await ctx.history
    .page(team, { channel, limit: ctx.historyPageSize }, { maxWaitMs: 0 })
    .catch((error: unknown) => {
      if (error instanceof HistoryBusyError || slackErrorOf(error) !== undefined) return undefined;
      throw error;
    });
  for (const message of page?.messages ?? []) {
    const files = filesOf(message).filter(isImageFile);
    if (files.length === 0 || message.ts === undefined) continue;
    try {
      return { file: await imageOfFiles(ctx, files, 'channel'), channel, ts: message.ts };
    } catch {}
  }
  throw new NoImageError('channel');
}

async function tryMessage(
  ctx: SlackContext,
  team: string,
  m: LedgerMessage,
): Promise<FoundImage | undefined> {
  try {
    return { file: await imageOfFiles(ctx, m.files, 'channel'), channel: m.channel, ts: m.ts };
  } catch (error) {
    // Deleted since: forget it and look further back.
    if ((error as { code?: string }).code === 'no_image') {
      await ctx.ledger.forgetMessage(team, m.channel, m.ts);
      return undefined;
    }
    throw error;
  }
}

/** One message by ts from history: it costs a call of the allowance, so callers wait at most a little. */
async function lookUp(ctx: SlackContext, team: string, ref: MessageRef) {
  try {
    const page = await ctx.history.page(
      team,
      { channel: ref.channel, latest: ref.ts, inclusive: true, limit: 1 },
      { maxWaitMs: 0 },
    );
    const message = page.messages?.find((m) => m.ts === ref.ts);
    if (message && filesOf(message).length > 0) {
      const files = filesOf(message).map(ledgerFile);
      await ctx.ledger.record(team, { channel: ref.channel, ts: ref.ts, files });
    }
    return message;
  } catch (error) {
    if (error instanceof HistoryBusyError) return undefined;
    throw error;
  }
}
