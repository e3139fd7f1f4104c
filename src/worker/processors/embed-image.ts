// The embed-image job (channel indexing): blob -> micro-batched unit CLIP image embedding -> the
// safety check on that embedding -> a row in the images table of its channel, deduplicated by a
// hash of the bytes (the same file posted twice in a channel is indexed once) and flagged when the
// check says so (searches then leave it out unless asked). Callable without BullMQ.
import { createHash } from 'node:crypto';
import { checkJob, type EmbedImageResult, embedImageJobSchema } from '../../shared/jobs.js';
import type { WorkerModels } from '../runtime/models.js';
import { readBlob } from './blobs.js';
import type { DbRunContext } from './context.js';

/** What dedups an image within a channel, and lets a search by image leave out its own copy. */
export function contentHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function runEmbedImage(
  models: Pick<WorkerModels, 'images'> & Partial<Pick<WorkerModels, 'safety'>>,
  data: unknown,
  ctx: DbRunContext,
): Promise<EmbedImageResult> {
  const job = checkJob(embedImageJobSchema, data);
  ctx.signal?.throwIfAborted();
  const bytes = await readBlob(ctx.blobs, job.image);
  const embedding = await models.images.embed(bytes, ctx.signal);
  // Without a checker (SAFETY_CHECK=off) the row keeps whatever flag it had.
  const safety = await models.safety?.check(embedding, ctx.signal);
  ctx.signal?.throwIfAborted();
  const row = await ctx.db.upsertImage({
    platform: job.platform,
    workspace: job.workspace,
    channel: job.channel,
    message: job.message,
    file: job.file,
    ...(job.link === undefined ? {} : { link: job.link }),
    contentHash: contentHash(bytes),
    embedding,
    ...(safety === undefined ? {} : { flagged: safety.flagged }),
  });
  // The row's flag, checked now or not: it is what searches go by.
  return { imageId: row.imageId, duplicate: row.duplicate, reindexed: row.reindexed, flagged: row.flagged };
}
