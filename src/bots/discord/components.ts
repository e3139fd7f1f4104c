// The core's views drawn as Discord messages: Components V2 (container, text display, media gallery,
// buttons) for a job's message, plain ephemeral text for refusals, the remix modal, /whatis, /search
// and /queue replies. Pure: views and already-loaded files in, REST bodies out; nothing here talks to
// Discord, so every shape is unit-tested.
import {
  ActionRowBuilder,
  ButtonBuilder,
  ButtonStyle,
  ContainerBuilder,
  MediaGalleryBuilder,
  MediaGalleryItemBuilder,
  MessageFlags,
  ModalBuilder,
  type RawFile,
  SeparatorBuilder,
  TextDisplayBuilder,
  TextInputBuilder,
  TextInputStyle,
} from 'discord.js';
import { jobLimits } from '../../shared/jobs.js';
import { actionId, actionLabels, CONTINUE_STEPS, stepsAction } from '../core/actions.js';
import { escapeFor, stripControls, truncateFor } from '../core/escape.js';
import type { JobRef } from '../core/job-status.js';
import { formatLoss, renderLabels, renderSearchSummary } from '../core/render.js';
import type { DoneView, FailedView, QueuedView, RunningView, SafetyPresentation } from '../core/view.js';
import type { OutgoingMessage } from './reply-target.js';

/** Custom ids of this adapter's own components (the job buttons use the core's `vq1:` ids). */
export const ComponentIds = {
  share: 'vqd:share',
  remixPrompt: 'prompt',
} as const;

/** A file to attach (`attachment://name`), shown in a media gallery. */
export interface Media {
  name: string;
  data: Uint8Array;
  contentType: string;
  spoiler?: boolean;
  /** Alt text. */
  description?: string;
}

const V2 = MessageFlags.IsComponentsV2;
const PROMPT_CHARS = 300;

/** A prompt as a bold line: escaped (no mentions, no markdown of its own), shortened. */
export function promptLine(prompt: string | undefined): string | undefined {
  if (prompt === undefined || prompt.trim() === '') return undefined;
  return `**${truncateFor(escapeFor('discord', prompt), PROMPT_CHARS)}**`;
}

/** A Discord timestamp that every reader sees in their own time zone (`in 2 minutes`). */
export function relativeTime(epochMs: number): string {
  return `<t:${Math.round(epochMs / 1000)}:R>`;
}

/** The status line of a job in the queue or running; an ETA becomes a relative timestamp. */
export function statusLine(view: QueuedView | RunningView, nowMs: number): string {
  if (view.state === 'running' && view.step !== undefined && view.steps !== undefined) {
    const parts = [`Step ${view.step}/${view.steps}`];
    if (view.loss !== undefined && Number.isFinite(view.loss)) parts.push(`loss ${formatLoss(view.loss)}`);
    if (view.etaSeconds !== undefined && view.step < view.steps)
      parts.push(`done ${relativeTime(nowMs + view.etaSeconds * 1000)}`);
    return parts.join(' · ');
  }
  return view.text;
}

function fileName(media: Media): string {
  // Discord blurs an attachment whose name starts with SPOILER_, also where galleries are not drawn.
  return media.spoiler && !media.name.startsWith('SPOILER_') ? `SPOILER_${media.name}` : media.name;
}

/** Files, the `attachments` list that replaces the message's old ones, and the gallery. */
function withMedia(media: readonly Media[]): {
  files: RawFile[];
  attachments: { id: number; filename: string; description?: string }[];
  gallery?: MediaGalleryBuilder;
} {
  const files = media.map((m) => ({
    name: fileName(m),
    data: Buffer.from(m.data),
    contentType: m.contentType,
  }));
  const attachments = media.map((m, i) => ({
    id: i,
    filename: fileName(m),
    ...(m.description === undefined ? {} : { description: m.description }),
  }));
  if (media.length === 0) return { files, attachments };
  const gallery = new MediaGalleryBuilder().addItems(
    media.map((m) => {
      const item = new MediaGalleryItemBuilder().setURL(`attachment://${fileName(m)}`);
      if (m.spoiler) item.setSpoiler(true);
      if (m.description !== undefined) item.setDescription(m.description.slice(0, 1024));
      return item;
    }),
  );
  return { files, attachments, gallery };
}

function text(content: string): TextDisplayBuilder {
  return new TextDisplayBuilder().setContent(content.slice(0, 4000));
}

/** Small grey lines under a message (`-#` subtext). */
function notes(lines: readonly string[]): TextDisplayBuilder | undefined {
  const kept = lines.filter((l) => l.trim() !== '');
  return kept.length === 0 ? undefined : text(kept.map((l) => `-# ${l}`).join('\n'));
}

function v2(components: unknown[], files: RawFile[], attachments: unknown[]): OutgoingMessage {
  return {
    body: {
      flags: V2,
      components: components.map((c) => (c as { toJSON(): unknown }).toJSON()),
      attachments,
    },
    files,
  };
}

export interface ProgressInput {
  view: QueuedView | RunningView;
  prompt?: string | undefined;
  preview?: Media | undefined;
  notes?: readonly string[];
  nowMs: number;
}

/** A job waiting or running: prompt, status (ETA as a relative time), the latest preview, Cancel. */
export function progressMessage(input: ProgressInput): OutgoingMessage {
  const { view } = input;
  const { files, attachments, gallery } = withMedia(input.preview ? [input.preview] : []);
  const container = new ContainerBuilder();
  const head = [promptLine(input.prompt), statusLine(view, input.nowMs)].filter((l) => l !== undefined);
  container.addTextDisplayComponents(text(head.join('\n')));
  if (gallery) container.addMediaGalleryComponents(gallery);
  const small = notes(input.notes ?? []);
  if (small) container.addTextDisplayComponents(small);
  const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
    new ButtonBuilder()
      .setCustomId(actionId('cancel', view.jobId))
      .setLabel('Cancel')
      .setStyle(ButtonStyle.Danger),
  );
  return v2([container, row], files, attachments);
}

/** Which follow-ups a finished image offers: those whose saved state exists and may be shown. */
export function finalActions(view: DoneView, presentation: SafetyPresentation): string[] {
  const done = view.imagine;
  const ids = [actionId('reroll', view.jobId)];
  if (done?.latentBlob !== undefined) {
    ids.push(
      actionId('variations', view.jobId),
      actionId(stepsAction(done.drawer), view.jobId),
      actionId('remix', view.jobId),
    );
  }
  // A timelapse shows the flagged picture too, so it goes where the picture goes.
  if (done?.timelapseBlob !== undefined && presentation !== 'withhold')
    ids.push(actionId('timelapse', view.jobId));
  return ids;
}

const BUTTON_LABELS: Readonly<Record<string, string>> = {
  ...actionLabels,
  continue: `${actionLabels.continue} (+${CONTINUE_STEPS})`,
  refine: `${actionLabels.refine} (+${CONTINUE_STEPS} VQGAN+CLIP)`,
};

export interface FinalInput {
  view: DoneView;
  prompt?: string | undefined;
  /** The image, absent when withheld or when it could not fit. */
  image?: Media | undefined;
  presentation: SafetyPresentation;
  notes?: readonly string[];
}

/** The finished image: gallery, prompt and caption, notes, and the follow-up buttons. */
export function finalMessage(input: FinalInput): OutgoingMessage {
  const { view } = input;
  const shown = input.presentation === 'withhold' ? undefined : input.image;
  const image = shown && input.presentation === 'spoiler' ? { ...shown, spoiler: true } : shown;
  const { files, attachments, gallery } = withMedia(image ? [image] : []);
  const container = new ContainerBuilder();
  if (gallery) container.addMediaGalleryComponents(gallery);
  const head = [promptLine(input.prompt), view.text].filter((l) => l !== undefined);
  container.addTextDisplayComponents(text(head.join('\n')));
  const small = notes(input.notes ?? []);
  if (small) container.addTextDisplayComponents(small);
  const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
    finalActions(view, input.presentation).map((id) => {
      const action = id.split(':')[1] ?? '';
      return new ButtonBuilder()
        .setCustomId(id)
        .setLabel(BUTTON_LABELS[action] ?? action)
        .setStyle(action === 'reroll' ? ButtonStyle.Primary : ButtonStyle.Secondary);
    }),
  );
  return v2([container, row], files, attachments);
}

/** A job that failed or was cancelled: its message says so in place of the progress. */
export function failedMessage(input: {
  view: FailedView;
  prompt?: string | undefined;
  jobId?: JobRef;
}): OutgoingMessage {
  const container = new ContainerBuilder();
  const head = [promptLine(input.prompt), input.view.cancelled ? 'Cancelled.' : input.view.text].filter(
    (l) => l !== undefined,
  );
  container.addTextDisplayComponents(text(head.join('\n')));
  const components: unknown[] = [container];
  const jobId = input.jobId ?? input.view.jobId;
  // Trying again is one click after a failure; after a cancel the person meant to stop.
  if (jobId?.startsWith('imagine:') && !input.view.cancelled) {
    components.push(
      new ActionRowBuilder<ButtonBuilder>().addComponents(
        new ButtonBuilder()
          .setCustomId(actionId('reroll', jobId))
          .setLabel('Try again')
          .setStyle(ButtonStyle.Secondary),
      ),
    );
  }
  return v2(components, [], []);
}

/** What the interaction's reply says once its job goes on elsewhere. */
export function movedMessage(input: {
  prompt?: string | undefined;
  link: string;
  where: 'channel' | 'dm';
}): OutgoingMessage {
  const where =
    input.where === 'dm'
      ? `This is taking longer than Discord lets me edit this reply, so it goes on in a direct message: ${input.link}`
      : `This is taking longer than Discord lets me edit this reply, so it goes on here: ${input.link}`;
  const head = [promptLine(input.prompt), where].filter((l) => l !== undefined);
  return v2([new ContainerBuilder().addTextDisplayComponents(text(head.join('\n')))], [], []);
}

/** The timelapse of a finished job, or the sentence saying why it is not attached. */
export function timelapseMessage(input: {
  prompt?: string | undefined;
  media?: Media | undefined;
  notes?: readonly string[];
}): OutgoingMessage {
  const { files, attachments, gallery } = withMedia(input.media ? [input.media] : []);
  const container = new ContainerBuilder();
  if (gallery) container.addMediaGalleryComponents(gallery);
  const head = ['Timelapse', promptLine(input.prompt)].filter((l) => l !== undefined);
  container.addTextDisplayComponents(text(head.join(' · ')));
  const small = notes(input.notes ?? []);
  if (small) container.addTextDisplayComponents(small);
  return v2([container], files, attachments);
}

/** A refusal or an answer only the person sees, in plain words. */
export function ephemeralText(content: string): OutgoingMessage {
  return { body: { content: content.slice(0, 2000), flags: MessageFlags.Ephemeral }, files: [] };
}

/** The Remix form: the parent's prompt, ready to edit. Its custom id is the button's (`vq1:remix:...`). */
export function remixModal(customId: string, prompt: string): ModalBuilder {
  const input = new TextInputBuilder()
    .setCustomId(ComponentIds.remixPrompt)
    .setStyle(TextInputStyle.Paragraph)
    .setRequired(true)
    .setMaxLength(jobLimits.promptChars)
    .setValue(prompt.slice(0, jobLimits.promptChars));
  return new ModalBuilder()
    .setCustomId(customId)
    .setTitle('Remix this image')
    .addLabelComponents((label) =>
      label
        .setLabel('Prompt')
        .setDescription('The new prompt, painted from this image')
        .setTextInputComponent(input),
    );
}

/**
 * Text for a code block: nothing inside can close it (backticks become a look-alike) and controls
 * are gone. Markdown escapes would show as backslashes there, so escapeFor is not used.
 */
export function codeBlockText(value: string): string {
  return stripControls(value).replace(/`/g, '\u02cb');
}

/** /whatis and "What is this?": the labels as bars in a code block, and a Share button. */
export function whatisMessage(input: {
  labels: readonly { label: string; prob: number }[];
  fileName?: string | undefined;
  share: boolean;
}): OutgoingMessage {
  const title = input.fileName
    ? `**What is this?** ${truncateFor(escapeFor('discord', input.fileName), 100)}`
    : '**What is this?**';
  const content = `${title}\n\`\`\`\n${codeBlockText(renderLabels(input.labels))}\n\`\`\``;
  const body: Record<string, unknown> = { content: content.slice(0, 2000) };
  if (input.share) {
    body.components = [
      new ActionRowBuilder<ButtonBuilder>()
        .addComponents(
          new ButtonBuilder()
            .setCustomId(ComponentIds.share)
            .setLabel('Share in the channel')
            .setStyle(ButtonStyle.Secondary),
        )
        .toJSON(),
    ];
  }
  return { body, files: [] };
}

/** What a shared /whatis reads in the channel. */
export function sharedWhatis(content: string, userId: string): OutgoingMessage {
  // `<@id>` renders as a name; allowed_mentions (set on every message) keeps it from pinging.
  return { body: { content: `${content}\n-# Shared by <@${userId}>`.slice(0, 2000) }, files: [] };
}

export interface SearchHitView {
  /** A fresh CDN URL of the attachment. */
  url: string;
  /** The jump link to its message. */
  link: string;
  score: number;
  spoiler?: boolean;
  duplicates?: number;
}

/** Search results: a summary, the images as a gallery (up to 10), each with its jump link. */
export function searchMessage(input: {
  query?: string | undefined;
  hits: readonly SearchHitView[];
  lowConfidence?: boolean | undefined;
  notes?: readonly string[];
}): OutgoingMessage {
  const hits = input.hits.slice(0, 10);
  const container = new ContainerBuilder();
  const title = input.query
    ? `**Search:** ${truncateFor(escapeFor('discord', input.query), 200)}`
    : '**Similar images**';
  const summary = renderSearchSummary({ hits, ...(input.lowConfidence ? { lowConfidence: true } : {}) });
  container.addTextDisplayComponents(text(`${title}\n${summary}`));
  if (hits.length > 0) {
    container.addMediaGalleryComponents(
      new MediaGalleryBuilder().addItems(
        hits.map((h, i) => {
          const item = new MediaGalleryItemBuilder().setURL(h.url).setDescription(`Match ${i + 1}`);
          if (h.spoiler) item.setSpoiler(true);
          return item;
        }),
      ),
    );
    const links = hits.map(
      (h, i) =>
        `${i + 1}. [jump to message](${h.link}) · ${h.score.toFixed(3)}${h.duplicates ? ` (+${h.duplicates} similar)` : ''}`,
    );
    container.addSeparatorComponents(new SeparatorBuilder().setDivider(true));
    container.addTextDisplayComponents(text(links.join('\n')));
  }
  const small = notes(input.notes ?? []);
  if (small) container.addTextDisplayComponents(small);
  // Sent as the edit of an ephemeral defer: the defer decided who sees it.
  return v2([container], [], []);
}

/** /queue: one line per job, or a sentence when there is none. */
export function queueMessage(lines: readonly string[]): OutgoingMessage {
  const content = lines.length === 0 ? 'You have no pictures in progress.' : lines.join('\n');
  return ephemeralText(content);
}
