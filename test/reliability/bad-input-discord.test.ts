// Bad files and buttons through the real discord.js against the fake Discord and a real worker on
// the tiny models: damaged images and files that are no image, a 100 MB upload, a 1,000-frame GIF,
// a damaged init image that only the worker can find out, prompts no one should send, and buttons
// that name no job of this server. Each answer is a sentence; the bot and the worker go on.
import type { APIAttachment, APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { ImagineJob } from '../../src/shared/jobs.js';
import {
  buttonIds,
  EPHEMERAL,
  ephemeralOf,
  isFinal,
  jobRefOf,
  textOf,
  useDiscordHarness,
} from '../bots/discord/harness.js';
import type { FakeDiscord, InteractionHandle } from '../helpers/fake-discord/index.js';
import { corrupt, goodImage, manyFrameGif, notImages, truncated } from './bad-files.js';

const harness = useDiscordHarness();
const NOT_AN_IMAGE = 'That file is not an image I can read. Try a PNG, JPEG, WebP or GIF.';

async function privateAnswer(fake: FakeDiscord, handle: InteractionHandle): Promise<string> {
  const message = await fake.waitFor(() => ephemeralOf(handle), {
    timeoutMs: 20_000,
    what: 'an ephemeral answer',
  });
  return textOf(message);
}

describe('files that cannot be read', () => {
  it('/whatis answers each damaged or non-image file with one sentence, and labels a 1,000-frame GIF', async () => {
    const { fake } = await harness.start();
    const files: [string, Buffer, string][] = [
      ['truncated.jpg', truncated(await goodImage('jpeg')), 'image/jpeg'],
      ['corrupt.jpg', corrupt(await goodImage('jpeg')), 'image/jpeg'],
      ['corrupt.png', corrupt(await goodImage('png')), 'image/png'],
      ['truncated.png', truncated(await goodImage('png')), 'image/png'],
      ['truncated.webp', truncated(await goodImage('webp')), 'image/webp'],
      ['truncated.gif', truncated(await goodImage('gif')), 'image/gif'],
      ['paper.pdf', notImages['paper.pdf'] as Buffer, 'application/pdf'],
      ['clip.mp4', notImages['clip.mp4'] as Buffer, 'video/mp4'],
      ['drawing.svg', notImages['drawing.svg'] as Buffer, 'image/svg+xml'],
    ];
    const handles = files.map(([filename, bytes, contentType]) => {
      const image = fake.addAttachment(bytes, { filename, contentType });
      return fake.interact(fake.slashCommand({ name: 'whatis', options: { image } }));
    });
    for (const [i, handle] of handles.entries()) {
      expect(await privateAnswer(fake, handle), files[i]?.[0]).toBe(NOT_AN_IMAGE);
    }
    const gif = fake.addAttachment(await manyFrameGif(1000), {
      filename: 'frames.gif',
      contentType: 'image/gif',
    });
    const labelled = fake.interact(fake.slashCommand({ name: 'whatis', options: { image: gif } }));
    const answer = await fake.waitFor(
      () => (labelled.original()?.content ? labelled.original() : undefined),
      {
        timeoutMs: 20_000,
        what: 'the labels of the GIF',
      },
    );
    expect((answer.flags ?? 0) & EPHEMERAL).toBe(EPHEMERAL);
    expect(answer.content).toMatch(/```\n[\s\S]*%[\s\S]*```/);
  });

  it('a 100 MB upload is refused by its size, whether Discord reports it or only the download shows it', async () => {
    const { fake } = await harness.start();
    const big = Buffer.alloc(100 * 1024 * 1024);
    big.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const honest = fake.addAttachment(big, { filename: 'huge.png', contentType: 'image/png' });
    // A client that lies about the size: only the CDN's Content-Length tells.
    const lying: APIAttachment = { ...honest, size: 2048 };
    const sentence = 'That image is 100 MiB; the limit is 25 MiB. Please send a smaller one.';
    for (const image of [honest, lying]) {
      const whatis = fake.interact(fake.slashCommand({ name: 'whatis', options: { image } }));
      expect(await privateAnswer(fake, whatis)).toBe(sentence);
      const imagine = fake.interact(
        fake.slashCommand({ name: 'imagine', options: { prompt: 'a cat', init_image: image } }),
      );
      expect(await privateAnswer(fake, imagine)).toBe(sentence);
    }
  });

  it('/imagine with a damaged JPEG as init image: the worker refuses it, the reply says so, the next job paints', async () => {
    const { fake } = await harness.start();
    const init = fake.addAttachment(corrupt(await goodImage('jpeg')), {
      filename: 'start.jpg',
      contentType: 'image/jpeg',
    });
    const handle = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        options: { prompt: 'a harbour', steps: 3, size: '64', init_image: init },
      }),
    );
    await fake.waitFor(() => textOf(handle.original()).includes(NOT_AN_IMAGE), {
      timeoutMs: 30_000,
      what: 'the failure on the reply',
    });
    expect(textOf(handle.original())).not.toMatch(/Error:|at .*\.ts|vips/i);
    const next = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a harbour', steps: 3, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(next.original()), { timeoutMs: 30_000, what: 'the next image' });
  });
});

describe('prompts', () => {
  it('a 10,000-character prompt, one of spaces and one of zero-width joiners each get their sentence', async () => {
    const { fake } = await harness.start();
    const cases: [string, string][] = [
      ['x'.repeat(10_000), 'Your prompt has 10000 characters; the limit is 1000. Please shorten it.'],
      ['        ', 'The prompt is empty.'],
      ['\u200d\u200d\u200b', 'The prompt is empty.'],
      ['blurry:-1', 'At least one part of the prompt needs a positive weight.'],
    ];
    const handles = cases.map(([prompt]) =>
      fake.interact(fake.slashCommand({ name: 'imagine', options: { prompt } })),
    );
    for (const [i, handle] of handles.entries()) {
      expect(await privateAnswer(fake, handle)).toBe(cases[i]?.[1]);
    }
  });
});

describe('buttons that name no job of this server', () => {
  /** A copy of `message` whose one button carries `customId` (Discord only lets a message's own ids be clicked). */
  const withButton = (message: APIMessage, customId: string): APIMessage => ({
    ...message,
    components: [{ type: 1, components: [{ type: 2, style: 1, label: 'Go', custom_id: customId }] }],
  });

  it('an unknown action, a malformed id and another server’s job are each refused in words', async () => {
    const { fake, stack } = await harness.start();
    const first = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'my own lake', steps: 3, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(first.original()), { timeoutMs: 30_000, what: 'the image' });
    const mine = first.original() as APIMessage;
    const other: ImagineJob = {
      prompt: 'the secret plans of another server',
      seed: 2,
      steps: 3,
      size: { width: 64, height: 64 },
      origin: { platform: 'discord', workspace: '999999999999999999', channel: '1', user: fake.user.id },
    };
    const { jobId } = await stack.services.jobs.submit('imagine', other, {
      userId: `discord:x:${fake.user.id}`,
    });
    const cases: [string, string][] = [
      [
        'vq1:explode:imagine:00000000-0000-4000-8000-000000000000',
        'This button is from an older version of the bot.',
      ],
      ['vq1:reroll:imagine:not-a-uuid', 'That job does not exist any more (results are kept for a day).'],
      ['something-else', 'This button is from an older version of the bot.'],
      [`vq1:reroll:${jobId}`, 'That job does not exist any more (results are kept for a day).'],
      [`vq1:cancel:${jobId}`, 'That job does not exist any more (results are kept for a day).'],
    ];
    for (const [customId, expected] of cases) {
      const click = fake.interact(fake.buttonClick({ customId, message: withButton(mine, customId) }));
      const said = await privateAnswer(fake, click);
      expect(said, customId).toBe(expected);
      expect(said).not.toContain('secret plans');
    }
    // Its own buttons still work.
    const reroll = buttonIds(mine).find((id) => id.startsWith('vq1:reroll:')) ?? '';
    expect(reroll).toBe(`vq1:reroll:${jobRefOf(mine)}`);
    const again = fake.interact(fake.buttonClick({ customId: reroll, message: mine }));
    await fake.waitFor(() => again.followUps().length > 0 || again.original() !== undefined, {
      what: 'the re-roll',
    });
  });
});
