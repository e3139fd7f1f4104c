// /imagine with real discord.js against the fake Discord, a real worker on the tiny models and real
// Redis: the deferred reply, preview edits, the final Components V2 message and its buttons.
import { setTimeout as sleep } from 'node:timers/promises';
import { Events } from 'discord.js';
import type { APIMessage } from 'discord-api-types/v10';
import { describe, expect, it } from 'vitest';
import type { FakeDiscord } from '../../helpers/fake-discord/index.js';
import {
  buttonIds,
  componentsOf,
  EDIT_ORIGINAL,
  editsOf,
  ephemeralOf,
  eventually,
  isFinal,
  jobRefOf,
  textOf,
  useDiscordHarness,
  V2,
} from './harness.js';

const harness = useDiscordHarness();

describe('/imagine', () => {
  it('defers, edits the reply with previews, then posts the final image with its buttons', async () => {
    const { fake, bot } = await harness.start();
    const handle = fake.interact(
      fake.slashCommand({
        name: 'imagine',
        options: { prompt: 'a red apple @everyone', steps: 60, size: '64', seed: 5 },
      }),
    );
    expect(await handle.waitForAck()).toBe(5);
    const callback = handle.requests().find((r) => r.route.startsWith('POST /interactions'));
    const ackMs = (callback?.at ?? 0) - handle.dispatchedAt;
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
    const edits = editsOf(handle);
    const previews = edits.filter((r) => r.files.some((f) => f.filename.startsWith('preview.')));
    console.log(`ack ${ackMs} ms; ${edits.length} edits, ${previews.length} with a preview`);
    expect(ackMs).toBeLessThan(3_000);
    expect(previews.length).toBeGreaterThanOrEqual(2);
    const final = handle.original();
    expect((final?.flags ?? 0) & V2).toBe(V2);
    expect(final?.attachments.map((a) => a.filename)).toEqual(['vqclip-5.png']);
    const gallery = componentsOf(final).find((c) => c.type === 12) as { items: { media: { url: string } }[] };
    expect(gallery.items[0]?.media.url).toContain('vqclip-5.png');
    const ref = jobRefOf(final);
    expect(buttonIds(final)).toEqual([
      `vq1:reroll:${ref}`,
      `vq1:variations:${ref}`,
      `vq1:continue:${ref}`,
      `vq1:remix:${ref}`,
      `vq1:timelapse:${ref}`,
    ]);
    // The prompt is escaped and pings nobody.
    expect(textOf(final)).toContain('a red apple @\u200beveryone');
    expect(textOf(final)).toContain('Seed 5 · 60 steps · 64×64');
    for (const edit of edits) expect(edit.body).toMatchObject({ allowed_mentions: { parse: [] } });
    // Progress carried Cancel; the final has none.
    const firstEdit = edits[0]?.body as { components?: unknown[] };
    expect(JSON.stringify(firstEdit.components)).toContain(`vq1:cancel:${ref}`);
    expect(buttonIds(final).some((id) => id.startsWith('vq1:cancel'))).toBe(false);
    await eventually(async () => (await bot.core.runner.inflightOf('discord', fake.user.id)).length === 0, {
      what: 'the in-flight entry dropped',
    });
  });

  it('acks first: its work waits while another interaction of the process awaits its ack', async () => {
    const { fake, bot, stack } = await harness.start();
    const acks = stack.services.acks;
    // The adapter registers each interaction as it arrives (its listener runs before this one).
    const unackedOnArrival: number[] = [];
    bot.client.on(Events.InteractionCreate, () => unackedOnArrival.push(acks.unacked));
    const other = {}; // a Slack request, or another Discord interaction, not acked yet
    acks.arrived(other);
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a kite', steps: 8, size: '64' } }),
    );
    expect(await handle.waitForAck()).toBe(5);
    expect(unackedOnArrival).toEqual([2]);
    await sleep(300);
    // Deferred, and nothing more: no job queued, no reply edited.
    expect(handle.requests().filter((r) => r.route === EDIT_ORIGINAL)).toHaveLength(0);
    expect(await bot.core.runner.inflightOf('discord', fake.user.id)).toHaveLength(0);
    acks.acked(other);
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
  });

  it('waits out 429 Retry-After on progress edits; the final still lands', async () => {
    const { fake, logger } = await harness.start({ fake: { rateLimit: { limit: 2, windowMs: 1_000 } } });
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a busy street', steps: 40, size: '64' } }),
    );
    await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 30_000, what: 'the final image' });
    expect(fake.rateLimitedCount).toBeGreaterThan(0);
    // Every refusal was a 429 that discord.js waited out; none was given up on.
    const refused = fake.requests.filter((r) => r.status >= 400);
    expect(
      refused.every((r) => r.status === 429 && r.route === 'PATCH /webhooks/:app/:token/messages/@original'),
    ).toBe(true);
    await handle.waitForRequest((r) => r.status === 200 && JSON.stringify(r.body).includes('vq1:reroll:'));
    // Waited out, not failed and retried: no edit was given up on.
    const warnings = logger.lines.filter((l) => l.level === 'warn').map((l) => l.msg);
    expect(warnings).not.toContain('posting the result failed; giving the claim back');
    expect(warnings).not.toContain('update callback failed');
  });

  it('Re-roll, Variations, Continue and Timelapse each answer with a new message', async () => {
    const { fake } = await harness.start();
    const parent = await paint(fake, { prompt: 'a blue boat', steps: 3, size: '64', seed: 9 });
    const ref = jobRefOf(parent);
    const clicks = ['reroll', 'variations', 'continue', 'timelapse'].map((action) =>
      fake.interact(fake.buttonClick({ customId: `vq1:${action}:${ref}`, message: parent })),
    );
    const [reroll, variations, cont, timelapse] = clicks;
    for (const click of clicks) expect(await click.waitForAck()).toBe(5);
    for (const click of [reroll, variations, cont]) {
      await fake.waitFor(() => isFinal(click?.original()), { timeoutMs: 30_000, what: 'a follow-up image' });
    }
    expect(textOf(reroll?.original())).toContain('a blue boat');
    expect(textOf(reroll?.original())).not.toContain('Seed 9 ');
    expect(textOf(variations?.original())).toContain('3 steps');
    expect(textOf(cont?.original())).toContain('Seed 9 · 53 steps');
    await fake.waitFor(() => (timelapse?.original()?.attachments.length ?? 0) > 0, { what: 'the timelapse' });
    expect(timelapse?.original()?.attachments[0]?.filename).toMatch(/^timelapse\.(webp|gif|png)$/);
    expect(textOf(timelapse?.original())).toContain('Timelapse');
  });

  it('Remix opens a modal with the prompt, and its submission paints the new prompt', async () => {
    const { fake } = await harness.start();
    const parent = await paint(fake, { prompt: 'a quiet forest', steps: 3, size: '64' });
    const ref = jobRefOf(parent);
    const click = fake.interact(fake.buttonClick({ customId: `vq1:remix:${ref}`, message: parent }));
    expect(await click.waitForAck()).toBe(9);
    const modal = click.requests().find((r) => r.route.startsWith('POST /interactions'))?.body as {
      data: { custom_id: string; components: { component: { value: string; custom_id: string } }[] };
    };
    expect(modal.data.custom_id).toBe(`vq1:remix:${ref}`);
    expect(modal.data.components[0]?.component).toMatchObject({
      custom_id: 'prompt',
      value: 'a quiet forest',
    });
    const submit = fake.interact(
      fake.modalSubmit({
        customId: `vq1:remix:${ref}`,
        fields: { prompt: 'a quiet forest at night' },
        message: parent,
      }),
    );
    expect(await submit.waitForAck()).toBe(5);
    await fake.waitFor(() => isFinal(submit.original()), { timeoutMs: 20_000, what: 'the remix' });
    expect(textOf(submit.original())).toContain('a quiet forest at night');
  });

  it('Cancel: refused for someone else, done for the requester', async () => {
    const { fake } = await harness.start();
    const handle = fake.interact(
      fake.slashCommand({ name: 'imagine', options: { prompt: 'a long night', steps: 1000, size: '64' } }),
    );
    await fake.waitFor(() => buttonIds(handle.original()).find((id) => id.startsWith('vq1:cancel:')), {
      what: 'the Cancel button',
    });
    const cancelId = buttonIds(handle.original()).find((id) => id.startsWith('vq1:cancel:')) ?? '';
    const bob = fake.addUser('bob');
    const refused = fake.interact(
      fake.buttonClick({ customId: cancelId, message: handle.original()!, user: bob }),
    );
    await fake.waitFor(() => textOf(ephemeralOf(refused)).includes('Only the person who started'), {
      what: 'the refusal',
    });
    const cancel = fake.interact(fake.buttonClick({ customId: cancelId, message: handle.original()! }));
    await fake.waitFor(() => /Cancel/.test(textOf(ephemeralOf(cancel))), { what: 'the cancel answer' });
    expect(textOf(ephemeralOf(cancel))).toMatch(/Cancelled before it started|Cancelling/);
    await fake.waitFor(() => textOf(handle.original()).includes('Cancelled.'), {
      timeoutMs: 10_000,
      what: 'the job message saying Cancelled',
    });
    expect(buttonIds(handle.original()).some((id) => id.startsWith('vq1:cancel'))).toBe(false);
  });
});

/** Runs /imagine to its final message and returns that message. */
async function paint(fake: FakeDiscord, options: Record<string, string | number>): Promise<APIMessage> {
  const handle = fake.interact(fake.slashCommand({ name: 'imagine', options }));
  await fake.waitFor(() => isFinal(handle.original()), { timeoutMs: 20_000, what: 'the final image' });
  const message = handle.original();
  if (!message) throw new Error('no final message');
  return message;
}
