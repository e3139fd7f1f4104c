// Previews straight from the blob store: an image block's `image_url` is a presigned GET URL of the
// job's preview blob, which Slack's servers download when the message is posted or edited, so no
// preview is uploaded into the thread (an upload, a share and a delete per preview). Used only when
// the operator says Slack can reach the store (SLACK_PREVIEW_IMAGE_URLS) and the store can presign
// (S3). Slack refuses a message whose image it cannot download (`invalid_blocks`, "downloading image
// failed"); the first such refusal turns this off for the process, logged once, and previews are
// uploaded as before. The final image is always uploaded: it must outlive the blob's TTL.
//
// Slack shows png, jpg and gif from a URL and refuses WebP (slackapi/node-slack-sdk#1482), which is
// what the worker encodes previews in: such a preview is re-encoded as JPEG and put beside it
// (`slack-preview:<job>:<step>`, deleted once the next is shown or the job ends, and expiring with
// its URL anyway: one copy per running job), and that blob is presigned.
import type { Blob, BlobStore } from '../../shared/blobs.js';
import { decodeImage } from '../../shared/image/decode.js';
import { encodeJpeg } from '../../shared/image/encode.js';
import type { Logger } from '../../shared/logger.js';

/**
 * How long a preview's URL works. Slack downloads it when the message is posted or edited (and
 * again on a later edit that still carries it: the surface presigns afresh past half of this), and
 * the preview is replaced within seconds; a leaked URL shows one preview for at most this long.
 */
export const PREVIEW_URL_SECONDS = 900;

/** Block Kit's cap on `image_url`. */
export const IMAGE_URL_MAX_LENGTH = 3000;

/** What Slack shows in an image block, from an image_url or a slack_file alike. */
const SHOWN_TYPES = /^image\/(png|jpeg|jpg|gif)$/i;

/**
 * The image as Slack will show it in a block: itself when png, jpeg or gif, else (WebP previews)
 * re-encoded as JPEG. Slack refuses other kinds in image blocks whether by URL or by uploaded file.
 */
export async function showableInBlocks(image: Blob): Promise<Blob> {
  if (SHOWN_TYPES.test(image.contentType)) return image;
  const jpeg = await encodeJpeg(await decodeImage(image.bytes), { quality: 85 });
  return { bytes: Buffer.from(jpeg), contentType: 'image/jpeg' };
}

/** A preview to show by URL: the blob presigned (the preview itself, or its JPEG copy) and the URL. */
export interface PreviewLink {
  key: string;
  url: string;
  /** True when `key` is a JPEG copy this adapter wrote (deleted when the job ends). */
  copy: boolean;
}

export interface PreviewUrlsOptions {
  blobs: BlobStore;
  /** config.slack.previewImageUrls. @defaultValue false */
  enabled?: boolean;
  logger: Logger;
}

/** Whether previews go by URL now, shared by every job's surface of one adapter. */
export class PreviewUrls {
  readonly #blobs: BlobStore;
  readonly #logger: Logger;
  #on: boolean;

  constructor(options: PreviewUrlsOptions) {
    this.#blobs = options.blobs;
    this.#logger = options.logger;
    this.#on = options.enabled === true;
    if (this.#on && options.blobs.kind === 'redis') {
      this.#on = false;
      this.#logger.warn(
        'SLACK_PREVIEW_IMAGE_URLS is on but blobs are in Redis, which has no presigned URLs: previews are uploaded to Slack',
      );
    }
  }

  get on(): boolean {
    return this.#on;
  }

  /**
   * A presigned URL that shows the preview blob in an image block (of a JPEG copy under `copyName`
   * when the preview is WebP); undefined when off, when the blob is gone, or when too long. Throws
   * when the store or the re-encode fails.
   */
  async linkOf(blob: string, copyName: string): Promise<PreviewLink | undefined> {
    if (!this.#on) return undefined;
    const stored = await this.#blobs.get(blob);
    if (stored === undefined) return undefined;
    let key = blob;
    const shown = await showableInBlocks(stored);
    if (shown !== stored) {
      key = await this.#blobs.put(shown.bytes, {
        contentType: shown.contentType,
        name: copyName,
        ttlSeconds: PREVIEW_URL_SECONDS,
      });
    }
    const url = await this.urlOf(key);
    return url === undefined ? undefined : { key, url, copy: key !== blob };
  }

  /** A fresh presigned URL of a blob; undefined when off, gone or too long. */
  async urlOf(key: string): Promise<string | undefined> {
    if (!this.#on) return undefined;
    const url = await this.#blobs.presignedUrl(key, PREVIEW_URL_SECONDS);
    if (url !== undefined && url.length > IMAGE_URL_MAX_LENGTH) {
      this.off(`a presigned URL is ${url.length} characters, over Block Kit's ${IMAGE_URL_MAX_LENGTH}`);
      return undefined;
    }
    return url;
  }

  /** Deletes a JPEG copy once its job has ended (it would expire anyway). */
  async forget(link: PreviewLink | undefined): Promise<void> {
    if (link?.copy !== true) return;
    await this.#blobs.delete(link.key).catch((error: unknown) => {
      this.#logger.debug({ err: error, key: link.key }, 'could not delete a preview copy');
    });
  }

  /** Stops using URLs in this process (logged the first time only). */
  off(reason: string, error?: unknown): void {
    if (!this.#on) return;
    this.#on = false;
    this.#logger.warn(
      { reason, ...(error === undefined ? {} : { err: error }) },
      'Slack could not show a preview from the blob store (is it reachable from the internet?): previews are uploaded to Slack from now on',
    );
  }
}

/** True when Slack refused blocks because it could not download an `image_url`. */
export function isImageUrlRefusal(error: unknown): boolean {
  const data = (error as { code?: unknown; data?: { error?: unknown; errors?: unknown } } | null)?.data;
  if (data?.error !== 'invalid_blocks') return false;
  const errors = Array.isArray(data.errors) ? data.errors : [];
  return errors.some((e) => typeof e === 'string' && /image_url/.test(e));
}
