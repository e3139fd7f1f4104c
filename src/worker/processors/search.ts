// The search job (/imagesearch): query text -> unit CLIP text embedding -> the k nearest images by
// cosine within the asking channel, never across channels (the database filters by channel in the
// same statement that ranks). Callable without BullMQ.
import { BadInputError } from '../../shared/errors.js';
import { checkJob, type SearchResult, searchJobSchema } from '../../shared/jobs.js';
import type { WorkerModels } from '../runtime/models.js';
import type { DbRunContext } from './context.js';

export async function runSearch(
  models: Pick<WorkerModels, 'classifier'>,
  data: unknown,
  ctx: Omit<DbRunContext, 'blobs'>,
): Promise<SearchResult> {
  const job = checkJob(searchJobSchema, data);
  ctx.signal?.throwIfAborted();
  if (job.query === undefined) throw new BadInputError('search by image is not supported by this worker');
  const embedding = await models.classifier.embedTexts([job.query], ctx.signal);
  const scope = { platform: job.platform, workspace: job.workspace, channel: job.channel };
  const hits = await ctx.db.searchImages({ ...scope, embedding, k: job.k });
  // Rows of another model are never ranked with this one's query: say how many were left out.
  const staleImages = await ctx.db.countStaleImages(scope);
  return {
    hits: hits.map((h) => ({
      imageId: h.imageId,
      link: h.link,
      score: h.score,
      message: h.message,
      file: h.file,
    })),
    ...(staleImages > 0 ? { staleImages } : {}),
  };
}
