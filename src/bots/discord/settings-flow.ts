// /settings (Manage Server): the server's defaults (preset, safety mode, flagged images in
// age-restricted channels) in Redis, a channel's indexing opt-in in the database, and the admin
// backfill, which reports its progress in the ephemeral reply while its token lasts.
import { type ChatInputCommandInteraction, PermissionFlagsBits } from 'discord.js';
import { BadInputError, ForbiddenError } from '../../shared/errors.js';
import type { ChannelScope, Preset } from '../../shared/jobs.js';
import { LatestWins } from '../core/latest-wins.js';
import type { WorkspaceSettings } from '../core/settings.js';
import type { SafetyMode } from '../core/view.js';
import { ephemeralText } from './components.js';
import { type DiscordContext, deferPrivate, editReply, tellError, tellPrivately } from './context.js';
import { BackfillRunningError } from './indexing.js';
import { backfillProgress, describeSettings, Words } from './words.js';

/** Least time between two progress edits of a backfill's reply. */
const BACKFILL_EDIT_MS = 3000;

export async function onSettings(ctx: DiscordContext, i: ChatInputCommandInteraction): Promise<void> {
  const guildId = i.guildId;
  if (!guildId || !ctx.client.guilds.cache.has(guildId)) {
    await tellPrivately(ctx, i, Words.settingsNeedServer);
    return;
  }
  // Discord hides the command from others by default, but a server can grant it to anyone.
  if (!i.memberPermissions?.has(PermissionFlagsBits.ManageGuild)) {
    await tellError(ctx, i, new ForbiddenError('admin_only', { reason: 'admin_only' }));
    return;
  }
  await deferPrivate(ctx, i);
  // The option's value is the id even when Discord resolved no channel object (threads, uncached).
  const chosen = i.options.get('channel')?.value;
  const channelId = typeof chosen === 'string' ? chosen : i.channelId;
  const known = ctx.client.channels.cache.get(channelId);
  if (known && (known.isDMBased() || known.guildId !== guildId)) {
    await tellError(
      ctx,
      i,
      new BadInputError('that channel is not in this server', { reason: 'foreign_channel' }),
    );
    return;
  }
  const scope: ChannelScope = { platform: 'discord', workspace: guildId, channel: channelId };
  const settings = ctx.services.settings;
  try {
    switch (i.options.getSubcommand()) {
      case 'defaults': {
        const patch: { preset?: Preset; safetyMode?: SafetyMode; allowFlaggedInAgeRestricted?: boolean } = {};
        const preset = i.options.getString('preset');
        const safety = i.options.getString('safety');
        const ageRestricted = i.options.getBoolean('age_restricted');
        if (preset !== null) patch.preset = preset as Preset;
        if (safety !== null) patch.safetyMode = safety as SafetyMode;
        if (ageRestricted !== null) patch.allowFlaggedInAgeRestricted = ageRestricted;
        const saved = await settings.updateWorkspace('discord', guildId, patch);
        await show(ctx, i, scope, saved);
        return;
      }
      case 'indexing': {
        const enabled = i.options.getBoolean('enabled', true);
        await ctx.indexer.setIndexed(scope, enabled);
        const words = enabled ? Words.indexingOn(channelId) : Words.indexingOff(channelId);
        const off = enabled && !ctx.indexer.messageContent ? `\n-# ${Words.contentIntentOff}` : '';
        await editReply(ctx, i, ephemeralText(`${words}${off}`));
        return;
      }
      case 'backfill':
        await backfill(ctx, i, scope, i.options.getInteger('messages') ?? ctx.backfillLimit);
        return;
      default:
        await show(ctx, i, scope, await settings.workspace('discord', guildId));
    }
  } catch (error) {
    await tellError(ctx, i, error);
  }
}

async function show(
  ctx: DiscordContext,
  i: ChatInputCommandInteraction,
  scope: ChannelScope,
  settings: WorkspaceSettings,
): Promise<void> {
  const indexedHere = await ctx.indexer.isIndexed(scope);
  const text = describeSettings({
    settings,
    defaultSafetyMode: ctx.services.settings.defaultSafetyMode,
    indexedHere,
    channelId: scope.channel,
    messageContent: ctx.indexer.messageContent,
  });
  await editReply(ctx, i, ephemeralText(text));
}

async function backfill(
  ctx: DiscordContext,
  i: ChatInputCommandInteraction,
  scope: ChannelScope,
  limit: number,
): Promise<void> {
  if (!(await ctx.indexer.isIndexed(scope))) {
    await editReply(ctx, i, ephemeralText(Words.backfillNeedsIndexing(scope.channel)));
    return;
  }
  const say = (text: string) =>
    editReply(ctx, i, ephemeralText(text)).catch((error: unknown) =>
      // After 15 minutes the reply cannot be edited; the run goes on and the log has its end.
      ctx.logger.info({ err: error, ...scope }, 'backfill progress not shown'),
    );
  const edits = new LatestWins<string>(BACKFILL_EDIT_MS, say, ctx.logger, ctx.now);
  try {
    const result = await ctx.indexer.backfill(scope, {
      limit,
      onProgress: (p) => edits.push(backfillProgress({ channelId: scope.channel, ...p, done: false })),
    });
    edits.cancel();
    await edits.flush();
    ctx.logger.info({ ...scope, ...result }, 'backfill ended');
    await say(backfillProgress({ channelId: scope.channel, ...result }));
  } catch (error) {
    edits.cancel();
    if (error instanceof BackfillRunningError) {
      await say(Words.backfillRunning(scope.channel));
      return;
    }
    throw error;
  }
}
