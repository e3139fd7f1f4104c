// The delete-image job: removes one indexed image, or every image of one platform message (or one
// attachment of it), of the asking channel from the images table. Idempotent (a second delete, or a retry after a lost reply, reports deleted: false) and scoped: the
// database deletes only when the id belongs to the job's channel. Callable without BullMQ.
import { checkJob, type DeleteImageResult, deleteImageJobSchema } from '../../shared/jobs.js';
import type { DbRunContext } from './context.js';

export async function runDeleteImage(
  data: unknown,
  ctx: Omit<DbRunContext, 'blobs'>,
): Promise<DeleteImageResult> {
  const job = checkJob(deleteImageJobSchema, data);
  ctx.signal?.throwIfAborted();
  const scope = { platform: job.platform, workspace: job.workspace, channel: job.channel };
  if (job.imageId !== undefined) {
    const deleted = await ctx.db.deleteImage(job.imageId, scope);
    return { deleted, count: deleted ? 1 : 0 };
  }
  const count = await ctx.db.deleteImagesOfMessage({
    ...scope,
    message: job.message!,
    ...(job.file === undefined ? {} : { file: job.file }),
  });
  return { deleted: count > 0, count };
}
