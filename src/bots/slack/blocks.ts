// Block Kit drawn from the core's views: a job's message while it runs and when it ends, /whatis
// labels, search hits, the backfill note and the App Home. Pure (plain data in, blocks out) and the
// only place Slack markup is written; every user string passes escapeFor('slack', ...) here.
import type { types } from '@slack/bolt';
import { actionLabels, type ImagineAction, stepsAction } from '../core/actions.js';
import { escapeFor, truncateFor } from '../core/escape.js';
import type { JobRef } from '../core/job-status.js';
import { renderLabels, renderSearchSummary, renderStaleNote } from '../core/render.js';
import type { DoneView, FailedView, QueuedView, RunningView, SafetyPresentation } from '../core/view.js';
import { safetyNote } from '../core/view.js';

export type Block = types.KnownBlock;

/** What chat.postMessage / chat.update / respond take: blocks plus the notification text. */
export interface MessageBody {
  text: string;
  blocks: Block[];
}

/** Who asked for what: the top line of a job's message. */
export interface JobHeader {
  prompt: string;
  user: string;
}

/** Block Kit caps a section's text at 3000 characters; prompts are capped well below. */
const PROMPT_SHOWN = 300;
const ALT_TEXT = 200;

const esc = (text: string) => escapeFor('slack', text);

/**
 * render.ts's sentences keep their own markup (`--seed` in backticks) but can quote what a person
 * typed (a prompt segment): entities and @-mentions are neutralised, formatting is left alone.
 */
export function sentence(text: string): string {
  return escapeFor('cli', text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/@(?=channel|here|everyone)/gi, '@\u200b');
}
const mrkdwn = (text: string): types.MrkdwnElement => ({ type: 'mrkdwn', text });
const plain = (text: string): types.PlainTextElement => ({ type: 'plain_text', text, emoji: true });
const section = (text: string): types.SectionBlock => ({ type: 'section', text: mrkdwn(text) });
const context = (text: string): types.ContextBlock => ({ type: 'context', elements: [mrkdwn(text)] });

function headerLine(header: JobHeader): string {
  return `*${truncateFor(esc(header.prompt), PROMPT_SHOWN)}*\n<@${header.user}>`;
}

/** Alt text is plain text (no markup to escape) but still must not carry controls. */
function altText(prompt: string): string {
  return truncateFor(escapeFor('cli', prompt), ALT_TEXT) || 'image';
}

function button(
  actionId: string,
  label: string,
  style?: 'primary' | 'danger',
  value: string = actionId,
): types.Button {
  return { type: 'button', action_id: actionId, text: plain(label), value, ...(style ? { style } : {}) };
}

export { actionLabels };

/** The buttons under a finished image, in the order people use them ('continue' is Refine on a DALL-E one). */
export const finishedActions = [
  'reroll',
  'variations',
  'continue',
  'timelapse',
] as const satisfies readonly ImagineAction[];

/** The id of the "Show image" button on a withheld, flagged result (not a core action). */
export const SHOW_IMAGE_PREFIX = 'vqs:show:';
export const showImageId = (jobId: JobRef) => `${SHOW_IMAGE_PREFIX}${jobId}`;

/** While queued or running: the header, the status line, the latest preview, and Cancel. */
export function progressMessage(
  header: JobHeader,
  view: QueuedView | RunningView,
  options: {
    previewFile?: string | undefined;
    /** A URL Slack downloads the preview from (a presigned blob URL); wins over previewFile. */
    previewUrl?: string | undefined;
    actionId: (action: ImagineAction) => string;
  },
): MessageBody {
  const blocks: Block[] = [section(`${headerLine(header)} · ${esc(view.text)}`)];
  if (options.previewUrl !== undefined) {
    blocks.push({
      type: 'image',
      image_url: options.previewUrl,
      alt_text: `Preview: ${altText(header.prompt)}`,
    });
  } else if (options.previewFile !== undefined) {
    blocks.push({
      type: 'image',
      slack_file: { id: options.previewFile },
      alt_text: `Preview: ${altText(header.prompt)}`,
    });
  }
  blocks.push({
    type: 'actions',
    elements: [button(options.actionId('cancel'), actionLabels.cancel, 'danger')],
  });
  return { text: `${truncateFor(esc(header.prompt), 100)}: ${esc(view.text)}`, blocks };
}

/** Slack has no spoiler: a flagged image is kept out of the channel and sent to whoever asks. */
export const HIDDEN_IMAGE_NOTE =
  'The safety check flagged this image, so it is not shown in the channel. Press *Show image* to get it in a direct message.';

export interface FinalOptions {
  /** The uploaded, shared file to show; absent when withheld or when the share never came. */
  file?: string | undefined;
  presentation: SafetyPresentation;
  actionId: (action: ImagineAction) => string;
  /** Timelapse is offered only when the worker kept one. */
  hasTimelapse: boolean;
}

/** The result: the caption, the image (or the safety note), and the follow-up buttons. */
export function finalMessage(header: JobHeader, view: DoneView, options: FinalOptions): MessageBody {
  const blocks: Block[] = [section(`${headerLine(header)} · ${esc(view.text)}`)];
  if (options.presentation === 'show' && options.file !== undefined) {
    blocks.push({ type: 'image', slack_file: { id: options.file }, alt_text: altText(header.prompt) });
  } else if (options.presentation === 'spoiler') {
    blocks.push(context(HIDDEN_IMAGE_NOTE));
  } else if (options.presentation === 'withhold') {
    blocks.push(context(safetyNote('withhold') ?? ''));
  }
  const buttons: types.Button[] = finishedActions
    .filter((a) => a !== 'timelapse' || options.hasTimelapse)
    .map((a) => (a === 'continue' ? stepsAction(view.imagine?.drawer) : a))
    .map((a) => button(options.actionId(a), actionLabels[a], a === 'reroll' ? 'primary' : undefined));
  if (options.presentation === 'spoiler') buttons.push(button(showImageId(view.jobId), 'Show image'));
  blocks.push({ type: 'actions', elements: buttons });
  return { text: `${truncateFor(esc(header.prompt), 100)}: ${esc(view.text)}`, blocks };
}

/** A job that failed or was cancelled: the header and the sentence, no buttons. */
export function failedMessage(header: JobHeader, view: FailedView): MessageBody {
  return {
    text: `${truncateFor(esc(header.prompt), 100)}: ${sentence(view.text)}`,
    blocks: [section(`${headerLine(header)} · ${sentence(view.text)}`)],
  };
}

/** An ephemeral answer of one sentence (render.ts's, already plain words). */
export function noticeMessage(text: string): MessageBody {
  const safe = sentence(text);
  return { text: safe, blocks: [section(safe)] };
}

/** /whatis: the labels as bars in a code block (they line up in monospace). */
export function labelsMessage(
  labels: readonly { label: string; prob: number }[],
  options: { fileName?: string | undefined } = {},
): MessageBody {
  const escaped = labels.map((l) => ({ label: esc(l.label), prob: l.prob }));
  const title =
    options.fileName === undefined
      ? '*What I see*'
      : `*What I see in ${truncateFor(esc(options.fileName), 80)}*`;
  const best = labels[0];
  return {
    text: best ? `${esc(best.label)} (${Math.round(best.prob * 100)}%)` : 'No labels.',
    blocks: [section(title), section(`\`\`\`${renderLabels(escaped)}\`\`\``)],
  };
}

export interface ShownHit {
  file: string;
  link: string | null;
  score: number;
  duplicates?: number | undefined;
  /** A file name to show (escaped here). */
  name?: string | undefined;
}

/** Search hits: the core's summary line, then each hit's image with its permalink. */
export function searchMessage(
  result: { lowConfidence?: boolean | undefined; staleImages?: number | undefined },
  hits: readonly ShownHit[],
  options: { query?: string | undefined; gone?: number } = {},
): MessageBody {
  const summary = renderSearchSummary({
    hits,
    ...(result.lowConfidence === undefined ? {} : { lowConfidence: result.lowConfidence }),
  });
  const title =
    options.query === undefined ? summary : `*${truncateFor(esc(options.query), 200)}*: ${summary}`;
  const blocks: Block[] = [section(title)];
  const stale = renderStaleNote(result.staleImages);
  if (stale !== undefined) blocks.push(context(stale));
  // 50 blocks a message: a header, a note, and two blocks per hit leave room for 20; k caps lower.
  for (const [i, hit] of hits.slice(0, 20).entries()) {
    blocks.push({
      type: 'image',
      slack_file: { id: hit.file },
      alt_text: hit.name === undefined ? `Match ${i + 1}` : altText(hit.name),
      title: plain(`${i + 1}. score ${hit.score.toFixed(3)}`),
    });
    const parts: string[] = [];
    if (hit.link !== null) parts.push(`<${hit.link}|Open the message>`);
    if (hit.name !== undefined) parts.push(truncateFor(esc(hit.name), 80));
    if (hit.duplicates) parts.push(`+${hit.duplicates} similar`);
    if (parts.length > 0) blocks.push(context(parts.join(' · ')));
  }
  return { text: summary, blocks };
}

export interface BackfillProgress {
  messages: number;
  images: number;
  failed: number;
  done: boolean;
  /** Waiting for Slack's history rate limit (the next page in about this many seconds). */
  waitingSeconds?: number | undefined;
}

/** The one channel message a backfill keeps up to date. */
export function backfillMessage(p: BackfillProgress): MessageBody {
  const images = `${p.images} ${p.images === 1 ? 'image' : 'images'}`;
  const messages = `${p.messages} ${p.messages === 1 ? 'message' : 'messages'}`;
  const failed = p.failed > 0 ? ` (${p.failed} could not be read)` : '';
  const text = p.done
    ? `Done indexing this channel's history: ${images} from ${messages}${failed}. \`/imagesearch\` finds them by words.`
    : `Indexing this channel's history for \`/imagesearch\`: ${images} from ${messages} so far${failed}.` +
      (p.waitingSeconds === undefined
        ? ''
        : ` Slack lets apps read history slowly; the next page comes in about ${Math.max(1, Math.round(p.waitingSeconds))} s.`);
  return { text, blocks: [section(text)] };
}

export interface HomeJob {
  jobId: JobRef;
  prompt: string;
  /** The status line (render.ts's words). */
  status: string;
  link?: string | undefined;
}

export interface HomeSettings {
  preset: string | undefined;
  safetyMode: 'off' | 'spoiler' | 'block';
  /** The deployment's default, shown as the "default" choice. */
  defaultSafetyMode: 'off' | 'spoiler' | 'block';
  presets: readonly string[];
}

export interface HomeInput {
  running: readonly HomeJob[];
  recent: readonly HomeJob[];
  /** A line on what the person may still start, when quotas are on. */
  quota?: string | undefined;
  /** Present for admins only. */
  settings?: HomeSettings | undefined;
  /** One line at the top (a setting saved, or why it was not). */
  notice?: string | undefined;
}

export const HOME_PRESET_ACTION = 'vqh:preset';
export const HOME_SAFETY_ACTION = 'vqh:safety';

function jobLine(job: HomeJob): string {
  const prompt = truncateFor(esc(job.prompt), 120);
  const shown = job.link === undefined ? `*${prompt}*` : `*<${job.link}|${prompt}>*`;
  return `${shown} · ${esc(job.status)}`;
}

const option = (value: string, text: string): types.PlainTextOption => ({ text: plain(text), value });

/** The App Home tab: your jobs, what you may still start, and the workspace settings for admins. */
export function homeView(input: HomeInput): types.HomeView {
  const blocks: Block[] = [];
  if (input.notice !== undefined) blocks.push(context(input.notice));
  blocks.push({ type: 'header', text: plain('Your images') });
  blocks.push(
    section(
      'Type `/imagine a watercolor teacher` in a channel to paint, `/whatis` to ask what an image shows, and `/imagesearch a red bicycle` to find images posted in a channel.',
    ),
  );
  if (input.quota !== undefined) blocks.push(context(input.quota));
  blocks.push(section('*Running*'));
  if (input.running.length === 0) blocks.push(context('Nothing running.'));
  for (const job of input.running.slice(0, 10)) blocks.push(section(jobLine(job)));
  blocks.push(section('*Recent*'));
  if (input.recent.length === 0) blocks.push(context('No images yet.'));
  for (const job of input.recent.slice(0, 10)) blocks.push(section(jobLine(job)));
  const s = input.settings;
  if (s) {
    blocks.push({ type: 'divider' }, { type: 'header', text: plain('Workspace settings (admins)') });
    const presetOptions = [option('default', 'Default'), ...s.presets.map((p) => option(p, p))];
    const presetChosen = presetOptions.find((o) => o.value === (s.preset ?? 'default'));
    blocks.push({
      type: 'section',
      text: mrkdwn('*Preset* used when a person names none'),
      accessory: {
        type: 'static_select',
        action_id: HOME_PRESET_ACTION,
        options: presetOptions,
        ...(presetChosen ? { initial_option: presetChosen } : {}),
      },
    });
    const modeText: Record<HomeSettings['safetyMode'], string> = {
      off: 'Show every image',
      spoiler: 'Hide flagged images behind a button',
      block: 'Do not post flagged images',
    };
    const modes = (['off', 'spoiler', 'block'] as const).map((m) =>
      option(m, `${modeText[m]}${m === s.defaultSafetyMode ? ' (default)' : ''}`),
    );
    const modeChosen = modes.find((o) => o.value === s.safetyMode);
    blocks.push({
      type: 'section',
      text: mrkdwn('*Safety check*: what happens to images it flags'),
      accessory: {
        type: 'static_select',
        action_id: HOME_SAFETY_ACTION,
        options: modes,
        ...(modeChosen ? { initial_option: modeChosen } : {}),
      },
    });
  }
  return { type: 'home', blocks };
}

/** The quota line of the App Home, or undefined when no limit applies. */
export function quotaLine(
  limits: { concurrent: number; perWindow: number },
  usage: { inFlight: number; inWindow: number },
): string | undefined {
  const parts: string[] = [];
  if (limits.concurrent > 0)
    parts.push(`${Math.max(0, limits.concurrent - usage.inFlight)} of ${limits.concurrent} at a time`);
  if (limits.perWindow > 0)
    parts.push(`${Math.max(0, limits.perWindow - usage.inWindow)} of ${limits.perWindow} left this hour`);
  return parts.length === 0 ? undefined : `Images you can start now: ${parts.join(', ')}.`;
}
