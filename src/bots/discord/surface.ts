// The ReplySurface of a Discord job: the deferred reply edited as the job goes (the runner throttles,
// latest wins), then the final Components V2 message. A job outliving its 15-minute interaction token
// moves to a channel message (the requester's DM where the bot cannot post) that the reply links to,
// and the new address is saved (runner.moveReply) so a restarted bot edits the right message.

import type { REST } from 'discord.js';
import type { BlobStore } from '../../shared/blobs.js';
import type { Logger } from '../../shared/logger.js';
import type { JobClient } from '../core/job-client.js';
import type { JobRef } from '../core/job-status.js';
import type { JobRunner, ReplySurface } from '../core/reply.js';
import type { SettingsStore } from '../core/settings.js';
import {
  type DoneView,
  type FailedView,
  type QueuedView,
  type RunningView,
  safetyNote,
  safetyPresentation,
} from '../core/view.js';
import {
  ephemeralText,
  failedMessage,
  finalMessage,
  type Media,
  movedMessage,
  progressMessage,
} from './components.js';
import { fitMedia } from './media.js';
import {
  isMessageGone,
  isTokenGone,
  jumpLink,
  type OutgoingMessage,
  type ReplyAddress,
  ReplyTarget,
} from './reply-target.js';

export interface SurfaceDeps {
  rest: REST;
  blobs: BlobStore;
  jobs: JobClient;
  runner: JobRunner;
  settings: SettingsStore;
  logger: Logger;
  now: () => number;
  /** Move this long before the token expires, so the reply can still link to the new message. */
  tokenMarginMs: number;
}

type Build = () => Promise<OutgoingMessage>;

export class DiscordSurface implements ReplySurface {
  readonly #d: SurfaceDeps;
  readonly #target: ReplyTarget;
  #jobId: JobRef | undefined;
  #prompt: string | undefined;
  #promptRead = false;
  #preview: { blob: string; step: number | undefined; media: Media | undefined; note?: string } | undefined;
  #lastBuild: Build | undefined;
  #finished = false;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** Message edits made (tests and the log count them). */
  edits = 0;

  constructor(deps: SurfaceDeps, address: ReplyAddress, jobId?: JobRef) {
    this.#d = deps;
    this.#target = new ReplyTarget(deps.rest, address, deps.now);
    this.#jobId = jobId;
  }

  get address(): ReplyAddress {
    return this.#target.address;
  }

  ack(view: QueuedView | RunningView): Promise<void> {
    return this.progress(view);
  }

  async progress(view: QueuedView | RunningView): Promise<void> {
    if (this.#finished) return;
    this.#jobId ??= view.jobId;
    this.#arm();
    const build: Build = async () =>
      progressMessage({
        view,
        prompt: await this.#promptOf(),
        preview: await this.#previewOf(view),
        notes: this.#preview?.note ? [this.#preview.note] : [],
        nowMs: this.#d.now(),
      });
    await this.#serial(() => this.#draw(build));
  }

  async final(view: DoneView): Promise<void> {
    this.#finish();
    this.#jobId ??= view.jobId;
    await this.#serial(() => this.#draw(() => this.#finalMessage(view)));
  }

  async fail(view: FailedView): Promise<void> {
    this.#finish();
    if (view.jobId === undefined && this.#jobId === undefined) {
      // Refused before any job existed (quota, a bad option, an attachment): only the person sees it.
      await this.#serial(() => this.#refuse(view.text));
      return;
    }
    this.#jobId ??= view.jobId;
    await this.#serial(() =>
      this.#draw(async () =>
        failedMessage({
          view,
          prompt: await this.#promptOf(),
          ...(this.#jobId ? { jobId: this.#jobId } : {}),
        }),
      ),
    );
  }

  /** Stops the expiry timer (the adapter closes, or the job is delivered elsewhere). */
  dispose(): void {
    this.#finish();
  }

  #finish(): void {
    this.#finished = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  // A job that sits in the queue sends no progress, so a timer moves it before its token expires.
  #arm(): void {
    const i = this.#target.address.interaction;
    if (this.#timer || !i || this.#target.address.moved) return;
    const wait = Math.max(0, i.expiresAt - this.#d.tokenMarginMs - this.#d.now());
    this.#timer = setTimeout(() => {
      const build = this.#lastBuild;
      if (!this.#finished && build) void this.#serial(() => this.#draw(build)).catch(() => {});
    }, wait);
    this.#timer.unref();
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(task, task);
    this.#chain = run.catch(() => {});
    return run;
  }

  async #promptOf(): Promise<string | undefined> {
    if (!this.#promptRead && this.#jobId?.startsWith('imagine:')) {
      const data = await this.#d.jobs.data(this.#jobId as JobRef<'imagine'>).catch(() => undefined);
      this.#prompt = data?.prompt;
      this.#promptRead = true;
    }
    return this.#prompt;
  }

  async #previewOf(view: QueuedView | RunningView): Promise<Media | undefined> {
    const blob = view.state === 'running' ? view.previewBlob : undefined;
    // Every preview of a job has one key: the step says whether the image behind it is new.
    const step = view.state === 'running' ? view.previewStep : undefined;
    if (blob === undefined || (blob === this.#preview?.blob && step === this.#preview.step))
      return this.#preview?.media;
    const stored = await this.#d.blobs.get(blob).catch(() => undefined);
    if (!stored) return this.#preview?.media;
    const fitted = await fitMedia(
      new Uint8Array(stored.bytes),
      stored.contentType,
      this.#target.address.sizeLimit,
      {
        what: 'preview',
      },
    );
    const media: Media | undefined = fitted.ok
      ? {
          name: `preview.${fitted.media.ext}`,
          data: fitted.media.data,
          contentType: fitted.media.contentType,
        }
      : undefined;
    this.#preview = { blob, step, media };
    return media;
  }

  async #finalMessage(view: DoneView): Promise<OutgoingMessage> {
    const done = view.imagine;
    const address = this.#target.address;
    const workspace = await this.#d.settings.workspace('discord', address.guildId).catch(() => ({}));
    const mode =
      (workspace as { safetyMode?: 'off' | 'spoiler' | 'block' }).safetyMode ??
      this.#d.settings.defaultSafetyMode;
    const allowsFlagged =
      address.ageRestricted === true &&
      (workspace as { allowFlaggedInAgeRestricted?: boolean }).allowFlaggedInAgeRestricted === true;
    const presentation = safetyPresentation(done?.safety, mode, { allowsFlagged });
    const lines: string[] = [];
    const note = safetyNote(presentation);
    if (note) lines.push(note);
    let image: Media | undefined;
    if (done && presentation !== 'withhold') {
      const stored = await this.#d.blobs.get(done.finalBlob);
      if (!stored) {
        lines.push('The image has expired from storage before it could be posted.');
      } else {
        const fitted = await fitMedia(new Uint8Array(stored.bytes), stored.contentType, address.sizeLimit);
        if (fitted.ok) {
          image = {
            name: `vqclip-${done.seed}.${fitted.media.ext}`,
            data: fitted.media.data,
            contentType: fitted.media.contentType,
            description: (await this.#promptOf())?.slice(0, 1000) ?? 'generated image',
          };
          if (fitted.media.note) lines.push(fitted.media.note);
        } else {
          lines.push(fitted.note);
        }
      }
    }
    return finalMessage({ view, prompt: await this.#promptOf(), image, presentation, notes: lines });
  }

  /** Draws on the reply, or on the message the job moved to; moves when the token will not do. */
  async #draw(build: Build): Promise<void> {
    this.#lastBuild = build;
    const target = this.#target;
    const address = target.address;
    if (!address.moved) {
      if (target.tokenAlive(this.#d.tokenMarginMs)) {
        try {
          const sent = await target.editOriginal(await build());
          this.edits++;
          if (address.messageId === undefined) await this.#learnMessageId(sent.id);
          return;
        } catch (error) {
          if (!isTokenGone(error) && !isMessageGone(error)) throw error;
          this.#d.logger.info(
            { jobId: this.#jobId, code: codeOf(error) },
            'the interaction reply is gone; moving on',
          );
          if (isTokenGone(error)) target.address = withoutToken(target.address);
        }
      }
      await this.#move(build);
      return;
    }
    try {
      await target.edit(address.channelId, address.messageId ?? '', await build());
      this.edits++;
    } catch (error) {
      // Someone deleted the message the job moved to: post it again rather than lose the result.
      if (!isMessageGone(error)) throw error;
      target.address = { ...withoutToken(address), moved: false };
      await this.#move(build);
    }
  }

  /**
   * The deferred reply's id arrives with its first edit: kept, and saved with the job's in-flight
   * entry so that a restarted bot can still link to the reply (a move's reference, /queue).
   */
  async #learnMessageId(messageId: string): Promise<void> {
    const target = this.#target;
    target.address = { ...target.address, messageId };
    if (this.#jobId === undefined) return;
    await this.#d.runner
      .moveReply('discord', this.#jobId, target.address)
      .catch((error: unknown) =>
        this.#d.logger.warn({ err: error, jobId: this.#jobId }, 'could not save the reply message id'),
      );
  }

  async #move(build: Build): Promise<void> {
    const target = this.#target;
    const from = target.address;
    const dm = !from.canPost;
    const channelId = dm ? await target.dmChannel(from.userId) : from.channelId;
    const message = await build();
    const linkBack = !dm && !target.tokenAlive() && from.messageId !== undefined && !from.moved;
    // When the reply can no longer be edited, the new message answers it: Discord shows the link.
    const body = linkBack
      ? { ...message.body, message_reference: { message_id: from.messageId, fail_if_not_exists: false } }
      : message.body;
    const posted = await target.post(channelId, { body, files: message.files });
    this.edits++;
    const next: ReplyAddress = {
      ...withoutToken(from),
      channelId,
      messageId: posted.id,
      moved: true,
      ...(from.messageId === undefined ? {} : { originalId: from.messageId }),
    };
    if (dm) delete next.guildId;
    if (target.tokenAlive()) {
      const link = jumpLink(next, posted.id);
      await target
        .editOriginal(movedMessage({ prompt: await this.#promptOf(), link, where: dm ? 'dm' : 'channel' }))
        .catch((error: unknown) =>
          this.#d.logger.warn({ err: error, jobId: this.#jobId }, 'could not link the reply'),
        );
    }
    target.address = next;
    this.#d.logger.info({ jobId: this.#jobId, channelId, dm }, 'job moved from its interaction to a message');
    if (this.#jobId !== undefined) {
      await this.#d.runner
        .moveReply('discord', this.#jobId, next)
        .catch((error: unknown) =>
          this.#d.logger.warn({ err: error, jobId: this.#jobId }, 'could not save the moved reply'),
        );
    }
  }

  async #refuse(sentence: string): Promise<void> {
    const target = this.#target;
    if (!target.tokenAlive()) {
      this.#d.logger.warn({ sentence }, 'a refusal could not be shown: the interaction expired');
      return;
    }
    // The deferred "thinking" reply is public; the refusal is for the person alone.
    await target.deleteOriginal().catch(() => {});
    if (target.followUpsLeft > 0) await target.followUp(ephemeralText(sentence));
    else await target.editOriginal({ body: { content: sentence }, files: [] });
  }
}

function withoutToken(address: ReplyAddress): ReplyAddress {
  const { interaction: _gone, ...rest } = address;
  return rest;
}

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown }).code;
}
