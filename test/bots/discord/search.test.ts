// Channel image search through Discord: a channel opted in with /settings indexes the images of new
// messages, /search finds them by words and by image (by fresh CDN URLs, with jump links), a deleted
// message or an edit that removes its image leaves the index, and a backfill walks the history.
import { readFile } from 'node:fs/promises';
import type { APIChatInputApplicationCommandInteraction, APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { FakeDiscord, InteractionHandle } from '../../helpers/fake-discord/index.js';
import { componentsOf, ephemeralOf, type Harness, textOf, useDiscordHarness } from './harness.js';

const harness = useDiscordHarness();
const IMAGES = ['down-noise-61x45.png', 'crop-noise-32x48.png', 'up-noise-24x40.png'].map(
  (name) => new URL(`../../fixtures/images/${name}`, import.meta.url),
);
const MANAGE_GUILD = 1n << 5n;

function asAdmin(
  payload: APIChatInputApplicationCommandInteraction,
): APIChatInputApplicationCommandInteraction {
  if (payload.member) payload.member.permissions = String(BigInt(payload.member.permissions) | MANAGE_GUILD);
  return payload;
}

async function answer(fake: FakeDiscord, handle: InteractionHandle, timeoutMs = 15_000): Promise<APIMessage> {
  return fake.waitFor(
    () => {
      const message = handle.original();
      return message && textOf(message) !== '' ? message : ephemeralOf(handle);
    },
    { timeoutMs, what: 'the answer' },
  );
}

function galleryUrls(message: APIMessage): string[] {
  const gallery = componentsOf(message).find((c) => c.type === 12) as
    | { items: { media: { url: string } }[] }
    | undefined;
  return gallery?.items.map((i) => i.media.url) ?? [];
}

function logged(h: Harness, msg: string): number {
  return h.logger.lines.filter((l) => l.msg === msg).length;
}

async function postImage(
  fake: FakeDiscord,
  index: number,
  extra: { channelId?: string; dispatch?: boolean; at?: number } = {},
) {
  const attachment = fake.addAttachment(await readFile(IMAGES[index] as URL), {
    filename: `img${index}.png`,
    contentType: 'image/png',
    ...(extra.channelId ? { channelId: extra.channelId } : {}),
  });
  return {
    attachment,
    message: fake.postUserMessage({ attachments: [attachment], content: `image ${index}`, ...extra }),
  };
}

describe('channel image search', () => {
  it('indexes opted-in channels, searches by words and by image, and forgets deleted and edited-away images', async () => {
    const h = await harness.start();
    const { fake } = h;
    const before = fake.interact(fake.slashCommand({ name: 'search', options: { query: 'a cat' } }));
    expect(textOf(await answer(fake, before))).toContain('is not indexed for search');
    const on = fake.interact(
      asAdmin(fake.slashCommand({ name: 'settings', subcommand: 'indexing', options: { enabled: true } })),
    );
    expect(textOf(await answer(fake, on))).toContain('Indexing is on');

    const posted = [await postImage(fake, 0), await postImage(fake, 1), await postImage(fake, 2)];
    await fake.waitFor(() => logged(h, 'indexed a message') >= 3, {
      timeoutMs: 20_000,
      what: 'three indexed messages',
    });

    const byWords = fake.interact(fake.slashCommand({ name: 'search', options: { query: 'noise' } }));
    const words = await answer(fake, byWords);
    const urls = galleryUrls(words);
    expect(urls.length).toBeGreaterThanOrEqual(1);
    // Fresh signed URLs of the posted attachments, and jump links to their messages.
    for (const url of urls) expect(posted.some((p) => url.includes(`/${p.attachment.id}/`))).toBe(true);
    expect(textOf(words)).toContain(`https://discord.com/channels/${fake.guild.id}/${fake.channel.id}/`);

    const query = fake.addAttachment(await readFile(IMAGES[0] as URL), {
      filename: 'q.png',
      contentType: 'image/png',
    });
    const byImage = fake.interact(fake.slashCommand({ name: 'search', options: { image: query } }));
    const similar = galleryUrls(await answer(fake, byImage));
    // The example's own bytes are left out; the others are what it finds.
    expect(similar.some((u) => u.includes(`/${posted[0]?.attachment.id}/`))).toBe(false);
    expect(similar.length).toBeGreaterThanOrEqual(1);

    fake.deleteMessage(posted[1]?.message.id ?? '');
    fake.editUserMessage(posted[2]?.message.id ?? '', { content: 'image removed', attachments: [] });
    await fake.waitFor(() => logged(h, 'unindexed a message') >= 1 && logged(h, 'unindexed a file') >= 1, {
      timeoutMs: 10_000,
      what: 'the delete and the edit unindexed',
    });
    // The index itself, not only the reply (which also drops hits whose message is gone).
    const scope = { platform: 'discord', workspace: fake.guild.id, channel: fake.channel.id } as const;
    const raw = await h.bot.core.search({ image: { url: query.url, name: 'q.png' } }, scope, {
      ...scope,
      user: fake.user.id,
    });
    expect(raw.hits.map((hit) => hit.message)).toEqual([]);
    const menu = fake.interact(
      fake.messageCommand({ name: 'Find similar', target: fake.message(posted[0]?.message.id ?? '')! }),
    );
    const after = await answer(fake, menu);
    expect(galleryUrls(after)).toEqual([]);
    expect(textOf(after)).toContain('No matching images in this channel yet.');

    // A bulk delete (a moderator purging messages) takes the last one out of the index too.
    const me = { ...scope, user: fake.user.id };
    const left = await h.bot.core.search({ text: 'noise' }, scope, me);
    expect(left.hits.map((hit) => hit.message)).toEqual([posted[0]?.message.id]);
    fake.dispatch('MESSAGE_DELETE_BULK', {
      ids: [posted[0]?.message.id ?? ''],
      channel_id: fake.channel.id,
      guild_id: fake.guild.id,
    });
    await fake.waitFor(() => logged(h, 'unindexed a message') >= 2, {
      timeoutMs: 10_000,
      what: 'the bulk delete unindexed',
    });
    expect((await h.bot.core.search({ text: 'noise' }, scope, me)).hits).toEqual([]);
  });

  it('backfills a channel history resumably, in pages, reporting progress', async () => {
    const h = await harness.start({
      fake: { guilds: [{ name: 'Test Guild', channels: ['general', 'history'] }] },
    });
    const { fake } = h;
    const history = fake.channelId('history');
    const start = fake.clock.now() - 3_600_000;
    for (let i = 0; i < 3; i++)
      await postImage(fake, i, { channelId: history, dispatch: false, at: start + i * 1000 });
    for (let i = 0; i < 2; i++)
      fake.postUserMessage({
        channelId: history,
        content: `words ${i}`,
        dispatch: false,
        at: start + 5000 + i,
      });
    const channel = { type: 7, value: history };
    const on = fake.interact(
      asAdmin(
        fake.slashCommand({
          name: 'settings',
          subcommand: 'indexing',
          options: { enabled: true, channel } as never,
        }),
      ),
    );
    expect(textOf(await answer(fake, on))).toContain(`Indexing is on for <#${history}>`);
    const first = fake.interact(
      asAdmin(
        fake.slashCommand({
          name: 'settings',
          subcommand: 'backfill',
          options: { channel, messages: 3 } as never,
        }),
      ),
    );
    await fake.waitFor(() => textOf(first.original()).includes('paused'), {
      timeoutMs: 20_000,
      what: 'the first run paused',
    });
    expect(textOf(first.original())).toContain('read 3 messages, indexed 1 image');
    const second = fake.interact(
      asAdmin(fake.slashCommand({ name: 'settings', subcommand: 'backfill', options: { channel } as never })),
    );
    await fake.waitFor(() => textOf(second.original()).includes('finished'), {
      timeoutMs: 20_000,
      what: 'the second run',
    });
    expect(textOf(second.original())).toContain(
      '(resumed where the last run stopped): read 2 messages, indexed 2 images',
    );
    const state = await h.stack.services.settings.channel({
      platform: 'discord',
      workspace: fake.guild.id,
      channel: history,
    });
    expect(state).toMatchObject({ indexing: true, backfillDone: true });
    const search = fake.interact(
      fake.slashCommand({ name: 'search', channelId: history, options: { query: 'noise' } }),
    );
    expect(galleryUrls(await answer(fake, search)).length).toBeGreaterThanOrEqual(1);
  });

  it('says so in the log and in /search when Discord refuses the Message Content intent', async () => {
    const h = await harness.start({ fake: { allowedPrivilegedIntents: 0 } });
    const { fake, bot } = h;
    expect(bot.messageContent).toBe(false);
    expect(
      h.logger.lines.some((l) => l.level === 'warn' && String(l.msg).includes('Message Content intent')),
    ).toBe(true);
    const on = fake.interact(
      asAdmin(fake.slashCommand({ name: 'settings', subcommand: 'indexing', options: { enabled: true } })),
    );
    expect(textOf(await answer(fake, on))).toContain('without the Message Content intent');
    const search = fake.interact(fake.slashCommand({ name: 'search', options: { query: 'anything' } }));
    expect(textOf(await answer(fake, search))).toContain('without the Message Content intent');
    // Commands still work without it.
    const queue = fake.interact(fake.slashCommand({ name: 'queue' }));
    expect(textOf(await answer(fake, queue))).toContain('no pictures in progress');
  });
});
