// Registers the bot's commands with Discord: one PUT of the whole set (global, or one guild's for
// development, where changes show at once), so running it twice leaves the same commands and a
// command removed from commands.ts disappears. `npm run discord:register` calls it.
import { REST, type RESTOptions, Routes } from 'discord.js';
import { commandDefinitions } from './commands.js';
import { discordRestAgent } from './rest-agent.js';

export interface RegisterCommandsOptions {
  token: string;
  applicationId: string;
  /** REST base URL (DISCORD_API_URL). @defaultValue Discord's */
  apiUrl?: string | undefined;
  /** Register to this guild only (DISCORD_GUILD_ID, `--guild ID`). @defaultValue global */
  guildId?: string | undefined;
  /** Extra REST options (tests lower retries and timeouts). */
  rest?: Partial<RESTOptions>;
}

export interface RegisteredCommand {
  id: string;
  name: string;
  type: number;
}

export async function registerCommands(options: RegisterCommandsOptions): Promise<RegisteredCommand[]> {
  const rest = new REST({
    agent: discordRestAgent(),
    ...options.rest,
    ...(options.apiUrl === undefined ? {} : { api: options.apiUrl }),
  }).setToken(options.token);
  const route =
    options.guildId === undefined
      ? Routes.applicationCommands(options.applicationId)
      : Routes.applicationGuildCommands(options.applicationId, options.guildId);
  try {
    const saved = (await rest.put(route, { body: commandDefinitions() })) as RegisteredCommand[];
    return saved.map(({ id, name, type }) => ({ id, name, type }));
  } finally {
    // The REST instance keeps sweeper timers; a one-shot call must not hold the process open.
    rest.clearHashSweeper();
    rest.clearHandlerSweeper();
  }
}

/** `--guild ID` or `--guild=ID`; `--global` overrides DISCORD_GUILD_ID. */
export function parseRegisterArgs(argv: readonly string[]): { guildId?: string; global: boolean } {
  let guildId: string | undefined;
  let global = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--global') global = true;
    else if (arg === '--guild') guildId = argv[++i];
    else if (arg.startsWith('--guild=')) guildId = arg.slice('--guild='.length);
    else throw new Error(`unknown argument ${arg}; use --guild ID or --global`);
  }
  if (guildId !== undefined && !/^\d{17,20}$/.test(guildId)) {
    throw new Error(`--guild takes a server id (digits), got ${JSON.stringify(guildId)}`);
  }
  return { ...(guildId === undefined ? {} : { guildId }), global };
}
