// Channel image search against the fake Slack and a real worker: images posted in a channel are
// indexed from events, edits and deletes take them out, /imagesearch and "Find similar" answer from
// that channel only, and a backfill pages through history within its rate limit, resumable across a
// restart without fetching or indexing anything twice.
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { ChatCore } from '../../../src/bots/core/chat.js';
import { ingestPolicy } from '../../../src/bots/core/ingest.js';
import { useBotStack } from '../../helpers/bot-stack.js';
import { createManualClock, type SlackMessage, withoutFiles } from '../../helpers/fake-slack/index.js';
import {
  type Harness,
  imageFilesOf,
  jobMessages,
  noisePng,
  steppedClock,
  useSlackHarness,
} from './harness.js';

const stack = useBotStack();
const slack = useSlackHarness(stack);

/** How many images the channel's index holds (every hit, and the near-duplicates folded into it). */
async function indexed(h: Harness, channel = h.channel): Promise<number> {
  const core = new ChatCore({ platform: 'slack', ...h.stack.services, ingest: ingestPolicy('slack') });
  const scope = { platform: 'slack', workspace: h.fake.teamId, channel } as const;
  const result = await core.search({ text: 'anything', k: 50 }, scope, { platform: 'slack', user: 'test' });
  return (
    result.hits.reduce((n, hit) => n + 1 + (hit.duplicates ?? 0), 0) + (result.hits.length === 0 ? 0 : 0)
  );
}

/** The embed-image jobs that ran (kept by BullMQ): which file became which index row. */
async function embedded(h: Harness): Promise<{ file: string; imageId: string; duplicate: boolean }[]> {
  const queue = new Queue('embed-image', { connection: h.stack.services.connection, prefix: h.stack.prefix });
  try {
    const jobs = await queue.getCompleted(0, 1000);
    return jobs.map((j) => ({
      file: String(j.data.file),
      imageId: String(j.returnvalue?.imageId),
      duplicate: j.returnvalue?.duplicate === true,
    }));
  } finally {
    await queue.close();
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function post(h: Harness, seed: number, channel = h.channel): Promise<SlackMessage> {
  const file = h.fake.addFile(await noisePng(seed), { name: `img-${seed}.png`, channel });
  const message = h.fake.messages(channel).find((m) => m.files?.[0]?.id === file.id);
  if (!message) throw new Error('seeded message missing');
  await h.event(h.fake.build.events.message({ files: [file], ts: message.ts, channel }));
  return message;
}

describe('channel image search', () => {
  it('indexes posted images, searches one channel, finds similar, and follows edits and deletes', async () => {
    const h = await slack.start();
    const art = h.fake.addChannel({ name: 'art' }).id;
    const [a, b, c] = [await post(h, 1), await post(h, 2), await post(h, 3)];
    await post(h, 4, art);
    await eventually(async () => (await indexed(h)) === 3 && (await indexed(h, art)) === 1);

    await h.command('/imagesearch', 'a red bicycle --k 5');
    await h.nextEphemeral(1);
    const answer = h.fake.ephemerals[0];
    expect(answer?.text).toMatch(/^\d+ match(es)?, best first\./);
    const shown = imageFilesOf({ ...answer, ts: '', type: 'message', text: '' } as SlackMessage);
    const ours = [a, b, c].map((m) => m.files?.[0]?.id);
    expect(shown.length).toBeGreaterThan(0);
    expect(shown.every((f) => ours.includes(f))).toBe(true);
    expect(JSON.stringify(answer?.blocks)).toContain(`/archives/${h.channel}/p`);
    expect(answer?.blocks?.[0]).toMatchObject({
      text: { text: expect.stringMatching(/^\*a red bicycle\*: /) },
    });

    // Find similar: by the message's image, which is left out of its own results.
    await h.send('interactive', h.fake.build.messageAction({ callback_id: 'find_similar', message: a }));
    await h.nextEphemeral(2);
    const similar = imageFilesOf({
      ...h.fake.ephemerals[1],
      ts: '',
      type: 'message',
      text: '',
    } as SlackMessage);
    expect(similar).not.toContain(a.files?.[0]?.id);
    expect(similar.every((f) => ours.includes(f))).toBe(true);

    // An edit that drops the file, a deleted message, a deleted file (known only from the ledger).
    await h.event(h.fake.build.events.messageChanged({ message: withoutFiles(b), previous_message: b }));
    await eventually(async () => (await indexed(h)) === 2);
    await h.event(h.fake.build.events.messageDeleted({ previous_message: c }));
    await eventually(async () => (await indexed(h)) === 1);
    await h.event(
      h.fake.build.events.fileDeleted({ file_id: a.files?.[0]?.id ?? '', channel_ids: [h.channel] }),
    );
    await eventually(async () => (await indexed(h)) === 0);
    await h.command('/imagesearch', 'a red bicycle');
    expect(await h.nextEphemeral(3)).toBe('No matching images in this channel yet.');
    expect(await indexed(h, art)).toBe(1);
  });

  it('indexes a file known only from file_shared, skips its own uploads, and drops hits whose file is gone', async () => {
    const h = await slack.start({ mode: 'http' });
    const file = h.fake.addFile(await noisePng(5), { name: 'shared.png', channel: h.channel });
    await h.event(h.fake.build.events.fileShared({ file_id: file.id, channel_id: h.channel }));
    await eventually(async () => (await indexed(h)) === 1);

    // The bot's own image (an /imagine result) is not the channel's: not indexed.
    await h.command('/imagine', 'a green door --steps 3 --size 64');
    await h.fake.waitFor(() => imageFilesOf(jobMessages(h.fake)[0]).length > 0, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await indexed(h)).toBe(1);

    // Deleted without an event reaching the bot: the search leaves it out and heals the index.
    const record = h.fake.file(file.id);
    if (record) record.deleted = true;
    await h.command('/imagesearch', 'a door');
    expect(await h.nextEphemeral(1)).toBe('No matching images in this channel yet.');
    await eventually(async () => (await indexed(h)) === 0);
  });
});

describe('backfill', () => {
  it('pages through history within its rate limit, survives a restart and resumes without repeats', async () => {
    const manual = createManualClock();
    const clock = steppedClock(manual);
    const h = await slack.start({ fake: { clock: manual }, bot: { clock } });
    // The oldest: an image the bot itself posted (its own results are not the channel's).
    const own = h.fake.addFile(await noisePng(99), { name: 'own.png' });
    h.fake.seedMessage(h.channel, { bot_id: h.fake.botId, files: [own] });
    const files = [];
    for (let i = 0; i < 20; i++)
      files.push(h.fake.addFile(await noisePng(100 + i), { name: `old-${i}.png`, channel: h.channel }));
    h.fake.seedMessage(h.channel, { text: 'no image here' });

    // The bot is added to the channel: a backfill starts on its own.
    await h.event(h.fake.build.events.memberJoinedChannel({ channel: h.channel }));
    const scope = { platform: 'slack', workspace: h.fake.teamId, channel: h.channel } as const;
    // The first page (15 messages) indexed and its cursor saved, the second waiting for the limit.
    await eventually(
      async () =>
        (await h.stack.services.settings.channel(scope)).backfillCursor !== null && clock.sleepers() > 0,
      30_000,
    );
    expect(h.fake.callsTo('conversations.history')).toHaveLength(1);
    // The page: the bot's own progress note (skipped), the text message and 13 images.
    expect(await embedded(h)).toHaveLength(13);
    const note = jobMessages(h.fake).find((m) => m.text.startsWith('Indexing'));
    expect(note?.text).toMatch(/13 images from 15 messages so far\. .* about 60 s\./);

    // The process stops mid-backfill; the next one resumes from the saved cursor.
    await h.restart();
    // Its first call meets the limit (the fake remembers the last one): it waits Retry-After, no retries in between.
    await h.fake.waitFor(() => h.fake.rateLimited.length === 1 && clock.sleepers() > 0, 15_000);
    clock.advance(30_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(h.fake.callsTo('conversations.history')).toHaveLength(2);
    clock.advance(30_000);
    await eventually(async () => (await h.stack.services.settings.channel(scope)).backfillDone, 30_000);
    const calls = h.fake.callsTo('conversations.history');
    expect(calls.map((c) => c.status)).toEqual([200, 429, 200]);
    expect((calls[2]?.at ?? 0) - (calls[0]?.at ?? 0)).toBeGreaterThanOrEqual(60_000);
    // Twenty rows, each file embedded once: the resumed run started after the first page.
    const rows = await embedded(h);
    expect(rows).toHaveLength(20);
    expect(new Set(rows.map((r) => r.imageId)).size).toBe(20);
    expect(new Set(rows.map((r) => r.file))).toEqual(new Set(files.map((f) => f.id)));
    expect(await indexed(h)).toBeGreaterThan(0);
    const perFile = new Map<string, number>();
    for (const d of h.fake.downloads) perFile.set(d.fileId, (perFile.get(d.fileId) ?? 0) + 1);
    expect([...perFile.values()].every((n) => n === 1)).toBe(true);
    expect(perFile.size).toBe(20);
    await h.fake.waitFor(() => jobMessages(h.fake).some((m) => m.text.startsWith('Done indexing')));
    expect(jobMessages(h.fake).find((m) => m.text.startsWith('Done indexing'))?.text).toMatch(
      /7 images from 8 messages/,
    );

    await h.command('/imagesearch', 'backfill');
    expect(await h.nextEphemeral(1)).toBe(
      "This channel's history is indexed already; new images are indexed as they are posted.",
    );
  });
});
