// Mistakes and refusals reach the person as ephemeral messages in the core's plain words (quota with
// when it frees up, bad options, a long prompt, files that are not images or too large, foreign
// hosts, expired jobs, a worker failure), and /whatis, Share, /queue and /settings do what they say.
import { readFile } from 'node:fs/promises';
import type { APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { FakeDiscord, InteractionHandle } from '../../helpers/fake-discord/index.js';
import {
  buttonIds,
  EPHEMERAL,
  ephemeralOf,
  eventually,
  isFinal,
  jobRefOf,
  textOf,
  useDiscordHarness,
} from './harness.js';

const harness = useDiscordHarness();
const PNG = new URL('../../fixtures/images/down-noise-61x45.png', import.meta.url);
const MANAGE_GUILD = 1n << 5n;

async function refusal(fake: FakeDiscord, handle: InteractionHandle): Promise<string> {
  const message = await fake.waitFor(() => ephemeralOf(handle), {
    timeoutMs: 10_000,
    what: 'an ephemeral answer',
  });
  return textOf(message);
}

/** A PNG whose header claims `width` x `height`: too many pixels, caught before decoding. */
function hugePngHeader(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes: Buffer) => {
    let c = 0xffffffff;
    for (const b of bytes) c = (crcTable[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('refusals in plain words', () => {
  it('says each bad input privately, and the public thinking reply goes away', async () => {
    const { fake } = await harness.start();
    const slash = (options: Record<string, unknown>) =>
      fake.interact(
        fake.slashCommand({ name: 'imagine', options: { prompt: 'a cat', ...options } as never }),
      );
    const text = fake.addAttachment(Buffer.from('hello, not a picture'), {
      filename: 'note.png',
      contentType: 'image/png',
    });
    const huge = fake.addAttachment(hugePngHeader(20_000, 20_000), {
      filename: 'huge.png',
      contentType: 'image/png',
    });
    const png = fake.addAttachment(await readFile(PNG), { filename: 'cat.png', contentType: 'image/png' });
    const foreign = {
      ...png,
      url: 'https://images.example.com/cat.png',
      proxy_url: 'https://images.example.com/cat.png',
    };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ steps: 5000, size: 'big' }, /not valid: steps: must be a whole number from 1 to 1000; size: /],
      [{ prompt: 'x'.repeat(1500) }, /Your prompt has 1500 characters; the limit is 1000/],
      [{ prompt: 'a cat:' }, /weight in the prompt is not a number/],
      [{ init_image: text }, /not an image I can read/],
      [{ init_image: huge }, /That image has 400 MP; the limit is 40 MP/],
      [{ image_prompt: foreign }, /I can only read images uploaded to Discord/],
    ];
    const handles = cases.map(([options]) => slash(options));
    for (const [index, [, expected]] of cases.entries()) {
      const handle = handles[index] as InteractionHandle;
      expect(await refusal(fake, handle)).toMatch(expected);
      await fake.waitFor(
        () => handle.original() === undefined || (handle.original()?.flags ?? 0) & EPHEMERAL,
        {
          what: 'the public reply gone',
        },
      );
    }
  });

  it('quota: the second job of the hour is refused with when it frees up', async () => {
    const { fake } = await harness.start({ stack: { imagineQuota: { concurrent: 4, perWindow: 1 } } });
    const first = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'one', steps: 3, size: '64' } }),
    );
    await fake.waitFor(() => (first.original()?.components?.length ?? 0) > 0, { what: 'the first job' });
    const second = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'two', steps: 3, size: '64' } }),
    );
    expect(await refusal(fake, second)).toMatch(
      /You have reached your limit of 1 jobs per hour\. Try again in \d+ (h|min|s)/,
    );
  });

  it('a job that expired, and a worker failure, are said in words', async () => {
    const { fake, stack } = await harness.start();
    const parent = await paint(fake, { prompt: 'a kept thing', steps: 3, size: '64' });
    const ref = jobRefOf(parent) ?? '';
    const gone = 'imagine:00000000-0000-4000-8000-000000000000';
    const fakeButton: APIMessage = {
      ...parent,
      components: [
        { type: 1, components: [{ type: 2, style: 1, label: 'Re-roll', custom_id: `vq1:reroll:${gone}` }] },
      ],
    };
    const expired = fake.interact(fake.buttonClick({ customId: `vq1:reroll:${gone}`, message: fakeButton }));
    expect(await refusal(fake, expired)).toMatch(/does not exist any more/);

    // The saved state is corrupted behind the bot's back: the worker fails, and the message says so.
    const status = await stack.services.jobs.status(ref as `imagine:${string}`);
    if (status.state !== 'completed' || !status.result.latentBlob) throw new Error('no saved state');
    const key = status.result.latentBlob;
    // A blob key is its Redis hash; its TTL stays, so Continue still finds the state.
    await stack.services.connection.hset(key, 'data', Buffer.from('garbage'));
    const cont = fake.interact(fake.buttonClick({ customId: `vq1:continue:${ref}`, message: parent }));
    await fake.waitFor(() => /saved generation state is unreadable/.test(textOf(cont.original())), {
      timeoutMs: 20_000,
      what: 'the failure on the job message',
    });
    expect(textOf(cont.original())).not.toMatch(/Error:|at .*\.ts/);
    // One click tries again: a Re-roll of the failed job.
    expect(buttonIds(cont.original())).toEqual([`vq1:reroll:${jobRefOf(cont.original())}`]);
  });
});

describe('what the bot sees, and the person lists', () => {
  it('/whatis answers privately with labels, and Share posts them in the channel', async () => {
    const { fake } = await harness.start();
    const image = fake.addAttachment(await readFile(PNG), { filename: 'pet.png', contentType: 'image/png' });
    const handle = fake.interact(
      fake.slashCommand({ name: 'whatis', options: { image, labels: 'cat, dog, `human`' } }),
    );
    expect(await handle.waitForAck()).toBe(5);
    const answer = await fake.waitFor(() => (handle.original()?.content ? handle.original() : undefined), {
      timeoutMs: 10_000,
      what: 'the labels',
    });
    expect((answer.flags ?? 0) & EPHEMERAL).toBe(EPHEMERAL);
    expect(answer.content).toMatch(/```\n[\s\S]*%[\s\S]*```/);
    expect(answer.content).toContain('\u02cbhuman\u02cb');
    for (const label of ['cat', 'dog']) expect(answer.content).toContain(label);
    const share = fake.interact(fake.buttonClick({ customId: 'vqd:share', message: answer }));
    const shared = await fake.waitFor(() => share.followUps()[0], { what: 'the shared message' });
    expect((shared.flags ?? 0) & EPHEMERAL).toBe(0);
    expect(shared.content).toContain(`Shared by <@${fake.user.id}>`);
    expect(handle.original()?.components ?? []).toEqual([]);
  });

  it('"What is this?" reads a message image; a message without one is said so', async () => {
    const { fake } = await harness.start();
    const photo = fake.addAttachment(await readFile(PNG), {
      filename: 'photo.png',
      contentType: 'image/png',
    });
    const withImage = fake.postUserMessage({ content: 'look', attachments: [photo], dispatch: false });
    const plain = fake.postUserMessage({ content: 'just words', dispatch: false });
    const handle = fake.interact(fake.messageCommand({ name: 'What is this?', target: withImage }));
    const none = fake.interact(
      fake.messageCommand({ name: 'What is this?', target: plain, where: 'bot-dm' }),
    );
    await fake.waitFor(() => handle.original()?.content.includes('%'), {
      timeoutMs: 10_000,
      what: 'the labels',
    });
    expect(handle.original()?.content).toContain('photo.png');
    expect(await refusal(fake, none)).toBe('That message has no image I can read.');
  });

  it('/queue lists the running job with its place; /settings needs Manage Server and sets the preset', async () => {
    const { fake, stack } = await harness.start();
    const running = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        options: { prompt: 'a patient *snail*', steps: 1000, size: '64' },
      }),
    );
    await fake.waitFor(() => (running.original()?.components?.length ?? 0) > 0, { what: 'the job' });
    // The reply's message id comes back with its first edit (the defer returns no body), and the bot
    // saves it with the in-flight entry a moment after the fake has shown the edit.
    await eventually(
      async () => (await stack.services.inflight.list('discord'))[0]?.reply.messageId !== undefined,
      { what: 'the reply message id saved' },
    );
    const queue = fake.interact(fake.slashCommand({ name: 'queue' }));
    const listed = await refusal(fake, queue);
    expect(listed).toContain('One picture in progress');
    expect(listed).toContain('a patient \\*snail\\*');
    expect(listed).toContain(
      `https://discord.com/channels/${fake.guild.id}/${fake.channel.id}/${running.original()?.id}`,
    );

    const denied = fake.interact(fake.slashCommand({ name: 'settings', subcommand: 'show' }));
    expect(await refusal(fake, denied)).toBe('Only server or workspace admins can change these settings.');
    const admin = fake.slashCommand({
      name: 'settings',
      subcommand: 'defaults',
      options: { preset: 'draft' },
    });
    if (admin.member) admin.member.permissions = String(BigInt(admin.member.permissions) | MANAGE_GUILD);
    const saved = fake.interact(admin);
    expect(await refusal(fake, saved)).toContain('Preset: draft');
    expect(await stack.services.settings.workspace('discord', fake.guild.id)).toEqual({ preset: 'draft' });
    const cancel = fake.interact(
      fake.buttonClick({
        customId: `vq1:cancel:${jobRefOf(running.original())}`,
        message: running.original()!,
      }),
    );
    await fake.waitFor(() => ephemeralOf(cancel), { what: 'the cancel' });
    const drafted = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a quick sketch', steps: 2, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(drafted.original()), { timeoutMs: 20_000, what: 'the drafted image' });
    const ref = jobRefOf(drafted.original()) as `imagine:${string}`;
    expect((await stack.services.jobs.data(ref))?.preset).toBe('draft');
    await eventually(async () => (await stack.services.inflight.list('discord')).length === 0, {
      what: 'nothing in flight',
    });
  });
});

async function paint(fake: FakeDiscord, options: Record<string, string | number>): Promise<APIMessage> {
  const handle = fake.interact(fake.slashCommand({ name: 'imagine', options }));
  await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
  return handle.original() as APIMessage;
}
