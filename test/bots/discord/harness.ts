// The Discord adapter under test: the bot stack (private Redis, tiny models, a real worker, the
// core's services), a fake Discord with the commands registered, and startDiscordBot logged in to
// it with the fake's clock. `restart()` is a bot process dying and a new one re-attaching.
import type { APIMessage } from 'discord-api-types/v10';
import { afterEach } from 'vitest';
import {
  type DiscordBot,
  type DiscordBotOptions,
  startDiscordBot,
} from '../../../src/bots/discord/discord-adapter.js';
import { registerCommands } from '../../../src/bots/discord/register.js';
import type { Logger } from '../../../src/shared/logger.js';
import { type BotStack, type BotStackOptions, useBotStack } from '../../helpers/bot-stack.js';

import {
  type FakeDiscord,
  type FakeDiscordOptions,
  type InteractionHandle,
  type RecordedRequest,
  startFakeDiscord,
} from '../../helpers/fake-discord/index.js';

const VOCABULARY = ['cat', 'dog', 'bird', 'car', 'tree', 'house', 'person', 'boat', 'flower', 'mountain'];

export const EDIT_ORIGINAL = 'PATCH /webhooks/:app/:token/messages/@original';
export const V2 = 1 << 15;
export const EPHEMERAL = 1 << 6;

export interface LogLine {
  level: string;
  obj: unknown;
  msg: string | undefined;
}

export function collectingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push(typeof obj === 'string' ? { level, obj: {}, msg: obj } : { level, obj, msg });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export interface HarnessOptions {
  fake?: FakeDiscordOptions;
  stack?: BotStackOptions;
  bot?: Partial<Omit<DiscordBotOptions, 'services' | 'discord'>>;
}

export interface Harness {
  fake: FakeDiscord;
  stack: BotStack;
  bot: DiscordBot;
  logger: Logger & { lines: LogLine[] };
  /** The bot process dies (adapter closed, services released) and a new one starts and re-attaches. */
  restart(): Promise<DiscordBot>;
}

export function useDiscordHarness(): { start(options?: HarnessOptions): Promise<Harness> } {
  // A small default vocabulary: "What is this?" has no labels option, and CLIP's full vocabulary
  // (>1000 labels x 80 templates) costs the tiny models ~11 s of one core.
  const stacks = useBotStack({
    classifier: { defaultLabels: VOCABULARY, defaultTemplates: ['a photo of a {}.', 'a picture of a {}.'] },
  });
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });
  return {
    async start(options: HarnessOptions = {}) {
      const logger = collectingLogger();
      const stack = await stacks.start({
        throttleMs: 300,
        logger,
        imagineQuota: { concurrent: 8, perWindow: 100 },
        ...options.stack,
      });
      // Rate limits off unless a test turns them on: discord.js waits out every 429 in real time.
      const fake = await startFakeDiscord({ heartbeatIntervalMs: 1_000, rateLimit: false, ...options.fake });
      cleanups.push(() => fake.close());
      await registerCommands({
        token: fake.token,
        applicationId: fake.applicationId,
        apiUrl: fake.apiUrl,
        rest: { retries: 0 },
      });
      const launch = async (): Promise<DiscordBot> => {
        const bot = await startDiscordBot({
          services: stack.services,
          discord: {
            token: fake.token,
            applicationId: fake.applicationId,
            apiUrl: fake.apiUrl,
            cdnUrl: fake.cdnUrl,
          },
          logger,
          rest: { retries: 0, timeout: 10_000 },
          now: () => fake.clock.now(),
          backfillPauseMs: 10,
          ...options.bot,
        });
        cleanups.push(() => bot.close());
        return bot;
      };
      const harness: Harness = {
        fake,
        stack,
        logger,
        bot: await launch(),
        async restart() {
          await harness.bot.close();
          await stack.restartBot();
          harness.bot = await launch();
          return harness.bot;
        },
      };
      return harness;
    },
  };
}

/** Every component of a message, nested ones included, depth first. */
export function componentsOf(message: APIMessage | undefined): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const walk = (nodes: unknown): void => {
    if (!Array.isArray(nodes)) return;
    for (const node of nodes) {
      if (typeof node !== 'object' || node === null) continue;
      out.push(node as Record<string, unknown>);
      walk((node as { components?: unknown }).components);
      const accessory = (node as { accessory?: unknown }).accessory;
      if (accessory) walk([accessory]);
    }
  };
  walk(message?.components);
  return out;
}

/** The custom ids of a message's buttons. */
export function buttonIds(message: APIMessage | undefined): string[] {
  return componentsOf(message)
    .filter((c) => c.type === 2 && typeof c.custom_id === 'string')
    .map((c) => c.custom_id as string);
}

/** The text of a message's text displays and content, joined. */
export function textOf(message: APIMessage | undefined): string {
  const texts = componentsOf(message)
    .filter((c) => c.type === 10)
    .map((c) => String(c.content));
  return [message?.content ?? '', ...texts].filter((t) => t !== '').join('\n');
}

/** A message whose buttons include Re-roll: the final image of a job. */
export function isFinal(message: APIMessage | undefined): boolean {
  return buttonIds(message).some((id) => id.startsWith('vq1:reroll:')) && ((message?.flags ?? 0) & V2) !== 0;
}

/** Successful edits of an interaction's reply. */
export function editsOf(handle: InteractionHandle): RecordedRequest[] {
  return handle.requests().filter((r) => r.route === EDIT_ORIGINAL && r.status === 200);
}

/** The job ref in a message's buttons (`imagine:<uuid>`). */
export function jobRefOf(message: APIMessage | undefined): string | undefined {
  const id = buttonIds(message).find((b) => b.startsWith('vq1:'));
  return id?.split(':').slice(2).join(':');
}

/** The ephemeral message an interaction left for its user (its reply, or a follow-up). */
export function ephemeralOf(handle: InteractionHandle): APIMessage | undefined {
  const all = [handle.original(), ...handle.followUps()];
  return all.find((m) => m !== undefined && ((m.flags ?? 0) & EPHEMERAL) !== 0 && textOf(m) !== '');
}

export function pngOf(message: APIMessage | undefined): string | undefined {
  return message?.attachments.find((a) => /\.(png|jpg|webp)$/.test(a.filename))?.filename;
}

/** Polls an async probe until it returns something truthy (fake.waitFor takes sync probes only). */
export async function eventually<T>(
  probe: () => Promise<T | undefined | null | false>,
  { timeoutMs = 10_000, what = 'a condition' }: { timeoutMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
