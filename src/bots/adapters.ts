// Starts every chat adapter the configuration names (Discord when DISCORD_TOKEN is set, Slack when
// SLACK_BOT_TOKEN is set) on one set of bot services. `npm start` (src/app/stack.ts) and the bot-only
// entry (src/bots/main.ts) both call it, so a platform is wired in one place.
import type { Config } from '../shared/config.js';
import type { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import type { Metrics } from '../shared/metrics.js';
import type { BotServices } from './core/services.js';
import { startDiscordBot } from './discord/discord-adapter.js';
import { startSlackBot } from './slack/slack-adapter.js';

type ChildLogger = Logger & { child?: (bindings: Record<string, unknown>) => Logger };

export interface ChatAdaptersOptions {
  config: Pick<Config, 'discord' | 'slack' | 'safety'>;
  services: BotServices;
  logger: ChildLogger;
  /** Each adapter's close is registered here. */
  undo: UndoStack;
  /** Counts each platform's API calls and 429s (observability.ts). @defaultValue none */
  metrics?: Metrics | undefined;
}

/** A running adapter, for the start-up lines. */
export interface StartedAdapter {
  platform: 'discord' | 'slack';
  /** What the person at the terminal should know (`slack: socket mode`, `slack: http on :3001`). */
  description: string;
}

export async function startChatAdapters(options: ChatAdaptersOptions): Promise<StartedAdapter[]> {
  const started: StartedAdapter[] = [];
  const { config, services, undo } = options;
  const child = (name: string): Logger => options.logger.child?.({ name }) ?? options.logger;
  if (config.discord.token) {
    const discord = await startDiscordBot({
      services,
      discord: config.discord,
      logger: child('bot:discord'),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    });
    undo.push('discord', () => discord.close());
    started.push({
      platform: 'discord',
      description: `discord: connected${discord.messageContent ? '' : ' (no Message Content intent: channel search off)'}${
        discord.reattached > 0 ? `, following ${discord.reattached} jobs again` : ''
      }`,
    });
  }
  if (config.slack.botToken) {
    const slack = await startSlackBot({
      services,
      slack: config.slack,
      logger: child('bot:slack'),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    });
    undo.push('slack', () => slack.close());
    started.push({
      platform: 'slack',
      description:
        slack.mode === 'socket'
          ? 'slack: socket mode'
          : `slack: http mode on port ${slack.port ?? config.slack.port} at /slack/events`,
    });
  }
  return started;
}
