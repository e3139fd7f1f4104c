// /imagine and the buttons of a job's message (Re-roll, Variations, Continue, Remix through its modal,
// Timelapse, Cancel), and /queue. Each defers within Discord's 3 s, then hands the job to the core
// on a DiscordSurface; the button ids carry the job reference, so they work after restarts.
import type {
  Attachment,
  ButtonInteraction,
  ChatInputCommandInteraction,
  ModalSubmitInteraction,
  RepliableInteraction,
} from 'discord.js';
import { BlobMissingError } from '../../shared/errors.js';
import { parseActionId } from '../core/actions.js';
import type { ImagineCommand, RemoteImage } from '../core/chat.js';
import { escapeFor, truncateFor } from '../core/escape.js';
import type { JobRef } from '../core/job-status.js';
import { renderCancelOutcome, renderQueueTitle } from '../core/render-chat.js';
import type { ReplySurface } from '../core/reply.js';
import type { RequestDefaults } from '../core/requests.js';
import { safetyNote, safetyPresentation, viewOf } from '../core/view.js';
import { ComponentIds, queueMessage, remixModal, timelapseMessage } from './components.js';
import {
  addressOf,
  type DiscordContext,
  deferPrivate,
  deferPublic,
  editReply,
  isModerator,
  originOf,
  tellError,
  tellPrivately,
} from './context.js';
import { fitMedia } from './media.js';
import { jumpLink, replyAddressSchema } from './reply-target.js';

function remote(attachment: Attachment | null): RemoteImage | undefined {
  if (!attachment) return undefined;
  return { url: attachment.url, name: attachment.name, size: attachment.size };
}

async function defaultsOf(ctx: DiscordContext, guildId: string | null): Promise<RequestDefaults> {
  if (!guildId) return {};
  const settings = await ctx.services.settings.workspace('discord', guildId).catch(() => ({}));
  const preset = (settings as { preset?: 'draft' | 'normal' | 'better' }).preset;
  return preset === undefined ? {} : { preset };
}

export async function onImagine(ctx: DiscordContext, i: ChatInputCommandInteraction): Promise<void> {
  await deferPublic(ctx, i);
  const address = addressOf(ctx, i);
  const surface = ctx.surface(address);
  const initImage = remote(i.options.getAttachment('init_image'));
  const imagePrompt = remote(i.options.getAttachment('image_prompt'));
  const command: ImagineCommand = {
    text: i.options.getString('prompt', true),
    fields: {
      preset: i.options.getString('preset'),
      size: i.options.getString('size'),
      steps: i.options.getInteger('steps'),
      seed: i.options.getInteger('seed'),
      drawer: i.options.getString('drawer'),
      candidates: i.options.getInteger('candidates'),
    },
    ...(initImage ? { initImage } : {}),
    ...(imagePrompt ? { imagePrompt } : {}),
    defaults: await defaultsOf(ctx, i.guildId),
  };
  const run = await ctx.core.imagine(command, originOf(i), surface, { reply: { ...address } });
  ctx.track(run, surface);
}

/** A surface for answers that start no job (Remix asking for its form). */
const nowhere: ReplySurface = { ack() {}, progress() {}, final() {}, fail() {} };

export async function onJobButton(ctx: DiscordContext, i: ButtonInteraction): Promise<void> {
  const parsed = parseActionId(i.customId);
  const actor = { ...originOf(i), moderator: isModerator(i) };
  if (parsed?.action === 'remix') {
    // A modal must be the first answer, so no defer: the parent's prompt is one Redis read away.
    try {
      const outcome = await ctx.core.action(i.customId, actor, nowhere);
      if (outcome.kind === 'remix_form') await i.showModal(remixModal(i.customId, outcome.prompt));
    } catch (error) {
      await tellError(ctx, i, error);
    }
    return;
  }
  if (parsed?.action === 'cancel') {
    await deferPrivate(ctx, i);
    try {
      const outcome = await ctx.core.action(i.customId, actor, nowhere);
      if (outcome.kind === 'cancelled') await tellPrivately(ctx, i, renderCancelOutcome(outcome.outcome));
    } catch (error) {
      await tellError(ctx, i, error);
    }
    return;
  }
  if (parsed?.action === 'timelapse') {
    await deferPublic(ctx, i);
    try {
      const outcome = await ctx.core.action(i.customId, actor, nowhere);
      if (outcome.kind === 'timelapse') await postTimelapse(ctx, i, outcome.blob, outcome.parent);
    } catch (error) {
      await tellError(ctx, i, error);
    }
    return;
  }
  await startFollowUp(ctx, i, actor);
}

/** Re-roll, Variations, Continue, and Remix once its form is sent: a new job in a new reply. */
async function startFollowUp(
  ctx: DiscordContext,
  i: ButtonInteraction | ModalSubmitInteraction,
  actor: ReturnType<typeof originOf> & { moderator: boolean },
  input: { prompt?: string } = {},
): Promise<void> {
  await deferPublic(ctx, i);
  const address = addressOf(ctx, i);
  const surface = ctx.surface(address);
  try {
    const outcome = await ctx.core.action(i.customId, actor, surface, input, { reply: { ...address } });
    if (outcome.kind === 'started') ctx.track(outcome.run, surface);
  } catch (error) {
    surface.dispose();
    await tellError(ctx, i, error);
  }
}

export async function onRemixSubmit(ctx: DiscordContext, i: ModalSubmitInteraction): Promise<void> {
  const prompt = i.fields.getTextInputValue(ComponentIds.remixPrompt);
  await startFollowUp(ctx, i, { ...originOf(i), moderator: isModerator(i) }, { prompt });
}

async function postTimelapse(
  ctx: DiscordContext,
  i: ButtonInteraction,
  blob: string,
  parent: JobRef<'imagine'>,
): Promise<void> {
  const stored = await ctx.services.blobs.get(blob);
  const [data, status] = await Promise.all([
    ctx.services.jobs.data(parent),
    ctx.services.jobs.status(parent),
  ]);
  const safety = status.state === 'completed' ? status.result.safety : undefined;
  const mode = await ctx.services.settings.safetyMode('discord', i.guildId ?? undefined);
  const address = addressOf(ctx, i);
  const settings = await ctx.services.settings.workspace('discord', i.guildId ?? undefined);
  const presentation = safetyPresentation(safety, mode, {
    allowsFlagged: address.ageRestricted === true && settings.allowFlaggedInAgeRestricted === true,
  });
  if (presentation === 'withhold') {
    await tellPrivately(ctx, i, safetyNote('withhold') ?? '');
    return;
  }
  if (!stored) {
    await tellError(ctx, i, new BlobMissingError(blob));
    return;
  }
  const fitted = await fitMedia(new Uint8Array(stored.bytes), stored.contentType, i.attachmentSizeLimit, {
    animated: true,
    what: 'timelapse',
  });
  await editReply(
    ctx,
    i,
    timelapseMessage({
      prompt: data?.prompt,
      ...(fitted.ok
        ? {
            media: {
              name: `timelapse.${fitted.media.ext}`,
              data: fitted.media.data,
              contentType: fitted.media.contentType,
              spoiler: presentation === 'spoiler',
            },
          }
        : {}),
      notes: fitted.ok ? [] : [fitted.note],
    }),
  );
}

/** /queue: the person's jobs in flight (from Redis, so every bot process sees the same list). */
export async function onQueue(ctx: DiscordContext, i: RepliableInteraction): Promise<void> {
  await deferPrivate(ctx, i);
  const entries = await ctx.services.runner.inflightOf('discord', i.user.id);
  const lines: string[] = [];
  for (const entry of entries.slice(0, 15)) {
    const [status, data] = await Promise.all([
      ctx.services.jobs.status(entry.jobId).catch(() => undefined),
      entry.jobId.startsWith('imagine:')
        ? ctx.services.jobs.data(entry.jobId as JobRef<'imagine'>).catch(() => undefined)
        : undefined,
    ]);
    if (!status) continue;
    const view = viewOf(entry.jobId, status);
    const prompt = data?.prompt ? truncateFor(escapeFor('discord', data.prompt), 80) : entry.jobId;
    const address = replyAddressSchema.safeParse(entry.reply);
    const link =
      address.success && address.data.messageId
        ? ` · [open](${jumpLink(address.data, address.data.messageId)})`
        : '';
    const state = 'text' in view ? view.text : '';
    lines.push(`• **${prompt}** — ${state}${link}`);
  }
  await editReply(ctx, i, queueMessage(lines.length === 0 ? [] : [renderQueueTitle(lines.length), ...lines]));
}
