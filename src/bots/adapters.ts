// Starts every chat adapter the configuration names (Discord when DISCORD_TOKEN is set, Slack when
// SLACK_BOT_TOKEN is set) on one set of bot services. `npm start` (src/app/stack.ts) and the bot-only
// entry (src/bots/main.ts) both call it, so a platform is wired in one place.
import type { Config } from '../shared/config.js';
import type { UndoStack } from '../shared/lifecycle.js';
import type { Logger } from '../shared/logger.js';
import type { BotServices } from './core/services.js';

type ChildLogger = Logger & { child?: (bindings: Record<string, unknown>) => Logger };

export interface ChatAdaptersOptions {
  config: Pick<Config, 'discord' | 'slack' | 'safety'>;
  services: BotServices;
  logger: ChildLogger;
  /** Each adapter's close is registered here. */
  undo: UndoStack;
}

/** A running adapter, for the start-up lines. */
export interface StartedAdapter {
  platform: 'discord' | 'slack';
  /** What the person at the terminal should know (`slack: socket mode`, `slack: http on :3001`). */
  description: string;
}

export async function startChatAdapters(options: ChatAdaptersOptions): Promise<StartedAdapter[]> {
  const started: StartedAdapter[] = [];
  const { config } = options;
  // Filled in as the adapters land: each is `if (token) { start; undo.push(close); started.push(...) }`.
  void config;
  return started;
}
