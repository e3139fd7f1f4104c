// Buttons and message shortcuts. A job's buttons carry `vq1:<action>:<jobRef>` (the core's ids), so
// a press works after restarts: Re-roll, Variations and Continue start a job on a new message,
// Cancel checks the presser (requester or admin), Timelapse posts into the thread. "Show image"
// sends a withheld image by direct message; "What is this?" and "Find similar" act on a message.
import type { App, BlockAction, ButtonAction, MessageShortcut } from '@slack/bolt';
import { BlobMissingError, NotFoundError } from '../../shared/errors.js';
import type { ChannelScope, ImagineResult } from '../../shared/jobs.js';
import { parseActionId, unknownButtonError } from '../core/actions.js';
import type { JobRef } from '../core/job-status.js';
import { parseJobRef } from '../core/job-status.js';
import { safetyNote, safetyPresentation } from '../core/view.js';
import { labelsMessage, noticeMessage, SHOW_IMAGE_PREFIX } from './blocks.js';
import { ackThenWait, ephemeralVia, errorNotice, originOf, type SlackContext } from './context.js';
import { imageOfMessage } from './image-source.js';
import { answerSearch } from './search.js';
import { extensionOf } from './surface.js';

export const WHAT_IS_THIS = 'what_is_this';
export const FIND_SIMILAR = 'find_similar';

const SENT_BY_DM = 'I sent it to you in a direct message.';

async function finishedResult(ctx: SlackContext, jobId: JobRef<'imagine'>): Promise<ImagineResult> {
  const status = await ctx.services.jobs.status(jobId);
  if (status.state !== 'completed')
    throw new NotFoundError('the job has no finished image yet', { reason: 'not_finished' });
  return status.result;
}

/** Sends a blob to a person's direct message with the app (a flagged image they asked to see). */
async function sendPrivately(ctx: SlackContext, user: string, blob: string, text: string): Promise<void> {
  const stored = await ctx.services.blobs.get(blob);
  if (!stored) throw new BlobMissingError(blob);
  const opened = await ctx.client.chat.postMessage({ channel: user, text });
  const dm = opened.channel ?? user;
  await ctx.files.upload({
    bytes: stored.bytes,
    filename: `image.${extensionOf(stored.contentType)}`,
    channel: dm,
    threadTs: opened.ts,
  });
}

export function registerInteractions(app: App, ctx: SlackContext): void {
  app.action<BlockAction<ButtonAction>>(/^vq1:/, async ({ ack, body, action, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const team = body.team?.id ?? ctx.identity.teamId;
    const channel = body.channel?.id ?? body.container.channel_id;
    const user = body.user.id;
    const messageTs: string | undefined = body.message?.ts ?? body.container.message_ts;
    ctx.background('a button', async () => {
      try {
        const parsed = parseActionId(action.action_id);
        const parent = parsed ? await ctx.services.jobs.data(parsed.jobId) : undefined;
        const surface = ctx.surface({
          prompt: parent?.prompt ?? '',
          user,
          reply: { team, channel },
          ephemeral,
        });
        const outcome = await ctx.core.action(
          action.action_id,
          { ...originOf(team, channel, user), moderator: await ctx.isAdmin(user) },
          surface,
          {},
          { reply: { team, channel } },
        );
        if (outcome.kind === 'started') {
          const run = outcome.run;
          if (surface.postError !== undefined && run.jobId !== undefined) {
            run.stop();
            await ctx.services.jobs.cancel(run.jobId).catch(() => {});
            await ephemeral(errorNotice(surface.postError));
          } else ctx.track(run);
        } else if (outcome.kind === 'timelapse') {
          const result = await finishedResult(ctx, outcome.parent);
          const presentation = safetyPresentation(
            result.safety,
            await ctx.services.settings.safetyMode('slack', team),
          );
          if (presentation === 'withhold') await ephemeral(noticeMessage(safetyNote('withhold') ?? ''));
          else if (presentation === 'spoiler') {
            await sendPrivately(ctx, user, outcome.blob, 'The timelapse you asked for:');
            await ephemeral(noticeMessage(SENT_BY_DM));
          } else {
            const stored = await ctx.services.blobs.get(outcome.blob);
            if (!stored) throw new BlobMissingError(outcome.blob);
            await ctx.files.upload({
              bytes: stored.bytes,
              filename: `timelapse.${extensionOf(stored.contentType)}`,
              channel,
              threadTs: body.message?.thread_ts ?? messageTs,
              title: 'Timelapse',
            });
          }
        }
        // Cancel needs no answer here: the job's message turns to "Cancelled." as the job ends.
      } catch (error) {
        await ephemeral(errorNotice(error)).catch(() => {});
      }
    });
  });

  app.action<BlockAction<ButtonAction>>(
    new RegExp(`^${SHOW_IMAGE_PREFIX.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    async ({ ack, body, action, respond }) => {
      await ackThenWait(ctx, ack);
      const ephemeral = ephemeralVia(respond);
      ctx.background('show a withheld image', async () => {
        try {
          const ref = action.action_id.slice(SHOW_IMAGE_PREFIX.length);
          if (parseJobRefOrUndefined(ref)?.kind !== 'imagine') throw unknownButtonError();
          const result = await finishedResult(ctx, ref as JobRef<'imagine'>);
          await sendPrivately(
            ctx,
            body.user.id,
            result.finalBlob,
            'The image you asked to see (the safety check flagged it):',
          );
          await ephemeral(noticeMessage(SENT_BY_DM));
        } catch (error) {
          await ephemeral(errorNotice(error)).catch(() => {});
        }
      });
    },
  );

  app.shortcut<MessageShortcut>(WHAT_IS_THIS, async ({ ack, shortcut, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const team = shortcut.team?.id ?? ctx.identity.teamId;
    const channel = shortcut.channel.id;
    ctx.background('what is this', async () => {
      try {
        const found = await imageOfMessage(ctx, channel, shortcut.message);
        const result = await ctx.core.whatis(
          ctx.files.remoteImage(found.file),
          undefined,
          originOf(team, channel, shortcut.user.id),
        );
        await ephemeral(labelsMessage(result.labels, { fileName: found.file.name }));
      } catch (error) {
        await ephemeral(errorNotice(error)).catch(() => {});
      }
    });
  });

  app.shortcut<MessageShortcut>(FIND_SIMILAR, async ({ ack, shortcut, respond }) => {
    await ackThenWait(ctx, ack);
    const ephemeral = ephemeralVia(respond);
    const team = shortcut.team?.id ?? ctx.identity.teamId;
    const channel = shortcut.channel.id;
    const scope: ChannelScope = { platform: 'slack', workspace: team, channel };
    ctx.background('find similar', async () => {
      try {
        const found = await imageOfMessage(ctx, channel, shortcut.message);
        const result = await ctx.core.search(
          { image: ctx.files.remoteImage(found.file) },
          scope,
          originOf(team, channel, shortcut.user.id),
        );
        await ephemeral(await answerSearch(ctx, scope, result));
      } catch (error) {
        await ephemeral(errorNotice(error)).catch(() => {});
      }
    });
  });
}

function parseJobRefOrUndefined(ref: string) {
  try {
    return parseJobRef(ref);
  } catch {
    return undefined;
  }
}
