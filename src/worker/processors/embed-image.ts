// The embed-image job (channel indexing): blob -> micro-batched unit CLIP image embedding -> a row in
// the images table of its channel, deduplicated by a hash of the bytes (the same file posted twice
// in a channel is indexed once). Callable without BullMQ.
import { createHash } from 'node:crypto';
import { checkJob, type EmbedImageResult, embedImageJobSchema } from '../../shared/jobs.js';
import type { WorkerModels } from '../runtime/models.js';
import { readBlob } from './blobs.js';
import type { DbRunContext } from './context.js';

export async function runEmbedImage(
  models: Pick<WorkerModels, 'images'>,
  data: unknown,
  ctx: DbRunContext,
): Promise<EmbedImageResult> {
  const job = checkJob(embedImageJobSchema, data);
  ctx.signal?.throwIfAborted();
  const bytes = await readBlob(ctx.blobs, job.image);
  const embedding = await models.images.embed(bytes, ctx.signal);
  ctx.signal?.throwIfAborted();
  return ctx.db.upsertImage({
    platform: job.platform,
    workspace: job.workspace,
    channel: job.channel,
    message: job.message,
    file: job.file,
    ...(job.link === undefined ? {} : { link: job.link }),
    contentHash: createHash('sha256').update(bytes).digest('hex'),
    embedding,
  });
}
