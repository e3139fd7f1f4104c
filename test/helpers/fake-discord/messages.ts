// How a create or edit request turns into a message: which flags survive, which attachments are kept
// or added (Discord's `attachments` array semantics), and the draft the rules judge before anything is
// stored. Pure apart from the id generator.
import { MessageFlags } from 'discord-api-types/v10';
import { pngSize } from './cdn.js';
import type { Snowflakes } from './clock.js';
import type { RecordedFile } from './http.js';
import type { MessageDraft } from './rules.js';
import type { AttachmentState, MessageState } from './state.js';

/** Flags a create may set; Discord ignores the rest. EPHEMERAL only on interaction responses. */
const CREATE_FLAGS =
  MessageFlags.SuppressEmbeds |
  MessageFlags.SuppressNotifications |
  MessageFlags.IsComponentsV2 |
  MessageFlags.IsVoiceMessage;
/** Flags an edit may change. */
const EDIT_FLAGS = MessageFlags.SuppressEmbeds | MessageFlags.IsComponentsV2;

export interface MessageChange {
  draft: MessageDraft;
  /** The resulting attachment list; `added` are the ones not stored yet. */
  attachments: AttachmentState[];
  added: AttachmentState[];
  components: unknown[];
  embeds: MessageState['embeds'];
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/**
 * Applies a message body (JSON or payload_json) and uploaded files to `previous` (an edit) or to nothing
 * (a create). Attachments: without an `attachments` array a create adds every file and an edit appends them;
 * with one, it is the complete list: existing ids are kept, `id: n` picks `files[n]`, the rest is dropped.
 */
export function applyMessageBody(
  rawBody: unknown,
  files: readonly RecordedFile[],
  previous: MessageState | undefined,
  previousAttachments: readonly AttachmentState[],
  options: { ids: Snowflakes; channelId: string; allowEphemeral: boolean },
): MessageChange {
  const body = record(rawBody);
  const fromFile = (file: RecordedFile, meta: Record<string, unknown>): AttachmentState => {
    const size =
      file.contentType === 'image/png' || file.filename.endsWith('.png') ? pngSize(file.bytes) : undefined;
    return {
      id: options.ids.next(),
      filename: typeof meta.filename === 'string' ? meta.filename : file.filename,
      contentType: file.contentType,
      bytes: file.bytes,
      channelId: options.channelId,
      ...(typeof meta.description === 'string' ? { description: meta.description } : {}),
      ...(typeof meta.title === 'string' ? { title: meta.title } : {}),
      ...(size ? { width: size.width, height: size.height } : {}),
    };
  };
  let attachments: AttachmentState[];
  let added: AttachmentState[];
  if (Array.isArray(body.attachments)) {
    attachments = [];
    added = [];
    for (const entry of body.attachments.map(record)) {
      const id = entry.id === undefined ? undefined : String(entry.id);
      const kept = previousAttachments.find((a) => a.id === id);
      if (kept) {
        attachments.push(
          typeof entry.description === 'string' ? { ...kept, description: entry.description } : kept,
        );
        continue;
      }
      const file = files.find((f) => String(f.index) === id);
      if (file) {
        const attachment = fromFile(file, entry);
        attachments.push(attachment);
        added.push(attachment);
      }
    }
  } else {
    added = files.map((file) => fromFile(file, {}));
    attachments = [...(previous ? previousAttachments : []), ...added];
  }

  const content =
    'content' in body ? (typeof body.content === 'string' ? body.content : '') : (previous?.content ?? '');
  const embeds =
    'embeds' in body ? (Array.isArray(body.embeds) ? body.embeds : []) : (previous?.embeds ?? []);
  const components =
    'components' in body
      ? Array.isArray(body.components)
        ? body.components
        : []
      : (previous?.components ?? []);
  const sentFlags = typeof body.flags === 'number' ? body.flags : undefined;
  let flags: number;
  if (previous) {
    const kept = previous.flags & ~EDIT_FLAGS & ~MessageFlags.Loading;
    flags = kept | ((sentFlags ?? previous.flags) & EDIT_FLAGS);
  } else {
    const allowed = CREATE_FLAGS | (options.allowEphemeral ? MessageFlags.Ephemeral : 0);
    flags = (sentFlags ?? 0) & allowed;
  }
  return {
    draft: {
      content,
      embeds,
      components,
      flags,
      attachments,
      ...(Array.isArray(body.sticker_ids) ? { stickers: body.sticker_ids.length } : {}),
      ...(body.poll ? { poll: true } : {}),
    },
    attachments,
    added,
    components,
    embeds: embeds as MessageState['embeds'],
  };
}
