// The ReplySurface of a Slack job: one channel message posted on ack and edited with chat.update
// (never response_url: 5 uses in 30 minutes), within the workspace's edit budget. Previews are
// uploaded into the message's thread one at a time, shown once shared and deleted when replaced,
// or, with SLACK_PREVIEW_IMAGE_URLS and an S3 store, shown by a presigned `image_url` that Slack
// downloads itself (preview-urls.ts; uploads again if Slack cannot). The final image always goes
// into the thread as an upload, then the message shows it with its buttons.
import type { webApi } from '@slack/bolt';
import type { BlobStore } from '../../shared/blobs.js';
import type { Logger } from '../../shared/logger.js';
import type { ImagineAction } from '../core/actions.js';
import { safeFileName } from '../core/escape.js';
import type { JobRef } from '../core/job-status.js';
import type { RecentJobs } from '../core/recent-jobs.js';
import type { JobRunner, ReplySurface } from '../core/reply.js';
import type { DoneView, FailedView, QueuedView, RunningView, SafetyMode } from '../core/view.js';
import { safetyPresentation } from '../core/view.js';
import {
  failedMessage,
  finalMessage,
  type JobHeader,
  type MessageBody,
  noticeMessage,
  progressMessage,
} from './blocks.js';
import type { FileLedger } from './file-ledger.js';
import type { SlackFiles } from './files.js';
import {
  isImageUrlRefusal,
  PREVIEW_URL_SECONDS,
  type PreviewLink,
  type PreviewUrls,
  showableInBlocks,
} from './preview-urls.js';
import { retryAfterOf, type SlackClock, type UpdateBudget, withRetryAfter } from './rate-limits.js';
import { fromSlackError, slackErrorOf } from './slack-errors.js';

type WebClient = webApi.WebClient;

export interface SurfaceDeps {
  client: WebClient;
  files: SlackFiles;
  blobs: BlobStore;
  runner: JobRunner;
  budget: UpdateBudget;
  clock: SlackClock;
  recent: RecentJobs;
  ledger: FileLedger;
  logger: Logger;
  safetyMode(team: string): Promise<SafetyMode>;
  actionId(action: ImagineAction, jobId: JobRef): string;
  /** Least time between two preview images (each is an upload, a share and a delete). */
  previewIntervalMs: number;
  /** The adapter is closing: no new previews (the next process takes over the message). */
  closing: AbortSignal;
  /** Previews by presigned `image_url` instead of uploads, while on. @defaultValue uploads only */
  previewUrls?: PreviewUrls | undefined;
}

/** Where a job's message lives; saved in the in-flight entry so a restarted bot finds it. */
export interface SlackReply {
  team: string;
  channel: string;
  ts?: string | undefined;
  /** The preview file shown now (and the thread message sharing it), deleted once replaced. */
  preview?: { file: string; ts?: string | undefined } | undefined;
  /** The final image once uploaded, so a retried delivery does not upload it twice. */
  final?: { file: string; ts?: string | undefined } | undefined;
}

/** Reads a SlackReply back from an in-flight entry (JSON from Redis: trust nothing). */
export function parseReply(reply: Record<string, unknown>): SlackReply | undefined {
  const { team, channel, ts, preview, final } = reply;
  if (typeof team !== 'string' || typeof channel !== 'string') return undefined;
  const fileRef = (v: unknown) => {
    const r = v as { file?: unknown; ts?: unknown } | undefined;
    return typeof r?.file === 'string'
      ? { file: r.file, ...(typeof r.ts === 'string' ? { ts: r.ts } : {}) }
      : undefined;
  };
  return {
    team,
    channel,
    ...(typeof ts === 'string' ? { ts } : {}),
    ...(fileRef(preview) ? { preview: fileRef(preview) } : {}),
    ...(fileRef(final) ? { final: fileRef(final) } : {}),
  };
}

export interface SurfaceOptions {
  header: JobHeader;
  reply: SlackReply;
  /** A private answer to the requester (response_url for a command, chat.postEphemeral otherwise). */
  ephemeral(body: MessageBody): Promise<void>;
}

/** Tries of an edit that must land, each after the Retry-After of the 429 before it. */
const MUST_LAND_ATTEMPTS = 10;
export class SlackSurface implements ReplySurface {
  readonly #d: SurfaceDeps;
  readonly #header: JobHeader;
  readonly #ephemeral: (body: MessageBody) => Promise<void>;
  #reply: SlackReply;
  #jobId: JobRef | undefined;
  #lastText = '';
  /** The preview shown: its key and step (every preview of a job has the same key). */
  #previewShown: string | undefined;
  #previewAt = Number.NEGATIVE_INFINITY;
  /** The preview shown by URL (no file): the blob presigned, its URL and when it was signed. */
  #previewUrl: (PreviewLink & { at: number }) | undefined;
  /** The last JPEG copy written for this job (deleted when it ends). */
  #previewCopy: PreviewLink | undefined;
  #posting: Promise<void> | undefined;
  /** Why the first post failed (the job is then cancelled by the command); later calls do nothing. */
  postError: unknown;

  constructor(deps: SurfaceDeps, options: SurfaceOptions) {
    this.#d = deps;
    this.#header = options.header;
    this.#reply = { ...options.reply };
    this.#ephemeral = options.ephemeral;
  }

  get reply(): SlackReply {
    return this.#reply;
  }

  async ack(view: QueuedView | RunningView): Promise<void> {
    this.#jobId = view.jobId;
    await this.#ensurePosted(view);
  }

  async progress(view: QueuedView | RunningView): Promise<void> {
    this.#jobId = view.jobId;
    if (this.postError !== undefined) return;
    if (this.#reply.ts === undefined) return this.#ensurePosted(view);
    const wantsPreview =
      !this.#d.closing.aborted &&
      view.state === 'running' &&
      view.previewBlob !== undefined &&
      previewVersion(view) !== this.#previewShown &&
      this.#d.clock.now() - this.#previewAt >= this.#d.previewIntervalMs;
    const body = () => progressMessage(this.#header, view, this.#progressOptions());
    if (!wantsPreview) {
      if (body().text === this.#lastText) return;
      await this.#refreshPreviewUrl();
      await this.#update(body(), 'optional');
      return;
    }
    // A new preview costs an edit too: without a token the old one stays until the next chance.
    const blob = view.previewBlob;
    if (blob === undefined || !this.#d.budget.tryTake(this.#reply.team)) return;
    this.#previewShown = previewVersion(view);
    this.#previewAt = this.#d.clock.now();
    if (this.#d.previewUrls?.on && (await this.#showByUrl(blob, view.previewStep ?? 0, body))) return;
    // Uploads from here on (never on, or Slack could not download the URL): no image_url block.
    this.#previewUrl = undefined;
    const previous = this.#reply.preview;
    const next = await this.#share(blob, `preview-${safeFileName(this.#header.prompt, 'image', 60)}`);
    if (!next) return;
    if (this.#d.closing.aborted) {
      // Too late to show: the next process reads the reply address saved before this upload.
      await this.#d.files.remove(next.file, { channel: this.#reply.channel, ts: next.ts });
      return;
    }
    this.#reply = { ...this.#reply, preview: next };
    await this.#update(body(), 'taken');
    await this.#saveReply();
    if (previous)
      await this.#d.files.remove(previous.file, { channel: this.#reply.channel, ts: previous.ts });
  }

  async final(view: DoneView): Promise<void> {
    this.#jobId = view.jobId;
    if (this.postError !== undefined) return;
    await this.#ensurePosted();
    const imagine = view.imagine;
    const mode = await this.#d.safetyMode(this.#reply.team);
    const presentation = safetyPresentation(imagine?.safety, mode);
    if (imagine && presentation === 'show' && !this.#reply.final) {
      const shared = await this.#share(imagine.finalBlob, safeFileName(this.#header.prompt, 'image', 80));
      if (shared) {
        this.#reply = { ...this.#reply, final: shared };
        await this.#saveReply();
        await this.#d.ledger
          .record(this.#reply.team, {
            channel: this.#reply.channel,
            ts: shared.ts ?? this.#reply.ts ?? '',
            threadTs: this.#reply.ts,
            files: [{ id: shared.file, mimetype: 'image/png' }],
          })
          .catch(() => {});
      }
    }
    const body = finalMessage(this.#header, view, {
      file: this.#reply.final?.file,
      presentation,
      actionId: (a) => this.#d.actionId(a, view.jobId),
      hasTimelapse: imagine?.timelapseBlob !== undefined,
    });
    this.#previewUrl = undefined;
    await this.#update(body, 'must');
    await this.#dropPreview();
    await this.#forgetCopy();
  }

  async fail(view: FailedView): Promise<void> {
    if (this.postError !== undefined) return;
    if (this.#reply.ts === undefined) {
      // Refused before any message existed (quota, a bad flag): only the requester hears of it.
      await this.#ephemeral(noticeMessage(view.text));
      return;
    }
    this.#previewUrl = undefined;
    await this.#update(failedMessage(this.#header, view), 'must');
    await this.#dropPreview();
    await this.#forgetCopy();
  }

  /**
   * Shows a preview by a fresh presigned URL; false when the surface should upload it instead (URLs
   * are off, the URL is unusable, or Slack could not download it: then off for the whole process).
   */
  async #showByUrl(blob: string, step: number, body: () => MessageBody): Promise<boolean> {
    const urls = this.#d.previewUrls;
    if (urls === undefined) return false;
    let link: PreviewLink | undefined;
    try {
      // A name per step: every preview gets its own URL (Slack may cache one it has seen).
      link = await urls.linkOf(blob, `slack-preview:${this.#jobId ?? 'unknown'}:${step}`);
    } catch (error) {
      // A read or re-encode that failed (the store busy, an object caught mid-write): this preview is
      // skipped, not uploaded, and the next chance tries again.
      this.#previewShown = undefined;
      this.#d.logger.warn({ err: error, blob }, 'could not prepare a preview URL; skipping this preview');
      return true;
    }
    if (link === undefined) return false;
    const shownCopy = this.#previewCopy;
    if (link.copy) this.#previewCopy = link;
    const before = this.#previewUrl;
    this.#previewUrl = { ...link, at: this.#d.clock.now() };
    const { team, channel, ts } = this.#reply;
    if (ts === undefined) return true;
    const shown = body();
    try {
      await withRetryAfter(
        () => this.#d.client.chat.update({ channel, ts, text: shown.text, blocks: shown.blocks }),
        { clock: this.#d.clock, attempts: 1, onRateLimited: (s) => this.#d.budget.blocked(team, s) },
      );
      this.#lastText = shown.text;
    } catch (error) {
      if (isImageUrlRefusal(error)) {
        this.#previewUrl = undefined;
        urls.off('Slack answered invalid_blocks: it could not download the image_url', error);
        await this.#forgetCopy();
        if (shownCopy?.key !== link.key) await urls.forget(shownCopy);
        return false;
      }
      // Anything else drops this edit as a progress edit would be dropped.
      this.#previewUrl = before;
      const retryAfter = retryAfterOf(error);
      if (retryAfter !== undefined) this.#d.budget.blocked(team, retryAfter);
      this.#d.logger.debug({ err: error, channel, ts }, 'a preview edit was dropped');
      return true;
    }
    // The copy it replaces is not shown any more: one copy per job at a time.
    if (shownCopy !== undefined && shownCopy.key !== link.key) await urls.forget(shownCopy);
    // An uploaded preview shown before this one (another process, or before a restart) goes now.
    if (this.#reply.preview) {
      await this.#dropPreview();
      await this.#saveReply();
    }
    return true;
  }

  /** A text-only edit still carries the preview's URL, which Slack downloads again: keep it valid. */
  async #refreshPreviewUrl(): Promise<void> {
    const shown = this.#previewUrl;
    if (shown === undefined || this.#d.clock.now() - shown.at < (PREVIEW_URL_SECONDS * 1000) / 2) return;
    const url = await this.#d.previewUrls?.urlOf(shown.key).catch(() => undefined);
    this.#previewUrl = url === undefined ? undefined : { ...shown, url, at: this.#d.clock.now() };
  }

  #progressOptions() {
    const jobId = this.#jobId;
    return {
      previewUrl: this.#previewUrl?.url,
      previewFile: this.#reply.preview?.file,
      actionId: (a: ImagineAction) => (jobId === undefined ? a : this.#d.actionId(a, jobId)),
    };
  }

  /** Posts the job's message once (concurrent callers share the one post). */
  #ensurePosted(view?: QueuedView | RunningView): Promise<void> {
    if (this.#reply.ts !== undefined) return Promise.resolve();
    this.#posting ??= this.#post(view).catch((error: unknown) => {
      this.postError = fromSlackError(error);
      this.#d.logger.warn({ err: error, channel: this.#reply.channel }, 'could not post the job message');
    });
    return this.#posting;
  }

  async #post(view: QueuedView | RunningView | undefined): Promise<void> {
    const jobId = this.#jobId;
    const body = progressMessage(
      this.#header,
      view ?? { state: 'running', jobId: jobId ?? 'imagine:unknown', text: 'Starting…' },
      this.#progressOptions(),
    );
    const post = () =>
      this.#d.client.chat.postMessage({ channel: this.#reply.channel, text: body.text, blocks: body.blocks });
    let posted: Awaited<ReturnType<typeof post>>;
    try {
      posted = await post();
    } catch (error) {
      // A public channel the app was not invited to: join it (channels:join) and try once more.
      if (slackErrorOf(error) !== 'not_in_channel') throw error;
      // Private channels and DMs cannot be joined: the person has to invite the app.
      const joined = await this.#d.client.conversations
        .join({ channel: this.#reply.channel })
        .then(() => true)
        .catch(() => false);
      if (!joined) throw error;
      posted = await post();
    }
    if (posted.ts === undefined) throw new Error('chat.postMessage returned no ts');
    this.#reply = { ...this.#reply, ts: posted.ts, channel: posted.channel ?? this.#reply.channel };
    this.#lastText = body.text;
    await this.#saveReply();
    if (jobId !== undefined) {
      await this.#d.recent
        .add('slack', this.#reply.team, this.#header.user, {
          jobId,
          reply: { channel: this.#reply.channel, ts: posted.ts },
          at: Date.now(),
        })
        .catch((error: unknown) => this.#d.logger.warn({ err: error }, 'could not record a recent job'));
    }
  }

  /**
   * An edit. `optional` (progress) takes a budget token or is skipped; `taken` had its token taken
   * already; `must` (result, failure) waits in line for a token, waits out 429 and throws so the
   * runner retries.
   */
  async #update(body: MessageBody, kind: 'optional' | 'taken' | 'must'): Promise<void> {
    const { team, channel, ts } = this.#reply;
    if (ts === undefined) return;
    const mustLand = kind === 'must';
    if (kind === 'optional' && !this.#d.budget.tryTake(team)) return;
    // In line for the workspace's budget: many jobs ending at once go out at its rate.
    if (mustLand) await this.#d.budget.take(team);
    try {
      await withRetryAfter(
        () => this.#d.client.chat.update({ channel, ts, text: body.text, blocks: body.blocks }),
        {
          clock: this.#d.clock,
          // As long as Slack's Retry-After says (a 429 meets the budget only when another
          // process edits in this workspace too); the runner's own retries come after these.
          attempts: mustLand ? MUST_LAND_ATTEMPTS : 1,
          onRateLimited: (s) => this.#d.budget.blocked(team, s),
        },
      );
      this.#lastText = body.text;
    } catch (error) {
      const retryAfter = retryAfterOf(error);
      if (retryAfter !== undefined) this.#d.budget.blocked(team, retryAfter);
      // The preview's blob is gone or its URL went stale: the next edits go without it.
      if (isImageUrlRefusal(error)) this.#previewUrl = undefined;
      if (mustLand) throw error;
      this.#d.logger.debug({ err: error, channel, ts }, 'a progress edit was dropped');
    }
  }

  /** Uploads a blob into the message's thread and waits for the share; undefined when that fails. */
  async #share(blob: string, basename: string): Promise<{ file: string; ts?: string } | undefined> {
    const { channel, ts } = this.#reply;
    try {
      const found = await this.#d.blobs.get(blob);
      if (!found) return undefined;
      // An image block names it once shared: a WebP preview would be refused there, so it goes as JPEG.
      const stored = await showableInBlocks(found);
      const file = await this.#d.files.upload({
        bytes: stored.bytes,
        filename: `${basename}.${extensionOf(stored.contentType)}`,
        channel,
        threadTs: ts,
        title: this.#header.prompt.slice(0, 200),
      });
      const shareTs = await this.#d.files.waitShared(file, channel);
      if (shareTs === undefined) {
        // Never referenced in a block (Slack would refuse it); the thread still has it.
        this.#d.logger.warn({ file, channel }, 'an upload was not shared in time');
        return undefined;
      }
      return { file, ...(shareTs === '' ? {} : { ts: shareTs }) };
    } catch (error) {
      this.#d.logger.warn({ err: error, channel }, 'could not upload an image');
      return undefined;
    }
  }

  /** The job's JPEG preview copy is not shown any more: delete it (it would expire anyway). */
  async #forgetCopy(): Promise<void> {
    const copy = this.#previewCopy;
    this.#previewCopy = undefined;
    await this.#d.previewUrls?.forget(copy);
  }

  async #dropPreview(): Promise<void> {
    const preview = this.#reply.preview;
    if (!preview) return;
    this.#reply = { ...this.#reply, preview: undefined };
    await this.#d.files.remove(preview.file, { channel: this.#reply.channel, ts: preview.ts });
  }

  async #saveReply(): Promise<void> {
    if (this.#jobId === undefined) return;
    const { preview, final, ...rest } = this.#reply;
    await this.#d.runner
      .moveReply('slack', this.#jobId, {
        ...rest,
        ...(preview ? { preview } : {}),
        ...(final ? { final } : {}),
      })
      .catch((error: unknown) => this.#d.logger.warn({ err: error }, 'could not save the reply address'));
  }
}

/** `image/png` -> `png`: Slack picks the preview renderer by the file name. */
export function extensionOf(contentType: string): string {
  const sub = /^image\/([a-z0-9.+-]+)/i.exec(contentType)?.[1]?.toLowerCase();
  if (sub === 'jpeg') return 'jpg';
  return sub !== undefined && /^[a-z0-9]{2,5}$/.test(sub) ? sub : 'png';
}

/** Which preview a view shows: one key per job, so the step tells two previews apart. */
function previewVersion(view: RunningView): string | undefined {
  return view.previewBlob === undefined ? undefined : `${view.previewBlob}@${view.previewStep ?? ''}`;
}
