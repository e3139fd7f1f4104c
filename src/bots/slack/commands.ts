// The slash commands: /imagine (a job followed on its channel message), /whatis (labels of the latest
// image, or of a pasted permalink's) and /imagesearch (the channel's index by words, or `backfill`).
// Each acks at once (Slack allows 3 s) and answers refusals privately in the core's sentences.
import type { App } from '@slack/bolt';
import type { ChannelScope } from '../../shared/jobs.js';
import { flagsHelp, imagineFlags, parseFlags, searchFlags, whatisFlags } from '../core/flags.js';
import type { Backfills } from './backfill.js';
import { labelsMessage, noticeMessage } from './blocks.js';
import { ackThenWait, ephemeralVia, errorNotice, originOf, type SlackContext } from './context.js';
import { imageOfPermalink, latestImage } from './image-source.js';
import { findPermalink } from './permalinks.js';
import { answerSearch } from './search.js';

const IMAGINE_HELP = `Paint a picture: \`/imagine a watercolor teacher --steps 50\`. ${flagsHelp(imagineFlags)}`;
const WHATIS_HELP = `\`/whatis\` labels the latest image in this channel; paste a message link to pick one, and add labels to choose from: \`/whatis cat, dog, human\`. ${flagsHelp(whatisFlags)}`;
const SEARCH_HELP = `\`/imagesearch a red bicycle\` finds images posted in this channel; \`/imagesearch backfill\` indexes its older messages. ${flagsHelp(searchFlags)}`;

/** The prompt as shown on the job's message: the text without its flags (or all of it if they do not parse). */
function promptOf(text: string): string {
  try {
    return parseFlags(text, imagineFlags).rest || text;
  } catch {
    return text;
  }
}

/** The slash commands the app answers; slack-manifest.yml declares the same. */
export const SLASH_COMMANDS = ['/imagine', '/whatis', '/imagesearch'] as const;

export function registerCommands(app: App, ctx: SlackContext, backfills: Backfills): void {
  app.command('/imagine', async ({ command, ack, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const text = command.text.trim();
    if (text === '' || text === 'help') return ephemeral(noticeMessage(IMAGINE_HELP));
    const team = command.team_id;
    const channel = command.channel_id;
    const user = command.user_id;
    try {
      const surface = ctx.surface({ prompt: promptOf(text), user, reply: { team, channel }, ephemeral });
      const settings = await ctx.services.settings.workspace('slack', team);
      const run = await ctx.core.imagine(
        { text, defaults: { preset: settings.preset } },
        originOf(team, channel, user),
        surface,
        { reply: { team, channel } },
      );
      if (surface.postError !== undefined && run.jobId !== undefined) {
        // No message to follow it on: the job would paint for nobody.
        run.stop();
        await ctx.services.jobs.cancel(run.jobId).catch(() => {});
        await ephemeral(errorNotice(surface.postError));
        return;
      }
      ctx.track(run);
    } catch (error) {
      ctx.logger.warn({ err: error }, '/imagine failed');
      await ephemeral(errorNotice(error)).catch(() => {});
    }
  });

  app.command('/whatis', async ({ command, ack, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const text = command.text.trim();
    if (text === 'help') return ephemeral(noticeMessage(WHATIS_HELP));
    const team = command.team_id;
    const channel = command.channel_id;
    try {
      const link = findPermalink(text);
      const found = link
        ? await imageOfPermalink(ctx, team, channel, link.ref)
        : await latestImage(ctx, team, channel);
      const labels = (link ? link.rest : text) || undefined;
      const result = await ctx.core.whatis(
        ctx.files.remoteImage(found.file),
        labels,
        originOf(team, channel, command.user_id),
      );
      await ephemeral(labelsMessage(result.labels, { fileName: found.file.name }));
    } catch (error) {
      await ephemeral(errorNotice(error)).catch(() => {});
    }
  });

  app.command('/imagesearch', async ({ command, ack, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const text = command.text.trim();
    if (text === '' || text === 'help') return ephemeral(noticeMessage(SEARCH_HELP));
    const team = command.team_id;
    const channel = command.channel_id;
    const scope: ChannelScope = { platform: 'slack', workspace: team, channel };
    try {
      if (text.toLowerCase() === 'backfill') {
        await ephemeral(noticeMessage(await backfills.request(scope)));
        return;
      }
      const result = await ctx.core.search({ text }, scope, originOf(team, channel, command.user_id));
      let query = text;
      try {
        query = parseFlags(text, searchFlags).rest;
      } catch {}
      await ephemeral(await answerSearch(ctx, scope, result, query));
    } catch (error) {
      await ephemeral(errorNotice(error)).catch(() => {});
    }
  });
}
