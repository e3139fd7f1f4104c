// The delete-image job: removes one indexed image of the asking channel from the images table.
// Idempotent (a second delete, or a retry after a lost reply, reports deleted: false) and scoped: the
// database deletes only when the id belongs to the job's channel. Callable without BullMQ.
import { checkJob, type DeleteImageResult, deleteImageJobSchema } from '../../shared/jobs.js';
import type { DbRunContext } from './context.js';

export async function runDeleteImage(
  data: unknown,
  ctx: Omit<DbRunContext, 'blobs'>,
): Promise<DeleteImageResult> {
  const job = checkJob(deleteImageJobSchema, data);
  ctx.signal?.throwIfAborted();
  const deleted = await ctx.db.deleteImage(job.imageId, {
    platform: job.platform,
    workspace: job.workspace,
    channel: job.channel,
  });
  return { deleted };
}
