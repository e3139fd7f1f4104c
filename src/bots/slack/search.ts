// Search results as Slack shows them: each hit's file checked live first (an image block naming a
// deleted file makes Slack refuse the whole message), files found gone dropped from the index, and
// the rest drawn as image blocks with their permalinks.
import type { ChannelScope, SearchResult } from '../../shared/jobs.js';
import { type MessageBody, type ShownHit, searchMessage } from './blocks.js';
import type { SlackContext } from './context.js';
import { isImageFile } from './files.js';

export async function answerSearch(
  ctx: SlackContext,
  scope: ChannelScope,
  result: SearchResult,
  query?: string,
): Promise<MessageBody> {
  const checked = await Promise.all(
    result.hits.map(async (hit) => {
      const file = await ctx.files.info(hit.file).catch((error: unknown) => error as Error);
      if (file instanceof Error || !isImageFile(file)) {
        if ((file as { code?: string }).code === 'no_image') {
          // Deleted while we were not looking (no event came): heal the index.
          ctx.background('unindex a gone file', () => ctx.core.unindex(scope, hit.message, hit.file));
        }
        return undefined;
      }
      const shown: ShownHit = {
        file: hit.file,
        link: hit.link,
        score: hit.score,
        ...(hit.duplicates === undefined ? {} : { duplicates: hit.duplicates }),
        ...(file.name === undefined ? {} : { name: file.name }),
      };
      return shown;
    }),
  );
  const hits = checked.filter((h): h is ShownHit => h !== undefined);
  return searchMessage(result, hits, query === undefined || query === '' ? {} : { query });
}
