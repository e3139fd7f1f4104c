// The channel-state job: reads (and, when asked, changes) a channel's indexing state in the
// database for the bot side, which never opens it: whether the channel is indexed for search, and
// where a history backfill got to. Callable without BullMQ.
import { type ChannelStateResult, channelStateJobSchema, checkJob } from '../../shared/jobs.js';
import type { DbRunContext } from './context.js';

export async function runChannelState(
  data: unknown,
  ctx: Omit<DbRunContext, 'blobs'>,
): Promise<ChannelStateResult> {
  const job = checkJob(channelStateJobSchema, data);
  ctx.signal?.throwIfAborted();
  const scope = { platform: job.platform, workspace: job.workspace, channel: job.channel };
  const state = job.set
    ? await ctx.db.setChannelState(scope, {
        ...(job.set.indexing === undefined ? {} : { indexing: job.set.indexing }),
        ...(job.set.backfillCursor === undefined ? {} : { backfillCursor: job.set.backfillCursor }),
        ...(job.set.backfillDone === undefined ? {} : { backfillDone: job.set.backfillDone }),
      })
    : await ctx.db.getChannelState(scope);
  if (!state) return { known: false, indexing: false, backfillCursor: null, backfillDone: false };
  return {
    known: true,
    indexing: state.indexing,
    backfillCursor: state.backfillCursor,
    backfillDone: state.backfillDone,
  };
}
