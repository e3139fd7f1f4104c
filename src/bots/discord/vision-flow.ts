// What the bot sees: /whatis and the "What is this?" menu (top labels, ephemeral, with a Share
// button), and channel search by words, by an image, or "Find similar" on a message. Results show
// the images by fresh CDN URLs of the messages they came from (only ids are stored).
import {
  type APIMessage,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  DiscordAPIError,
  type Message,
  type MessageContextMenuCommandInteraction,
  Routes,
} from 'discord.js';
import { NoImageError } from '../../shared/errors.js';
import type { ChannelScope, SearchResult } from '../../shared/jobs.js';
import type { RemoteImage } from '../core/chat.js';
import { renderStaleNote } from '../core/render.js';
import { type SearchHitView, searchMessage, sharedWhatis, whatisMessage } from './components.js';
import {
  type DiscordContext,
  deferPrivate,
  editReply,
  originOf,
  targetOf,
  tellError,
  tellPrivately,
} from './context.js';
import { fromApi, imageAttachments, messageLink, remoteImage } from './indexing.js';
import { Words } from './words.js';

/** The first image attachment of a message (context menus deliver it without Message Content). */
function imageOf(message: Message): { image: RemoteImage; name: string } | undefined {
  const first = imageAttachments(message.attachments.values())[0];
  return first ? { image: remoteImage(first), name: first.name } : undefined;
}

export async function onWhatis(ctx: DiscordContext, i: ChatInputCommandInteraction): Promise<void> {
  await deferPrivate(ctx, i);
  const attachment = i.options.getAttachment('image', true);
  await whatis(
    ctx,
    i,
    { url: attachment.url, name: attachment.name, size: attachment.size },
    attachment.name,
    i.options.getString('labels'),
  );
}

export async function onWhatIsThis(
  ctx: DiscordContext,
  i: MessageContextMenuCommandInteraction,
): Promise<void> {
  await deferPrivate(ctx, i);
  const found = imageOf(i.targetMessage);
  if (!found) {
    await tellError(ctx, i, new NoImageError('message'));
    return;
  }
  await whatis(ctx, i, found.image, found.name, null);
}

async function whatis(
  ctx: DiscordContext,
  i: ChatInputCommandInteraction | MessageContextMenuCommandInteraction,
  image: RemoteImage,
  name: string,
  labels: string | null,
): Promise<void> {
  try {
    const result = await ctx.core.whatis(image, labels ?? undefined, originOf(i));
    await editReply(ctx, i, whatisMessage({ labels: result.labels, fileName: name, share: true }));
  } catch (error) {
    await tellError(ctx, i, error);
  }
}

/** Share: the ephemeral answer loses its button and is posted for everyone, by the person's click. */
export async function onShare(ctx: DiscordContext, i: ButtonInteraction): Promise<void> {
  const content = i.message.content;
  await i.update({ components: [] });
  try {
    // A follow-up, not a channel message: it works where the app is only user-installed too.
    await targetOf(ctx, i).followUp(sharedWhatis(content, i.user.id));
  } catch (error) {
    await tellError(ctx, i, error);
  }
}

function scopeOf(
  i: ChatInputCommandInteraction | MessageContextMenuCommandInteraction,
): ChannelScope | undefined {
  if (!i.guildId || !i.channelId || !ctxHasGuild(i)) return undefined;
  return { platform: 'discord', workspace: i.guildId, channel: i.channelId };
}

function ctxHasGuild(i: ChatInputCommandInteraction | MessageContextMenuCommandInteraction): boolean {
  return i.client.guilds.cache.has(i.guildId ?? '');
}

export async function onSearch(ctx: DiscordContext, i: ChatInputCommandInteraction): Promise<void> {
  const attachment = i.options.getAttachment('image');
  const query = i.options.getString('query') ?? undefined;
  await search(ctx, i, {
    ...(query === undefined ? {} : { text: query }),
    ...(attachment ? { image: { url: attachment.url, name: attachment.name, size: attachment.size } } : {}),
  });
}

export async function onFindSimilar(
  ctx: DiscordContext,
  i: MessageContextMenuCommandInteraction,
): Promise<void> {
  const found = imageOf(i.targetMessage);
  if (!found) {
    await tellError(ctx, i, new NoImageError('message'));
    return;
  }
  await search(ctx, i, { image: found.image });
}

async function search(
  ctx: DiscordContext,
  i: ChatInputCommandInteraction | MessageContextMenuCommandInteraction,
  input: { text?: string; image?: RemoteImage },
): Promise<void> {
  const scope = scopeOf(i);
  if (!scope) {
    await tellPrivately(ctx, i, Words.searchNeedsServer);
    return;
  }
  await deferPrivate(ctx, i);
  try {
    if (!(await ctx.indexer.isIndexed(scope))) {
      const off = ctx.indexer.messageContent ? '' : `\n-# ${Words.contentIntentOff}`;
      await tellPrivately(ctx, i, `${Words.notIndexed(scope.channel)}${off}`);
      return;
    }
    const result = await ctx.core.search(input, scope, originOf(i));
    const hits = await freshHits(ctx, scope, result);
    const notes = [
      renderStaleNote(result.staleImages),
      ctx.indexer.messageContent ? undefined : Words.contentIntentOff,
    ];
    await editReply(
      ctx,
      i,
      searchMessage({
        query: input.text,
        hits,
        lowConfidence: result.lowConfidence,
        notes: notes.filter((n) => n !== undefined),
      }),
    );
  } catch (error) {
    await tellError(ctx, i, error);
  }
}

/**
 * Fresh URLs for the hits: their messages read again (one request per message). A hit whose
 * message or attachment is gone was deleted while the bot was away: it is dropped from the index.
 */
async function freshHits(
  ctx: DiscordContext,
  scope: ChannelScope,
  result: SearchResult,
): Promise<SearchHitView[]> {
  const ids = [...new Set(result.hits.slice(0, 10).map((h) => h.message))];
  const messages = new Map<string, APIMessage | undefined>();
  await Promise.all(
    ids.map(async (id) => {
      try {
        messages.set(id, (await ctx.client.rest.get(Routes.channelMessage(scope.channel, id))) as APIMessage);
      } catch (error) {
        if (!(error instanceof DiscordAPIError && error.code === 10008)) throw error;
        messages.set(id, undefined);
      }
    }),
  );
  const views: SearchHitView[] = [];
  for (const hit of result.hits.slice(0, 10)) {
    const message = messages.get(hit.message);
    const attachment = message?.attachments.map(fromApi).find((a) => a.id === hit.file);
    if (!attachment) {
      await ctx.core
        .unindex(scope, hit.message, message ? hit.file : undefined)
        .catch((error: unknown) => ctx.logger.warn({ err: error, ...scope }, 'could not drop a stale hit'));
      continue;
    }
    views.push({
      url: attachment.url,
      link: messageLink(scope.workspace, scope.channel, hit.message),
      score: hit.score,
      ...(hit.flagged ? { spoiler: true } : {}),
      ...(hit.duplicates ? { duplicates: hit.duplicates } : {}),
    });
  }
  return views;
}
