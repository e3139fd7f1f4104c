// What every Slack handler shares, built once by startSlackBot: the Web API client, the core's flows
// and services, the adapter's own stores (files seen, recent jobs), the rate-limit budget and gate,
// and small helpers (who is an admin, how to answer privately, how a job message is drawn).
import type { RespondFn, webApi } from '@slack/bolt';
import { asCodedError } from '../../shared/errors.js';
import type { Origin } from '../../shared/jobs.js';
import type { Logger } from '../../shared/logger.js';
import type { ChatCore } from '../core/chat.js';
import type { RecentJobs } from '../core/recent-jobs.js';
import { renderError } from '../core/render.js';
import type { Run } from '../core/reply.js';
import type { BotServices } from '../core/services.js';
import { type MessageBody, noticeMessage } from './blocks.js';
import type { FileLedger } from './file-ledger.js';
import type { SlackFiles } from './files.js';
import type { HistoryReader } from './history.js';
import type { SlackClock, UpdateBudget } from './rate-limits.js';
import { fromSlackError } from './slack-errors.js';
import type { SlackReply, SlackSurface } from './surface.js';

type WebClient = webApi.WebClient;

/** The app's identity in its workspace, from auth.test. */
export interface SlackIdentity {
  teamId: string;
  botUserId: string;
  botId?: string | undefined;
  /** `https://team.slack.com/` (the fake's base URL in tests): permalinks are built from it. */
  url: string;
}

export interface SlackContext {
  readonly client: WebClient;
  readonly core: ChatCore;
  readonly services: BotServices;
  readonly files: SlackFiles;
  readonly ledger: FileLedger;
  readonly recent: RecentJobs;
  readonly history: HistoryReader;
  readonly budget: UpdateBudget;
  readonly clock: SlackClock;
  readonly logger: Logger;
  readonly identity: SlackIdentity;
  /** Aborts when the adapter closes (backfills stop at their next step). */
  readonly closing: AbortSignal;
  readonly historyPageSize: number;
  /** Slack admins and owners act on anyone's job and change workspace settings. */
  isAdmin(user: string): Promise<boolean>;
  /** A job's message surface; `ephemeral` answers the requester privately. */
  surface(input: {
    prompt: string;
    user: string;
    reply: SlackReply;
    ephemeral: (body: MessageBody) => Promise<void>;
  }): SlackSurface;
  /** Keeps a run to stop when the adapter closes. */
  track(run: Run): void;
  /** Work started by a handler after its ack, awaited on close and never left to reject unseen. */
  background(name: string, work: () => Promise<unknown>): void;
}

/** The origin of a request made in a channel. */
export function originOf(team: string, channel: string | undefined, user: string): Origin {
  return {
    platform: 'slack',
    workspace: team,
    user,
    ...(channel === undefined ? {} : { channel }),
  };
}

/** The sentence for anything thrown, Slack's refusals included, as a private message body. */
export function errorNotice(error: unknown): MessageBody {
  return noticeMessage(renderError(asCodedError(fromSlackError(error))));
}

/** Bolt's respond() as a private answer that never replaces the message a button sits on. */
export function ephemeralVia(respond: RespondFn): (body: MessageBody) => Promise<void> {
  return async (body) => {
    await respond({ response_type: 'ephemeral', replace_original: false, ...body });
  };
}

/**
 * Acks a request, then lets the process's other acks go first (core/ack-first.ts): the work after
 * it has the 30 minutes of its response_url, the acks still to go 3 s.
 */
export async function ackThenWait(ctx: SlackContext, ack: () => Promise<void>): Promise<void> {
  await ack();
  await ctx.services.acks.settled();
}
