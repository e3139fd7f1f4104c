// The Slack adapter under test: the fake Slack, a bot stack (private Redis, tiny models, a real
// worker, the core's services) and startSlackBot on them, in Socket Mode or HTTP mode. Payloads go in
// the way Slack sends them (envelopes, or signed HTTP posts); `restart()` replaces the bot process.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach } from 'vitest';
import { parse } from 'yaml';
import type { BotServices } from '../../../src/bots/core/services.js';
import type { SlackClock } from '../../../src/bots/slack/rate-limits.js';
import { type SlackBot, type SlackBotOptions, startSlackBot } from '../../../src/bots/slack/slack-adapter.js';
import type { Logger } from '../../../src/shared/logger.js';
import type { BotStack, BotStackOptions, useBotStack } from '../../helpers/bot-stack.js';
import {
  type AckOutcome,
  type EnvelopeType,
  type FakeSlack,
  type FakeSlackOptions,
  type HttpDelivery,
  type ManualClock,
  type SlackEvent,
  type SlackMessage,
  startFakeSlack,
} from '../../helpers/fake-slack/index.js';

export type Mode = 'socket' | 'http';

/** slack-manifest.yml, as Slack would read it. */
export function manifest(): {
  features: { slash_commands: { command: string }[]; shortcuts: { callback_id: string; type: string }[] };
  oauth_config: { scopes: { bot: string[] } };
  settings: { event_subscriptions: { bot_events: string[] }; socket_mode_enabled: boolean };
} {
  return parse(readFileSync(new URL('../../../slack-manifest.yml', import.meta.url), 'utf8'));
}

/** Keeps warnings and errors (printed with SLACK_TEST_LOG=1), for failures worth reading. */
export function testLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      const line = `${level} ${typeof obj === 'string' ? obj : `${msg ?? ''} ${JSON.stringify(obj, errorsToo)}`}`;
      lines.push(line);
      if (process.env.SLACK_TEST_LOG) console.log(line);
    };
  return { lines, debug: () => {}, info: () => {}, warn: keep('warn'), error: keep('error') };
}

function errorsToo(_key: string, value: unknown) {
  return value instanceof Error ? { message: value.message, ...(value as object) } : value;
}

/** The fake's manual clock, plus sleepers woken when it moves: the adapter's rate-limit time. */
export function steppedClock(
  manual: ManualClock,
): SlackClock & { advance(ms: number): void; sleepers(): number } {
  const waiters = new Set<{ at: number; wake: () => void }>();
  return {
    now: () => manual.now(),
    sleep(ms, signal) {
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const w = {
          at: manual.now() + ms,
          wake: () => {
            waiters.delete(w);
            resolve();
          },
        };
        waiters.add(w);
        signal?.addEventListener('abort', () => {
          waiters.delete(w);
          reject(signal.reason);
        });
      });
    },
    advance(ms) {
      manual.advance(ms);
      for (const w of [...waiters]) if (w.at <= manual.now()) w.wake();
    },
    sleepers: () => waiters.size,
  };
}

export interface HarnessOptions {
  mode?: Mode;
  fake?: FakeSlackOptions;
  stack?: BotStackOptions;
  bot?: Partial<Omit<SlackBotOptions, 'services' | 'slack' | 'logger'>>;
  /** More of config.slack (e.g. previewImageUrls). */
  slack?: Partial<SlackBotOptions['slack']>;
}

export interface Harness {
  readonly fake: FakeSlack;
  readonly stack: BotStack;
  readonly mode: Mode;
  readonly bot: SlackBot;
  readonly logger: ReturnType<typeof testLogger>;
  /** The channel every test posts in (the fake's #general). */
  readonly channel: string;
  send(kind: EnvelopeType, payload: unknown): Promise<AckOutcome | HttpDelivery>;
  command(command: string, text: string, input?: { user_id?: string; channel_id?: string }): Promise<number>;
  event(event: SlackEvent): Promise<AckOutcome | HttpDelivery>;
  /** Presses a button of a bot message by its action id. */
  press(message: SlackMessage, actionId: string, input?: { user_id?: string }): Promise<number>;
  /** Ephemeral texts for a user so far. */
  ephemeralTexts(user?: string): string[];
  /** Waits for the n-th ephemeral (1-based) and returns its text. */
  nextEphemeral(count: number, timeoutMs?: number): Promise<string>;
  /** Stops this bot process and starts another on new services (a restart mid-job). */
  restart(): Promise<SlackBot>;
}

/** Ack latency of a delivery, in ms (Socket Mode ack or HTTP response). */
export function latencyOf(outcome: AckOutcome | HttpDelivery): number {
  if ('acked' in outcome) return outcome.acked ? outcome.latencyMs : Number.POSITIVE_INFINITY;
  return outcome.timedOut ? Number.POSITIVE_INFINITY : outcome.latencyMs;
}

/** Registers cleanup (before the stack's own, so the bot stops first); call at module level after useBotStack. */
export function useSlackHarness(stack: ReturnType<typeof useBotStack>) {
  const cleanups: { name: string; run: () => Promise<unknown> }[] = [];
  afterEach(async () => {
    for (const { name, run } of cleanups.splice(0).reverse()) {
      const t = performance.now();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        run().catch(() => {}),
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            console.log(`cleanup ${name} still running after 15 s; moving on`);
            resolve();
          }, 15_000);
        }),
      ]);
      clearTimeout(timer);
      const ms = performance.now() - t;
      if (ms > 2000 || process.env.SLACK_TEST_LOG) console.log(`cleanup ${name}: ${ms.toFixed(0)} ms`);
    }
  });
  return {
    async start(options: HarnessOptions = {}): Promise<Harness> {
      const mode = options.mode ?? 'socket';
      const logger = testLogger();
      // A team per test: the PGlite index is shared by the tests of a file.
      const fake = await startFakeSlack({
        teamId: `T${randomBytes(4).toString('hex').toUpperCase()}`,
        ...options.fake,
      });
      cleanups.push({ name: 'fake slack', run: () => fake.close() });
      // The token holds exactly the manifest's scopes: every test shows they are enough.
      fake.setScopes(fake.botToken, manifest().oauth_config.scopes.bot);
      const botStack = await stack.start(options.stack);
      const launch = async (services: BotServices) => {
        const bot = await startSlackBot({
          services,
          slack: {
            botToken: fake.botToken,
            signingSecret: fake.signingSecret,
            ...(mode === 'socket' ? { appToken: fake.appToken } : {}),
            apiUrl: fake.apiUrl,
            port: 0,
            ...options.slack,
          },
          logger,
          host: '127.0.0.1',
          apiRetries: 0,
          previewIntervalMs: 0,
          ...options.bot,
        });
        cleanups.push({ name: 'slack bot', run: () => bot.close() });
        // The fake's close() waits for events it is still delivering, but drops their ack timers when
        // it closes its sockets, so one caught in flight would hang it: let them settle first.
        cleanups.push({
          name: 'events in flight',
          run: async () => {
            fake.deliverEventsTo(undefined);
            await fake
              .waitFor(
                () => fake.deliveredEvents.every((e) => e.via === 'none' || e.outcome || e.error),
                5000,
              )
              .catch(() => {});
          },
        });
        fake.deliverEventsTo(mode === 'socket' ? 'socket' : { url: urlOf(bot) });
        return bot;
      };
      let bot = await launch(botStack.services);
      const send = (kind: EnvelopeType, payload: unknown) =>
        mode === 'socket' ? fake.socket.send(kind, payload) : fake.http.post(urlOf(bot), kind, payload);
      const status = (o: AckOutcome | HttpDelivery) => ('acked' in o ? (o.acked ? 200 : 0) : (o.status ?? 0));
      const harness: Harness = {
        fake,
        stack: botStack,
        mode,
        get bot() {
          return bot;
        },
        logger,
        channel: fake.defaultChannelId,
        send,
        async command(command, text, input = {}) {
          return status(await send('slash_commands', fake.build.slashCommand({ command, text, ...input })));
        },
        event: (event) => send('events_api', fake.build.eventCallback(event)),
        async press(message, actionId, input = {}) {
          return status(
            await send(
              'interactive',
              fake.build.blockActions({ action_id: actionId, value: actionId, message, ...input }),
            ),
          );
        },
        ephemeralTexts: (user = fake.defaultUserId) =>
          fake.ephemerals.filter((e) => e.user === user).map((e) => e.text),
        async nextEphemeral(count, timeoutMs = 15_000) {
          const all = await fake.waitFor(
            () => (fake.ephemerals.length >= count ? fake.ephemerals : undefined),
            timeoutMs,
          );
          return all[count - 1]?.text ?? '';
        },
        async restart() {
          await bot.close();
          const services = await botStack.restartBot();
          bot = await launch(services);
          return bot;
        },
      };
      return harness;
    },
  };
}

function urlOf(bot: SlackBot): string {
  return `http://127.0.0.1:${bot.port}/slack/events`;
}

/** A PNG of `size`x`size` noise from a seed: distinct images embed apart even on tiny CLIP. */
export async function noisePng(seed: number, size = 32): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  const pixels = Buffer.alloc(size * size * 3);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < pixels.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pixels[i] = x & 0xff;
  }
  return sharp(pixels, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
}

/** Messages the bot posted in a channel (top level and thread replies). */
export function botMessages(fake: FakeSlack, channel = fake.defaultChannelId): SlackMessage[] {
  return fake.messages(channel).filter((m) => m.bot_id === fake.botId);
}

/** The action ids on a message's buttons. */
export function actionIdsOf(message: SlackMessage | undefined): string[] {
  const ids: string[] = [];
  for (const block of (message?.blocks ?? []) as { type?: string; elements?: { action_id?: string }[] }[]) {
    if (block.type !== 'actions') continue;
    for (const el of block.elements ?? []) if (el.action_id) ids.push(el.action_id);
  }
  return ids;
}

/** Image blocks of a message: the file ids they name. */
export function imageFilesOf(message: SlackMessage | undefined): string[] {
  return ((message?.blocks ?? []) as { type?: string; slack_file?: { id?: string } }[])
    .filter((b) => b.type === 'image')
    .map((b) => b.slack_file?.id ?? '');
}

/** Top-level messages of the bot in a channel, oldest first. */
export function jobMessages(fake: FakeSlack, channel = fake.defaultChannelId): SlackMessage[] {
  return botMessages(fake, channel).filter((m) => m.thread_ts === undefined || m.thread_ts === m.ts);
}

/** Waits for the n-th job message (1-based) of the channel. */
export function nthJobMessage(fake: FakeSlack, n: number, channel?: string): Promise<SlackMessage> {
  return fake.waitFor(() => jobMessages(fake, channel)[n - 1], 15_000);
}

/** Waits until a job message carries its result buttons (or, with `text`, until its text matches). */
export function finished(fake: FakeSlack, ts: string, channel = fake.defaultChannelId, timeoutMs = 30_000) {
  return fake.waitFor(() => {
    const m = fake.message(channel, ts);
    return actionIdsOf(m).some((id) => id.startsWith('vq1:reroll:')) ? m : undefined;
  }, timeoutMs);
}

/** The id of a message's button for an action (`reroll`, `cancel`...). */
export function buttonOf(message: SlackMessage | undefined, action: string): string {
  const id = actionIdsOf(message).find((a) => a.split(':')[1] === action || a.startsWith(action));
  if (id === undefined) throw new Error(`no ${action} button on the message`);
  return id;
}
