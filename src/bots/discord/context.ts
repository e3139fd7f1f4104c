// What every interaction handler shares: the client, the core, the services, the indexer, and the
// helpers that turn a discord.js interaction into the core's terms (origin, reply address) and say
// a refusal privately. Handlers ack within 3 s, then work; nothing they throw leaves the router.
import {
  type Client,
  InteractionContextType,
  MessageFlags,
  PermissionFlagsBits,
  type RepliableInteraction,
} from 'discord.js';
import type { Origin } from '../../shared/jobs.js';
import type { Logger } from '../../shared/logger.js';
import type { ChatCore } from '../core/chat.js';
import type { JobRef } from '../core/job-status.js';
import type { Run } from '../core/reply.js';
import type { BotServices } from '../core/services.js';
import { failedView } from '../core/view.js';
import { ephemeralText } from './components.js';
import type { ChannelIndexer } from './indexing.js';
import {
  INTERACTION_TOKEN_MS,
  type OutgoingMessage,
  type ReplyAddress,
  ReplyTarget,
} from './reply-target.js';
import type { DiscordSurface } from './surface.js';

export interface DiscordContext {
  readonly client: Client;
  readonly core: ChatCore;
  readonly services: BotServices;
  readonly indexer: ChannelIndexer;
  readonly logger: Logger;
  readonly now: () => number;
  /** Messages one /settings backfill reads at most unless told. */
  readonly backfillLimit: number;
  /** A surface for a job's reply, disposed with the adapter. */
  surface(address: ReplyAddress, jobId?: JobRef): DiscordSurface;
  /** Follows a run until it ends (stopped when the adapter closes). */
  track(run: Run, surface: DiscordSurface): void;
  /**
   * Resolves once the interaction may do its work: acked interactions work in a bounded number of
   * slots (work-slots.ts), freed when its handler returns. The defer helpers below call it.
   */
  admit(i: RepliableInteraction): Promise<void>;
}

/** Who asked and where, in the core's terms. */
export function originOf(i: RepliableInteraction): Origin {
  return {
    platform: 'discord',
    ...(i.guildId ? { workspace: i.guildId } : {}),
    ...(i.channelId ? { channel: i.channelId } : {}),
    user: i.user.id,
    ...(i.isMessageComponent() ? { message: i.message.id } : {}),
  };
}

/** May act on other people's jobs: Manage Messages where the press happened. */
export function isModerator(i: RepliableInteraction): boolean {
  return i.memberPermissions?.has(PermissionFlagsBits.ManageMessages) ?? false;
}

/**
 * The bot may post in the interaction's channel: it is in the server (not only user-installed) with
 * the permissions to send and attach there, or it is the bot's own DM.
 */
export function canPost(client: Client, i: RepliableInteraction): boolean {
  if (i.context === InteractionContextType.BotDM) return true;
  if (!i.guildId || !client.guilds.cache.has(i.guildId)) return false;
  return i.appPermissions.has([
    PermissionFlagsBits.ViewChannel,
    PermissionFlagsBits.SendMessages,
    PermissionFlagsBits.AttachFiles,
  ]);
}

export function addressOf(ctx: DiscordContext, i: RepliableInteraction): ReplyAddress {
  const channel = i.channel as { nsfw?: boolean } | null;
  return {
    v: 1,
    applicationId: i.applicationId,
    interaction: { token: i.token, expiresAt: i.createdTimestamp + INTERACTION_TOKEN_MS },
    channelId: i.channelId ?? '',
    canPost: canPost(ctx.client, i),
    userId: i.user.id,
    ...(i.guildId ? { guildId: i.guildId } : {}),
    ...(channel?.nsfw === true ? { ageRestricted: true } : {}),
    sizeLimit: i.attachmentSizeLimit,
    followUps: 0,
  };
}

/** REST calls on the interaction's webhook (bodies built by components.ts). */
export function targetOf(ctx: DiscordContext, i: RepliableInteraction): ReplyTarget {
  return new ReplyTarget(ctx.client.rest, addressOf(ctx, i), ctx.now);
}

/**
 * Defers publicly, then waits for a work slot. The callback asks for no response body (the whole
 * message, parsed into a Message on the ack path): the reply's message id comes back with the
 * first edit anyway, and DiscordSurface records it then.
 */
export async function deferPublic(ctx: DiscordContext, i: RepliableInteraction): Promise<void> {
  await i.deferReply();
  await ctx.admit(i);
}

/** Defers privately (only the person sees the answer), then waits for a work slot. */
export async function deferPrivate(ctx: DiscordContext, i: RepliableInteraction): Promise<void> {
  await i.deferReply({ flags: MessageFlags.Ephemeral });
  await ctx.admit(i);
}

/** Fills the deferred reply with a message built by components.ts. */
export async function editReply(
  ctx: DiscordContext,
  i: RepliableInteraction,
  message: OutgoingMessage,
): Promise<void> {
  await targetOf(ctx, i).editOriginal(message);
}

/**
 * Says something to the person alone, whatever the interaction's state: a reply when not yet
 * acked, the ephemeral deferred reply filled, or a public deferred reply swapped for an ephemeral one.
 */
export async function tellPrivately(
  ctx: DiscordContext,
  i: RepliableInteraction,
  sentence: string,
): Promise<void> {
  const message = ephemeralText(sentence);
  if (!i.deferred && !i.replied) {
    await i.reply({ content: sentence, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    return;
  }
  const target = targetOf(ctx, i);
  if (i.ephemeral) {
    await target.editOriginal({ body: { content: sentence }, files: [] });
    return;
  }
  await target.deleteOriginal().catch(() => {});
  await target.followUp(message);
}

/** An error in plain words (the core's sentence by code); stack traces go to the log only. */
export async function tellError(ctx: DiscordContext, i: RepliableInteraction, error: unknown): Promise<void> {
  const view = failedView(error);
  if (view.code === 'internal' || view.code === 'unavailable') {
    ctx.logger.error({ err: error, interaction: i.id }, 'interaction failed');
  } else {
    ctx.logger.info({ code: view.code, interaction: i.id }, 'interaction refused');
  }
  await tellPrivately(ctx, i, view.text).catch((drawError: unknown) =>
    ctx.logger.warn({ err: drawError, interaction: i.id }, 'could not tell the person about an error'),
  );
}
