// `npm run discord:register [-- --guild ID]`: PUTs the command set for DISCORD_APPLICATION_ID with
// DISCORD_TOKEN, globally or to one guild (the flag, else DISCORD_GUILD_ID). Only main files read
// process.env.
import { loadConfig } from '../../shared/config.js';
import { runMain } from '../../shared/shutdown.js';
import { parseRegisterArgs, registerCommands } from './register.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const { token, applicationId, apiUrl } = config.discord;
  if (token === undefined || applicationId === undefined) {
    throw new Error('set DISCORD_TOKEN and DISCORD_APPLICATION_ID to register the commands');
  }
  const args = parseRegisterArgs(process.argv.slice(2));
  const guildId = args.global ? undefined : (args.guildId ?? config.discord.guildId);
  const saved = await registerCommands({ token, applicationId, apiUrl, guildId });
  const where = guildId === undefined ? 'globally (may take up to an hour to show)' : `to guild ${guildId}`;
  console.log(`registered ${saved.length} commands ${where}: ${saved.map((c) => c.name).join(', ')}`);
}

runMain('discord:register', main);
