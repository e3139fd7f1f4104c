// The search job (/imagesearch, "Find similar"): query text -> unit CLIP text embedding, or a query
// image -> the classifier's image tower (micro-batched, as embed-image indexes) -> the nearest
// images by cosine within the asking channel, never across channels (the database filters by
// channel in the same statement that ranks) -> near-duplicates folded, weak tails cut
// (search/rank.ts). Callable without BullMQ.
import { withDeadline } from '../../shared/db/unavailable.js';
import { InternalError } from '../../shared/errors.js';
import { checkJob, type SearchResult, searchJobSchema } from '../../shared/jobs.js';
import type { WorkerModels } from '../runtime/models.js';
import {
  DefaultRankingOptions,
  type RankingOptions,
  rankCandidates,
  rankingOptions,
} from '../search/rank.js';
import { type Blobs, readBlob } from './blobs.js';
import type { DbRunContext } from './context.js';
import { contentHash } from './embed-image.js';

export interface SearchContext extends Omit<DbRunContext, 'blobs'> {
  /** Where a query image is read from; searches by text need none. */
  blobs?: Blobs;
  /** Folding, margins and the low-confidence line. @defaultValue DefaultRankingOptions */
  ranking?: RankingOptions;
  /**
   * Longest wait for the database (away, or PGlite busy with a long statement) before the search
   * fails as `unavailable`: a person gets a sentence, not a reply that never comes.
   * @defaultValue 8000
   */
  dbDeadlineMs?: number;
}

export const DEFAULT_SEARCH_DB_DEADLINE_MS = 8_000;

/**
 * A search by image leaves out the channel's own copy of the query (the same bytes, by content
 * hash): it would always be the best match, with cosine 1, and say nothing. The schema has no field
 * to mark it, and the asker has it already. Other encodings of the same picture are other posts and
 * stay (folded into one hit when they are near-duplicates of each other).
 */
export async function runSearch(
  models: Pick<WorkerModels, 'classifier' | 'images'>,
  data: unknown,
  ctx: SearchContext,
): Promise<SearchResult> {
  const job = checkJob(searchJobSchema, data);
  const ranking = ctx.ranking === undefined ? DefaultRankingOptions : rankingOptions(ctx.ranking);
  ctx.signal?.throwIfAborted();
  let embedding: Float32Array;
  let excludeContentHash: string | undefined;
  if (job.image !== undefined) {
    if (!ctx.blobs) throw new InternalError('a search by image needs a blob store');
    const bytes = await readBlob(ctx.blobs, job.image);
    embedding = await models.images.embed(bytes, ctx.signal);
    excludeContentHash = contentHash(bytes);
  } else {
    embedding = await models.classifier.embedTexts([job.query!], ctx.signal);
  }
  ctx.signal?.throwIfAborted();
  const scope = { platform: job.platform, workspace: job.workspace, channel: job.channel };
  // Candidates with their embeddings, folded here: at most 150 rows of 512 floats, and the fold
  // needs the cosines between candidates, which a top-k statement cannot give.
  const deadlineMs = ctx.dbDeadlineMs ?? DEFAULT_SEARCH_DB_DEADLINE_MS;
  const candidates = await withDeadline(
    ctx.db.searchImages({
      ...scope,
      embedding,
      k: Math.min(1000, job.k * ranking.candidatesPerHit),
      includeFlagged: job.includeFlagged === true,
      withEmbeddings: true,
      ...(excludeContentHash === undefined ? {} : { excludeContentHash }),
    }),
    deadlineMs,
    'a search',
  );
  const ranked = rankCandidates(
    candidates.map((c) => ({ ...c, embedding: c.embedding ?? new Float32Array(0) })),
    {
      kind: job.image === undefined ? 'text' : 'image',
      k: job.k,
      logitScale: models.classifier.encoders.logitScale,
    },
    ranking,
  );
  // Rows of another model are never ranked with this one's query: say how many were left out.
  const staleImages = await withDeadline(ctx.db.countStaleImages(scope), deadlineMs, 'a search');
  return {
    hits: ranked.hits.map((h) => ({
      imageId: h.imageId,
      link: h.link,
      score: h.score,
      message: h.message,
      file: h.file,
      flagged: h.flagged,
      ...(h.duplicates > 0 ? { duplicates: h.duplicates } : {}),
    })),
    ...(ranked.lowConfidence ? { lowConfidence: true } : {}),
    ...(staleImages > 0 ? { staleImages } : {}),
  };
}
