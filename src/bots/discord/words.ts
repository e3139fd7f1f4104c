// The sentences only the Discord adapter says: channel indexing (opt-in per channel, the Message
// Content intent), /settings answers and backfill progress. Everything shared by platforms comes
// from the core's render.ts; these are the Discord-specific rest, pure and in one place.
import type { WorkspaceSettings } from '../core/settings.js';

export const Words = {
  notIndexed: (channelId: string) =>
    `<#${channelId}> is not indexed for search. A server admin can turn it on with \`/settings indexing\`.`,
  contentIntentOff:
    'The bot runs without the Message Content intent, so it cannot see images in new messages and the index is not kept up to date. The operator can turn the intent on in the Discord Developer Portal (Bot → Privileged Gateway Intents) and restart the bot.',
  searchNeedsServer: 'Channel search works in servers that added the bot.',
  settingsNeedServer: 'Settings belong to a server that added the bot; run /settings there.',
  indexingOn: (channelId: string) =>
    `Indexing is on for <#${channelId}>: images posted there from now on can be found with /search. \`/settings backfill\` indexes its recent history.`,
  indexingOff: (channelId: string) =>
    `Indexing is off for <#${channelId}>: new images there are no longer indexed, and /search there is turned off.`,
  backfillNeedsIndexing: (channelId: string) =>
    `Turn indexing on for <#${channelId}> first (\`/settings indexing enabled:true\`).`,
  backfillRunning: (channelId: string) => `A backfill of <#${channelId}> is already running.`,
  noImageInMessage: 'That message has no image I can read.',
};

/** `Read 300 messages, indexed 12 images (1 failed).` with the state of the run. */
export function backfillProgress(p: {
  channelId: string;
  messages: number;
  images: number;
  failed: number;
  done: boolean;
  stopped?: 'limit' | 'error' | undefined;
  resumed?: boolean;
}): string {
  const what = `read ${p.messages} ${p.messages === 1 ? 'message' : 'messages'}, indexed ${p.images} ${p.images === 1 ? 'image' : 'images'}${p.failed ? ` (${p.failed} could not be read)` : ''}`;
  const from = p.resumed ? ' (resumed where the last run stopped)' : '';
  if (p.done) return `Backfill of <#${p.channelId}> finished${from}: ${what}. The whole history is indexed.`;
  if (p.stopped === 'limit')
    return `Backfill of <#${p.channelId}> paused${from}: ${what}. Run \`/settings backfill\` again to go on from there.`;
  if (p.stopped === 'error')
    return `Backfill of <#${p.channelId}> stopped on an error${from}: ${what}. Run \`/settings backfill\` again to resume.`;
  return `Backfill of <#${p.channelId}> running${from}: ${what} so far…`;
}

const SAFETY_WORDS: Readonly<Record<string, string>> = {
  off: 'flagged images are shown',
  spoiler: 'flagged images are hidden behind a spoiler',
  block: 'flagged images are withheld',
};

/** /settings show and the answer to a change. */
export function describeSettings(input: {
  settings: WorkspaceSettings;
  defaultSafetyMode: string;
  indexedHere: boolean;
  channelId: string;
  messageContent: boolean;
}): string {
  const s = input.settings;
  const mode = s.safetyMode ?? input.defaultSafetyMode;
  const lines = [
    '**Settings of this server**',
    `Preset: ${s.preset ?? 'the default (normal)'}`,
    `Safety: ${SAFETY_WORDS[mode] ?? mode}${s.safetyMode === undefined ? ' (the deployment default)' : ''}`,
    `Age-restricted channels: ${s.allowFlaggedInAgeRestricted ? 'flagged images shown as spoilers' : 'same as everywhere'}`,
    `Search in <#${input.channelId}>: ${input.indexedHere ? 'indexed' : 'not indexed'}`,
  ];
  if (!input.messageContent) lines.push(`-# ${Words.contentIntentOff}`);
  return lines.join('\n');
}
