// Real, unmodified discord.js against the local fake Discord: proves the fake speaks the gateway and REST
// well enough for the Client (login, interactions, replies with files, Components V2, resume), and that
// each platform rule an adapter must respect is enforced with Discord's own error codes.
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import {
  ActionRowBuilder,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  type ChatInputCommandInteraction,
  Client,
  ContainerBuilder,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  type Interaction,
  MediaGalleryBuilder,
  type Message,
  MessageFlags,
  ModalBuilder,
  Partials,
  Routes,
  TextDisplayBuilder,
  TextInputBuilder,
  TextInputStyle,
} from 'discord.js';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { discordRestAgent } from '../../../src/bots/discord/rest-agent.js';
import {
  type FakeDiscord,
  type FakeDiscordOptions,
  startFakeDiscord,
} from '../../helpers/fake-discord/index.js';

const PNG_PATH = new URL('../../fixtures/images/crop-noise-32x48.png', import.meta.url);
const ALL_INTENTS = [
  GatewayIntentBits.Guilds,
  GatewayIntentBits.GuildMessages,
  GatewayIntentBits.DirectMessages,
  GatewayIntentBits.MessageContent,
];

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeDiscord(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const fake = await startFakeDiscord({ heartbeatIntervalMs: 1_000, ...options });
  cleanups.push(() => fake.close());
  return fake;
}

async function connect(fake: FakeDiscord, intents = ALL_INTENTS): Promise<Client> {
  const client = new Client({
    intents,
    partials: [Partials.Channel],
    rest: { agent: discordRestAgent(), api: fake.apiUrl, retries: 0, timeout: 5_000 },
  });
  cleanups.push(() => client.destroy());
  const ready = once(client, Events.ClientReady);
  await client.login(fake.token);
  await ready;
  return client;
}

async function nextInteraction<T extends Interaction = ChatInputCommandInteraction>(
  client: Client,
): Promise<T> {
  const [interaction] = (await once(client, Events.InteractionCreate)) as [T];
  return interaction;
}

/** Dispatches /imagine and returns the handle and discord.js' interaction object. */
async function imagine(
  fake: FakeDiscord,
  client: Client,
  extra: Parameters<FakeDiscord['slashCommand']>[0] = { name: 'imagine' },
) {
  const seen = nextInteraction(client);
  const handle = fake.interact(fake.slashCommand({ options: { prompt: 'a lighthouse' }, ...extra }));
  return { handle, interaction: await seen };
}

async function apiError(promise: Promise<unknown>): Promise<DiscordAPIError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DiscordAPIError);
  return error as DiscordAPIError;
}

/** A bare gateway connection that has read HELLO; `next()` reads the following payload. */
async function rawGateway(fake: FakeDiscord) {
  const ws = new WebSocket(`${fake.gatewayUrl}/?v=10&encoding=json`);
  const queue: unknown[] = [];
  const waiters: ((payload: unknown) => void)[] = [];
  ws.on('message', (data: Buffer) => {
    const payload: unknown = JSON.parse(data.toString());
    const waiter = waiters.shift();
    if (waiter) waiter(payload);
    else queue.push(payload);
  });
  const next = () =>
    new Promise<unknown>((resolve) => {
      const queued = queue.shift();
      if (queued !== undefined) resolve(queued);
      else waiters.push(resolve);
    });
  cleanups.push(async () => ws.terminate());
  expect(await next()).toMatchObject({ op: 10 });
  return { ws, next };
}

describe('fake Discord with real discord.js', () => {
  it('logs in: gateway/bot with the bot token, IDENTIFY intents, READY and GUILD_CREATE', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    expect(client.user?.id).toBe(fake.applicationId);
    expect(client.application?.id).toBe(fake.applicationId);
    expect(client.guilds.cache.get(fake.guild.id)?.channels.cache.has(fake.channel.id)).toBe(true);
    const gatewayBot = fake.requestsTo('GET /gateway/bot')[0];
    expect(gatewayBot?.headers.authorization).toBe(`Bot ${fake.token}`);
    expect(fake.intents).toBe(client.options.intents.bitfield);
    // What @discordjs/ws 1.2 asks for without zlib-sync installed: plain JSON, no transport compression.
    expect(fake.sessions()[0]?.identify.compress).toBe(false);
  });

  it('refuses a wrong token with 401, which discord.js reports as TokenInvalid', async () => {
    const fake = await fakeDiscord();
    const client = new Client({
      intents: [],
      rest: { agent: discordRestAgent(), api: fake.apiUrl, retries: 0 },
    });
    cleanups.push(() => client.destroy());
    await expect(client.login('not-the-token')).rejects.toThrow(/invalid token/i);
    expect(fake.requestsTo('GET /gateway/bot')[0]?.status).toBe(401);
  });

  it('defers a slash command, then edits the reply with a PNG that the CDN serves back', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const input = fake.addAttachment(Buffer.from('not really an image'), {
      filename: 'in.txt',
      contentType: 'text/plain',
    });
    const { handle, interaction } = await imagine(fake, client, {
      name: 'imagine',
      options: { prompt: 'a lighthouse', steps: 30, image: input },
    });
    expect(interaction.options.getString('prompt')).toBe('a lighthouse');
    expect(interaction.options.getInteger('steps')).toBe(30);
    expect(interaction.options.getAttachment('image')?.url).toBe(input.url);
    expect(interaction.attachmentSizeLimit).toBe(10 * 1024 * 1024);

    await interaction.deferReply();
    expect(handle.ackType).toBe(5);
    expect(handle.original()?.flags).toBe(MessageFlags.Loading);
    const png = await readFile(PNG_PATH);
    await interaction.editReply({
      content: 'done',
      files: [new AttachmentBuilder(png, { name: 'out.png' })],
    });

    const edit = fake.requestsTo('PATCH /webhooks/:app/:token/messages/@original')[0];
    expect(edit?.files).toHaveLength(1);
    expect(edit?.files[0]).toMatchObject({
      field: 'files[0]',
      filename: 'out.png',
      contentType: 'image/png',
    });
    expect(edit?.files[0]?.bytes.equals(png)).toBe(true);
    const original = handle.original();
    expect(original?.content).toBe('done');
    expect(original?.flags).toBe(0);
    expect(original?.attachments[0]).toMatchObject({ filename: 'out.png', width: 32, height: 48 });
    const download = await fetch(original?.attachments[0]?.url ?? '');
    expect(download.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await download.arrayBuffer()).equals(png)).toBe(true);
  });

  it('accepts a Components V2 edit of a deferred reply and keeps the flag', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { handle, interaction } = await imagine(fake, client);
    const deferred = await interaction.deferReply({ withResponse: true });
    expect(deferred.resource?.message?.id).toBe(handle.original()?.id);
    const png = await readFile(PNG_PATH);
    const container = new ContainerBuilder()
      .addTextDisplayComponents(new TextDisplayBuilder().setContent('**a lighthouse**'))
      .addMediaGalleryComponents(
        new MediaGalleryBuilder().addItems((item) => item.setURL('attachment://grid.png')),
      );
    await interaction.editReply({
      flags: MessageFlags.IsComponentsV2,
      components: [container],
      files: [new AttachmentBuilder(png, { name: 'grid.png' })],
    });
    const original = handle.original();
    expect((original?.flags ?? 0) & MessageFlags.IsComponentsV2).toBe(MessageFlags.IsComponentsV2);
    expect(original?.components?.[0]).toMatchObject({ type: 17 });
    expect(original?.attachments.map((a) => a.filename)).toEqual(['grid.png']);
  });

  it('rejects the Components V2 rule breaks: content with the flag, removing it, a flag on the defer', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client);
    await interaction.deferReply();
    const text = new TextDisplayBuilder().setContent('hello');
    const withContent = await apiError(
      interaction.editReply({ content: 'legacy', flags: MessageFlags.IsComponentsV2, components: [text] }),
    );
    expect([withContent.status, withContent.code]).toEqual([400, 50035]);
    expect(JSON.stringify(withContent.rawError)).toContain(
      'MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2',
    );
    await interaction.editReply({ flags: MessageFlags.IsComponentsV2, components: [text] });
    const removed = await apiError(
      interaction.editReply({ flags: [], content: 'back to text', components: [] }),
    );
    expect([removed.status, removed.code]).toEqual([400, 50035]);

    const second = await imagine(fake, client);
    const deferred = await apiError(
      client.rest.post(Routes.interactionCallback(second.interaction.id, second.interaction.token), {
        body: { type: 5, data: { flags: MessageFlags.IsComponentsV2 } },
        auth: false,
      }),
    );
    expect(deferred.code).toBe(50035);
  });

  it('rejects component limits: gallery of 0 or 11 items, more than 40 components, custom_id over 100', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client);
    await interaction.deferReply();
    const v2 = MessageFlags.IsComponentsV2;
    const gallery = (n: number) => ({
      type: 12,
      items: Array.from({ length: n }, (_, i) => ({ media: { url: `https://example.com/${i}.png` } })),
    });
    expect(
      (await apiError(interaction.editReply({ flags: v2, components: [gallery(11) as never] }))).code,
    ).toBe(50035);
    expect(
      (await apiError(interaction.editReply({ flags: v2, components: [gallery(0) as never] }))).code,
    ).toBe(50035);
    const texts = Array.from({ length: 41 }, (_, i) => new TextDisplayBuilder().setContent(`line ${i}`));
    const tooMany = await apiError(interaction.editReply({ flags: v2, components: texts }));
    expect(JSON.stringify(tooMany.rawError)).toContain('COMPONENT_LAYOUT_TOO_MANY_COMPONENTS');
    const longId = {
      type: 1,
      components: [{ type: 2, style: ButtonStyle.Primary, label: 'go', custom_id: 'x'.repeat(101) }],
    };
    const long = await apiError(interaction.editReply({ content: 'pick', components: [longId as never] }));
    expect(long.code).toBe(50035);
    await interaction.editReply({ flags: v2, components: [gallery(10) as never] });
  });

  it('rejects empty or oversized messages and callback types that do not fit the interaction', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client);
    const callback = (body: unknown) =>
      apiError(
        client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
          body,
          auth: false,
        }),
      );
    expect((await callback({ type: 4, data: { content: '' } })).code).toBe(50006);
    expect((await callback({ type: 4, data: { content: 'x'.repeat(2_001) } })).code).toBe(50035);
    // UPDATE_MESSAGE is for component interactions; a slash command has no message to update.
    expect((await callback({ type: 7, data: { content: 'x' } })).code).toBe(50035);
    const input = { type: 4, custom_id: 'q', style: 1 };
    const modal = {
      custom_id: 'm',
      title: 'x'.repeat(46),
      components: [{ type: 18, label: 'Q', component: input }],
    };
    expect((await callback({ type: 9, data: modal })).code).toBe(50035);
    // Refused callbacks do not count as the ack: a valid one still goes through.
    await interaction.reply('ok');
  });

  it('rejects a second ack with 40060', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { handle, interaction } = await imagine(fake, client);
    await interaction.deferReply();
    // discord.js refuses a second reply itself, so a second ack comes from raw REST (as a second replica would).
    const error = await apiError(
      client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        body: { type: 4, data: { content: 'again' } },
        auth: false,
      }),
    );
    expect([error.status, error.code]).toEqual([400, 40060]);
    expect(handle.rejected()).toHaveLength(1);
  });

  it('rejects an ack later than 3 s with 404 10062', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client);
    fake.clock.advance(3_001);
    const error = await apiError(interaction.deferReply());
    expect([error.status, error.code]).toEqual([404, 10062]);
  });

  it('rejects the interaction token 15 minutes after dispatch with 401 50027', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client);
    await interaction.deferReply();
    fake.clock.advance(14 * 60_000);
    await interaction.editReply('still working');
    fake.clock.advance(60_001);
    const error = await apiError(interaction.editReply('too late'));
    expect([error.status, error.code]).toEqual([401, 50027]);
  });

  it('answers fast edits with 429 + Retry-After; discord.js waits and the edits then succeed', async () => {
    const fake = await fakeDiscord({ rateLimit: { limit: 2, windowMs: 300 } });
    const client = await connect(fake);
    const limited: number[] = [];
    client.rest.on('rateLimited', (info) => limited.push(info.retryAfter));
    const { handle, interaction } = await imagine(fake, client);
    await interaction.deferReply();
    for (let step = 1; step <= 4; step++) await interaction.editReply(`step ${step}`);
    expect(handle.original()?.content).toBe('step 4');
    expect(fake.rateLimitedCount).toBeGreaterThanOrEqual(1);
    expect(limited.length).toBe(fake.rateLimitedCount);
    const refused = fake.requests.find((r) => r.status === 429);
    expect(refused?.response).toMatchObject({ message: 'You are being rate limited.', global: false });
  });

  it('fills an ephemeral deferred reply with the first follow-up, as Discord does', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { handle, interaction } = await imagine(fake, client);
    await interaction.deferReply({ flags: MessageFlags.Ephemeral });
    const first = await interaction.followUp('here it is');
    expect(first.id).toBe(handle.original()?.id);
    expect(handle.original()).toMatchObject({ content: 'here it is', flags: MessageFlags.Ephemeral });
    await interaction.followUp('and a second message');
    expect(handle.followUps().map((m) => m.content)).toEqual(['and a second message']);
  });

  it('rejects a file over attachment_size_limit with 413 40005', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const { interaction } = await imagine(fake, client, { name: 'imagine', attachmentSizeLimit: 1_000 });
    await interaction.deferReply();
    const big = new AttachmentBuilder(Buffer.alloc(1_001), { name: 'big.png' });
    const error = await apiError(interaction.editReply({ files: [big] }));
    expect([error.status, error.code]).toEqual([413, 40005]);
    await interaction.editReply({ files: [new AttachmentBuilder(Buffer.alloc(1_000), { name: 'ok.png' })] });
  });

  it('allows 5 follow-ups where the app has no bot (user install), then 40094', async () => {
    // Follow-ups share the webhook's rate-limit bucket: six in a row would also wait for a 429.
    const fake = await fakeDiscord({ rateLimit: false });
    const client = await connect(fake);
    const { handle, interaction } = await imagine(fake, client, { name: 'imagine', where: 'foreign-guild' });
    expect(interaction.guild).toBeNull();
    expect(interaction.context).toBe(0);
    expect(interaction.authorizingIntegrationOwners[1]).toBe(fake.user.id);
    await interaction.reply('queued');
    for (let i = 1; i <= 5; i++) await interaction.followUp(`update ${i}`);
    const error = await apiError(interaction.followUp('one too many'));
    expect([error.status, error.code]).toEqual([400, 40094]);
    expect(handle.followUps()).toHaveLength(5);
    // The bot cannot read a channel it is not in.
    expect((await apiError(client.rest.get(Routes.channel(interaction.channelId ?? '')))).code).toBe(50001);
  });

  it('resumes after a server close with 4000 and replays the dispatches it missed', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const messages: Message[] = [];
    client.on(Events.MessageCreate, (message) => messages.push(message));
    fake.closeGateway(4000);
    fake.postUserMessage({ content: 'sent while you were away' });
    await fake.waitForResume();
    fake.postUserMessage({ content: 'sent after resume' });
    await fake.waitFor(() => messages.length >= 2, { what: 'two messageCreate events' });
    expect(messages.map((m) => m.content)).toEqual(['sent while you were away', 'sent after resume']);
    expect(fake.gatewayReceived.filter((p) => p.op === 6)).toHaveLength(1);
    expect(fake.sessions()).toHaveLength(1);
  });

  it('registers commands with PUT and keeps the set; interactions then carry the registered ids', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    await client.application?.commands.set([
      {
        name: 'imagine',
        description: 'Paint a prompt',
        options: [{ name: 'prompt', description: 'What', type: 3 }],
      },
      { name: 'Describe image', type: 3 },
    ]);
    expect(fake.requestsTo('PUT /applications/:app/commands')).toHaveLength(1);
    expect(fake.commands().map((c) => c.name)).toEqual(['imagine', 'Describe image']);
    const { interaction } = await imagine(fake, client);
    expect(interaction.commandId).toBe(fake.commands()[0]?.id);
    const bad = await apiError(
      client.application?.commands.set([{ name: 'Imagine', description: 'x' }]) ?? Promise.resolve(),
    );
    expect(bad.code).toBe(50035);
  });

  it('drives buttons, modals with a file upload, and message context menus through discord.js', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const channel = await client.channels.fetch(fake.channel.id);
    if (!channel?.isSendable()) throw new Error('default channel is not sendable');
    const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
      new ButtonBuilder().setCustomId('rerun:job-1').setLabel('Again').setStyle(ButtonStyle.Primary),
    );
    const sent = await channel.send({ content: 'job 1', components: [row] });

    const clicked = nextInteraction<Interaction>(client);
    const click = fake.interact(
      fake.buttonClick({ customId: 'rerun:job-1', message: fake.message(sent.id)! }),
    );
    const button = await clicked;
    if (!button.isButton()) throw new Error('expected a button interaction');
    expect(button.message.id).toBe(sent.id);
    await button.update({ content: 'job 1 (rerun queued)' });
    expect(click.ackType).toBe(7);
    expect(fake.message(sent.id)?.content).toBe('job 1 (rerun queued)');
    const clickedAgain = nextInteraction<Interaction>(client);
    fake.interact(fake.buttonClick({ customId: 'rerun:job-1', message: fake.message(sent.id)! }));
    const again = await clickedAgain;
    if (!again.isButton()) throw new Error('expected a button interaction');
    await again.deferUpdate();
    await again.editReply({ content: 'job 1 (edited after deferUpdate)' });
    expect(fake.message(sent.id)?.content).toBe('job 1 (edited after deferUpdate)');
    expect(() => fake.buttonClick({ customId: 'nope', message: fake.message(sent.id)! })).toThrow(
      /no enabled/,
    );

    const opened = nextInteraction(client);
    fake.interact(fake.slashCommand({ name: 'search' }));
    const command = await opened;
    await command.showModal(
      new ModalBuilder()
        .setCustomId('search-modal')
        .setTitle('Search')
        .addLabelComponents((label) =>
          label
            .setLabel('Query')
            .setTextInputComponent(
              new TextInputBuilder().setCustomId('query').setStyle(TextInputStyle.Short),
            ),
        ),
    );
    const upload = fake.addAttachment(await readFile(PNG_PATH), {
      filename: 'q.png',
      contentType: 'image/png',
    });
    const submitted = nextInteraction<Interaction>(client);
    fake.interact(
      fake.modalSubmit({
        customId: 'search-modal',
        fields: { query: 'red boats' },
        files: { image: [upload] },
      }),
    );
    const modal = await submitted;
    if (!modal.isModalSubmit()) throw new Error('expected a modal submit');
    expect(modal.fields.getTextInputValue('query')).toBe('red boats');
    expect(modal.fields.getUploadedFiles('image')?.first()?.url).toBe(upload.url);
    await modal.reply({ content: 'searching', flags: MessageFlags.Ephemeral });

    const photo = fake.addAttachment(await readFile(PNG_PATH), {
      filename: 'cat.png',
      contentType: 'image/png',
    });
    const target = fake.postUserMessage({ content: 'look', attachments: [photo], dispatch: false });
    const menu = nextInteraction<Interaction>(client);
    fake.interact(fake.messageCommand({ name: 'What is this?', target, where: 'bot-dm' }));
    const context = await menu;
    if (!context.isMessageContextMenuCommand()) throw new Error('expected a message context menu');
    expect(context.context).toBe(1);
    const url = context.targetMessage.attachments.first()?.url ?? '';
    expect((await fetch(url)).status).toBe(200);
  });

  it('DMs: a bot-dm interaction, a DM from the user, and the bot opening a DM (needs Partials.Channel)', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const seen = nextInteraction(client);
    const handle = fake.interact(fake.slashCommand({ name: 'imagine', where: 'bot-dm' }));
    const interaction = await seen;
    expect(interaction.channel?.isDMBased()).toBe(true);
    await interaction.reply('painting in your DMs');
    expect(handle.original()?.channel_id).toBe(fake.dmChannel());
    const got = once(client, Events.MessageCreate);
    fake.postUserMessage({ channelId: fake.dmChannel(), content: 'thanks' });
    const [dm] = (await got) as [Message];
    expect([dm.content, dm.channel.isDMBased()]).toEqual(['thanks', true]);
    // A DM channel discord.js has never seen: built from MESSAGE_CREATE's channel_type (with Partials.Channel).
    const carol = fake.addUser('carol');
    const fresh = once(client, Events.MessageCreate);
    fake.postUserMessage({ channelId: fake.dmChannel(carol), author: carol, content: 'hello from carol' });
    const [carolDm] = (await fresh) as [Message];
    expect([carolDm.author.id, carolDm.channel.isDMBased()]).toEqual([carol.id, true]);
    const user = await client.users.fetch(fake.user.id, { force: true });
    const sent = await user.send('your image is ready');
    expect(fake.message(sent.id)?.channel_id).toBe(fake.dmChannel());
  });

  it('signs CDN URLs that expire with the clock; a refetched message has fresh ones', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const photo = fake.addAttachment(Buffer.from('bytes'), {
      filename: 'a.bin',
      contentType: 'application/octet-stream',
    });
    const posted = fake.postUserMessage({ content: 'file', attachments: [photo], dispatch: false });
    expect((await fetch(photo.url)).status).toBe(200);
    expect((await fetch(photo.url.replace(/hm=[0-9a-f]+/, 'hm=00'))).status).toBe(404);
    fake.clock.advance(24 * 60 * 60_000 + 1_000);
    const stale = await fetch(photo.url);
    expect(stale.status).toBe(404);
    const channel = await client.channels.fetch(fake.channel.id);
    if (!channel?.isTextBased()) throw new Error('not text');
    const fresh = await channel.messages.fetch({ message: posted.id, force: true });
    expect((await fetch(fresh.attachments.first()?.url ?? '')).status).toBe(200);
  });

  it('serves channel history with before/after/limit, newest first', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake);
    const start = fake.clock.now() - 60_000;
    const seeded = [0, 1, 2, 3, 4].map((i) =>
      fake.postUserMessage({ content: `m${i}`, at: start + i * 1_000, dispatch: false }),
    );
    const channel = await client.channels.fetch(fake.channel.id);
    if (!channel?.isTextBased()) throw new Error('not text');
    const latest = await channel.messages.fetch({ limit: 2 });
    expect([...latest.values()].map((m) => m.content)).toEqual(['m4', 'm3']);
    const older = await channel.messages.fetch({ limit: 2, before: seeded[2]?.id ?? '' });
    expect([...older.values()].map((m) => m.content)).toEqual(['m1', 'm0']);
    const newer = await channel.messages.fetch({ limit: 2, after: seeded[1]?.id ?? '' });
    expect([...newer.values()].map((m) => m.content)).toEqual(['m3', 'm2']);
  });

  it('filters message events by intents: no DMs without DIRECT_MESSAGES, no content without MESSAGE_CONTENT', async () => {
    const fake = await fakeDiscord();
    const client = await connect(fake, [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages]);
    const messages: Message[] = [];
    client.on(Events.MessageCreate, (message) => messages.push(message));
    const photo = fake.addAttachment(Buffer.from('x'), {
      filename: 'x.bin',
      contentType: 'application/octet-stream',
    });
    // Without DIRECT_MESSAGES no DM events arrive at all (dispatch order would put it first).
    fake.postUserMessage({ channelId: fake.dmChannel(), content: 'a DM' });
    fake.postUserMessage({ content: 'secret', attachments: [photo] });
    fake.postUserMessage({ content: 'hey bot', mentionsBot: true });
    await fake.waitFor(() => messages.length >= 2, { what: 'two messageCreate events' });
    expect(messages.map((m) => [m.content, m.attachments.size])).toEqual([
      ['', 0],
      ['hey bot', 0],
    ]);
  });

  it('closes IDENTIFY asking for privileged intents the app lacks with 4014', async () => {
    const fake = await fakeDiscord({ allowedPrivilegedIntents: 0 });
    const client = new Client({
      intents: ALL_INTENTS,
      rest: { agent: discordRestAgent(), api: fake.apiUrl, retries: 0 },
    });
    cleanups.push(() => client.destroy());
    await expect(client.login(fake.token)).rejects.toThrow(/disallowed intents/i);
  });

  it('answers RESUME of a session ended by a non-resumable close with op 9 (identify again)', async () => {
    const fake = await fakeDiscord();
    const first = await rawGateway(fake);
    first.ws.send(JSON.stringify({ op: 2, d: { token: fake.token, intents: 1, properties: {} } }));
    const ready = (await first.next()) as { s: number; d: { session_id: string } };
    fake.closeGateway(4007);
    await once(first.ws, 'close');
    const second = await rawGateway(fake);
    const resume = { token: fake.token, session_id: ready.d.session_id, seq: ready.s };
    second.ws.send(JSON.stringify({ op: 6, d: resume }));
    expect(await second.next()).toMatchObject({ op: 9, d: false });
    second.ws.close();
  });

  it('speaks zlib-stream to clients that ask for it', async () => {
    const fake = await fakeDiscord();
    const ws = new WebSocket(`${fake.gatewayUrl}/?v=10&encoding=json&compress=zlib-stream`);
    cleanups.push(async () => ws.close());
    const [data] = (await once(ws, 'message')) as [Buffer];
    expect(data.subarray(-4)).toEqual(Buffer.from([0, 0, 0xff, 0xff]));
    expect(JSON.parse(inflateSync(data, { finishFlush: 2 }).toString())).toMatchObject({ op: 10 });
  });
});
