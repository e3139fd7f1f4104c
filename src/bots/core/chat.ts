// The flows every chat adapter runs, written once: an attachment becomes a blob (capped and
// host-restricted download), a command becomes a job (requests.ts), a button becomes a follow-up job
// (actions.ts), a posted image is indexed and a deleted message unindexed. Adapters call these with
// what they parsed from the platform's payload and draw what comes back.

import type { BlobStore } from '../../shared/blobs.js';
import { BlobMissingError, NotFoundError } from '../../shared/errors.js';
import type {
  ChannelScope,
  ClassifyResult,
  EmbedImageResult,
  JobData,
  JobKind,
  JobResult,
  Origin,
  Platform,
  SearchResult,
} from '../../shared/jobs.js';
import { quotaUserId, systemOrigin } from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import {
  actionId,
  followUpJob,
  type ImagineAction,
  parentOf,
  parseActionId,
  unknownButtonError,
} from './actions.js';
import { downloadImage, type IngestPolicy } from './ingest.js';
import type { CancelOutcome, JobClient } from './job-client.js';
import type { JobRef } from './job-status.js';
import type { Actor, JobRunner, ReplySurface, Run, SubmitRunOptions } from './reply.js';
import {
  type ImagineInput,
  imagineFromText,
  type RequestDefaults,
  searchFromText,
  searchRequest,
  whatisFromText,
  whatisRequest,
} from './requests.js';

/** An image the platform holds: what its payload says about an attachment or file. */
export interface RemoteImage {
  url: string;
  /** The file name, for replies (escaped by the adapter). */
  name?: string;
  /** The size the platform reported, checked before downloading. */
  size?: number;
  /** Headers the download needs (Slack's bot token for url_private). Only sent to allowed hosts. */
  headers?: Readonly<Record<string, string>>;
}

export interface ChatCoreOptions {
  platform: Platform;
  jobs: JobClient;
  /** Indexing and its deletes: no quota (nobody asked; a channel posted). @defaultValue `jobs` */
  indexJobs?: JobClient;
  blobs: BlobStore;
  runner: JobRunner;
  /** The platform's file hosts (ingestPolicy(platform, extraOrigin)). */
  ingest: IngestPolicy;
  /** Largest attachment. @defaultValue 25 MiB */
  maxImageBytes?: number;
  /** Largest width x height. @defaultValue 40 MP */
  maxImagePixels?: number;
  /** @defaultValue 20000 */
  downloadTimeoutMs?: number;
  /** Uploads live until their job has read them. @defaultValue 3600 */
  uploadTtlSeconds?: number;
  /** How long whatis, search and indexing wait for their job. @defaultValue 120000 */
  waitTimeoutMs?: number;
  /** Injectable for tests. @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  logger?: Logger;
}

export const DefaultChatCoreOptions = {
  maxImageBytes: 25 * 1024 * 1024,
  maxImagePixels: 40_000_000,
  downloadTimeoutMs: 20_000,
  uploadTtlSeconds: 3600,
  waitTimeoutMs: 120_000,
} as const satisfies Partial<ChatCoreOptions>;

export interface ImagineCommand {
  /** Slack's text (prompt with `--flags`), or a Discord prompt that may carry flags. */
  text: string;
  /** Options given as fields (Discord's own options). */
  fields?: Omit<ImagineInput, 'prompt' | 'initImage' | 'imagePrompts' | 'from'>;
  initImage?: RemoteImage;
  imagePrompt?: RemoteImage;
  defaults?: RequestDefaults;
}

/** What a button press came to. */
export type ActionOutcome =
  | { kind: 'started'; action: ImagineAction; run: Run }
  | { kind: 'cancelled'; outcome: CancelOutcome }
  /** Remix without a prompt yet: the adapter opens its form, prefilled with the parent's prompt. */
  | { kind: 'remix_form'; prompt: string; parent: JobRef<'imagine'> }
  | { kind: 'timelapse'; blob: string; parent: JobRef<'imagine'> };

export class ChatCore {
  readonly platform: Platform;
  readonly blobs: BlobStore;
  readonly jobs: JobClient;
  readonly runner: JobRunner;
  readonly #indexJobs: JobClient;
  readonly #o: { [K in keyof typeof DefaultChatCoreOptions]: number };
  readonly #ingest: IngestPolicy;
  readonly #fetch: typeof fetch | undefined;
  readonly #logger: Logger;

  constructor(options: ChatCoreOptions) {
    this.platform = options.platform;
    this.jobs = options.jobs;
    this.#indexJobs = options.indexJobs ?? options.jobs;
    this.blobs = options.blobs;
    this.runner = options.runner;
    this.#ingest = options.ingest;
    this.#fetch = options.fetch;
    this.#logger = options.logger ?? silentLogger;
    this.#o = {
      maxImageBytes: options.maxImageBytes ?? DefaultChatCoreOptions.maxImageBytes,
      maxImagePixels: options.maxImagePixels ?? DefaultChatCoreOptions.maxImagePixels,
      downloadTimeoutMs: options.downloadTimeoutMs ?? DefaultChatCoreOptions.downloadTimeoutMs,
      uploadTtlSeconds: options.uploadTtlSeconds ?? DefaultChatCoreOptions.uploadTtlSeconds,
      waitTimeoutMs: options.waitTimeoutMs ?? DefaultChatCoreOptions.waitTimeoutMs,
    };
  }

  /** Downloads an attachment (capped, from the platform's hosts only) into a blob; returns its key. */
  async ingest(image: RemoteImage, signal?: AbortSignal): Promise<string> {
    const downloaded = await downloadImage(image.url, {
      ...this.#ingest,
      maxBytes: this.#o.maxImageBytes,
      maxPixels: this.#o.maxImagePixels,
      timeoutMs: this.#o.downloadTimeoutMs,
      ...(image.headers === undefined ? {} : { headers: image.headers }),
      ...(image.size === undefined ? {} : { declaredSize: image.size }),
      ...(this.#fetch === undefined ? {} : { fetch: this.#fetch }),
      ...(signal === undefined ? {} : { signal }),
    });
    return this.blobs.put(downloaded.bytes, {
      contentType: downloaded.contentType,
      ttlSeconds: this.#o.uploadTtlSeconds,
    });
  }

  /**
   * /imagine: builds the job (flags, fields, attachments), submits and follows it on the surface.
   * Every refusal (bad option, attachment, quota) is drawn with surface.fail; nothing throws.
   */
  async imagine(
    command: ImagineCommand,
    origin: Origin,
    surface: ReplySurface,
    options: SubmitRunOptions = {},
  ): Promise<Run> {
    let data: JobData<'imagine'>;
    try {
      const [initImage, imagePrompt] = await Promise.all([
        command.initImage ? this.ingest(command.initImage) : undefined,
        command.imagePrompt ? this.ingest(command.imagePrompt) : undefined,
      ]);
      data = imagineFromText(
        command.text,
        origin,
        {
          ...command.fields,
          ...(initImage === undefined ? {} : { initImage }),
          ...(imagePrompt === undefined ? {} : { imagePrompts: [imagePrompt] }),
        },
        command.defaults ?? {},
      );
    } catch (error) {
      return this.runner.refuse(error, surface);
    }
    return this.runner.submit('imagine', data, surface, options);
  }

  /** /whatis and "What is this?": the top labels of an attachment. Throws a CodedError to render. */
  async whatis(image: RemoteImage, labels: string | undefined, origin: Origin): Promise<ClassifyResult> {
    const key = await this.ingest(image);
    try {
      const data = labels?.includes('--')
        ? whatisFromText(labels, key, origin)
        : whatisRequest({ image: key, labels }, origin);
      return await this.#wait(this.jobs, 'classify', data, origin);
    } finally {
      await this.blobs.delete(key).catch(() => {});
    }
  }

  /** /search and /imagesearch by words (`text` may carry `--k`), or by an example image. */
  async search(
    input: { text?: string; image?: RemoteImage; k?: number },
    scope: ChannelScope,
    origin: Origin,
  ): Promise<SearchResult> {
    if (input.image === undefined) {
      const data =
        input.k === undefined
          ? searchFromText(input.text ?? '', scope, origin)
          : searchRequest({ query: input.text, k: input.k }, scope, origin);
      return this.#wait(this.jobs, 'search', data, origin);
    }
    const key = await this.ingest(input.image);
    try {
      const data = searchRequest(
        { image: key, ...(input.k === undefined ? {} : { k: input.k }) },
        scope,
        origin,
      );
      return await this.#wait(this.jobs, 'search', data, origin);
    } finally {
      await this.blobs.delete(key).catch(() => {});
    }
  }

  /**
   * A button on a job's message (its id from actionId). Cancel checks the presser may; Remix without
   * a prompt asks for the form; Timelapse answers with the blob; the rest start a new job on `surface`.
   * Throws a CodedError (expired, not your job, unknown button) to render.
   */
  async action(
    customId: string,
    actor: Origin & Pick<Actor, 'moderator'>,
    surface: ReplySurface,
    input: { prompt?: string; steps?: number } = {},
    options: SubmitRunOptions = {},
  ): Promise<ActionOutcome> {
    const parsed = parseActionId(customId);
    if (!parsed) throw unknownButtonError();
    const { action, jobId } = parsed;
    await this.#sameWorkspace(jobId, actor);
    if (action === 'cancel') {
      const outcome = await this.runner.cancel(jobId, {
        platform: actor.platform,
        user: actor.user,
        ...(actor.moderator === undefined ? {} : { moderator: actor.moderator }),
      });
      return { kind: 'cancelled', outcome };
    }
    const parent = await parentOf(this.jobs, jobId);
    if (action === 'timelapse') {
      const blob = parent.result?.timelapseBlob;
      if (!parent.result)
        throw new NotFoundError('the job has no finished image yet', { reason: 'not_finished' });
      if (blob === undefined || !(await this.#exists(blob))) throw new BlobMissingError(blob ?? 'timelapse');
      return { kind: 'timelapse', blob, parent: jobId };
    }
    if (action === 'remix' && input.prompt === undefined) {
      return { kind: 'remix_form', prompt: parent.data.prompt, parent: jobId };
    }
    const { moderator: _m, ...origin } = actor;
    let data: JobData<'imagine'>;
    try {
      data = await followUpJob(parent, action, origin, jobId, (blob) => this.#exists(blob), input);
    } catch (error) {
      return { kind: 'started', action, run: await this.runner.refuse(error, surface) };
    }
    return { kind: 'started', action, run: await this.runner.submit('imagine', data, surface, options) };
  }

  /**
   * Indexes the images of a posted message for channel search. Each image is its own job; a failure
   * of one (not an image, too large) is logged and counted, not thrown.
   */
  async index(
    images: readonly { file: string; image: RemoteImage; link?: string }[],
    scope: ChannelScope,
    message: string,
    origin: Origin,
  ): Promise<{ indexed: EmbedImageResult[]; failed: number }> {
    const indexed: EmbedImageResult[] = [];
    let failed = 0;
    for (const { file, image, link } of images) {
      try {
        const key = await this.ingest(image);
        try {
          const data: JobData<'embed-image'> = {
            image: key,
            ...scope,
            message,
            file,
            ...(link === undefined ? {} : { link }),
            origin,
          };
          indexed.push(await this.#wait(this.#indexJobs, 'embed-image', data, origin));
        } finally {
          await this.blobs.delete(key).catch(() => {});
        }
      } catch (error) {
        failed++;
        this.#logger.warn({ err: error, ...scope, message, file }, 'could not index an image');
      }
    }
    return { indexed, failed };
  }

  /** Removes a message's images from the index (message deleted), or one file of it (edited away). */
  async unindex(scope: ChannelScope, message: string, file?: string): Promise<number> {
    const origin = systemOrigin(scope);
    const result = await this.#wait(
      this.#indexJobs,
      'delete-image',
      { ...scope, message, ...(file === undefined ? {} : { file }), origin },
      origin,
    );
    return result.count ?? (result.deleted ? 1 : 0);
  }

  /** The button id for an action on a job, for the adapter's widgets. */
  actionId(action: ImagineAction, jobId: JobRef): string {
    return actionId(action, jobId);
  }

  /**
   * A button names its job by id alone: one naming a job of another platform or workspace is refused
   * as not found, so that job's prompt and images never reach this one and its admins cannot cancel
   * it. Where either side has no workspace (a DM, where Discord moves a job that outlived its token)
   * the platform must match.
   */
  async #sameWorkspace(jobId: JobRef<'imagine'>, actor: Origin): Promise<void> {
    const origin = (await this.jobs.data(jobId))?.origin;
    if (origin === undefined) return; // expired: each action says so in its own words
    const elsewhere =
      origin.platform !== actor.platform ||
      (origin.workspace !== undefined &&
        actor.workspace !== undefined &&
        origin.workspace !== actor.workspace);
    if (elsewhere) {
      this.#logger.warn(
        { jobId, platform: actor.platform, workspace: actor.workspace },
        'a button named a job of another workspace',
      );
      throw new NotFoundError('the job belongs to another workspace', { jobId, reason: 'other_workspace' });
    }
  }

  async #exists(blob: string): Promise<boolean> {
    return this.blobs.owns(blob) && (await this.blobs.ttl(blob)) !== undefined;
  }

  #wait<K extends JobKind>(
    client: JobClient,
    kind: K,
    data: JobData<K>,
    origin: Origin,
  ): Promise<JobResult<K>> {
    return client.run(kind, data, { userId: quotaUserId(origin), timeoutMs: this.#o.waitTimeoutMs });
  }
}
