// The HTTP agent every @discordjs/rest client of this process sends through.
//
// @discordjs/rest sends with undici 6's request() and, given no agent, through the process-wide
// dispatcher undici keeps on globalThis (Symbol.for('undici.globalDispatcher.1')). undici 7 (a
// dependency of ours: the address guard, Slack's socket mode) fills that same slot when it is
// loaded first, and undici 6 then hands its requests to undici 7's Agent, which cannot send
// undici 6's multipart bodies: every file upload (previews, final images) failed with "action is
// not a function". So REST gets an Agent of its own undici, whatever was loaded before. That
// undici is resolved from where @discordjs/rest is installed (discord.js -> @discordjs/rest ->
// undici): it is not a dependency of ours, and a copy of our own could be another version.
import { createRequire } from 'node:module';
import type { RESTOptions } from 'discord.js';

type RestAgent = NonNullable<RESTOptions['agent']>;

let agent: RestAgent | undefined;

/** One Agent (undici's defaults, as the global one had) for the process's REST clients. */
export function discordRestAgent(): RestAgent {
  if (agent === undefined) {
    const fromDiscordJs = createRequire(createRequire(import.meta.url).resolve('discord.js'));
    const fromRest = createRequire(fromDiscordJs.resolve('@discordjs/rest'));
    const undici = fromRest('undici') as { Agent: new () => RestAgent };
    agent = new undici.Agent();
  }
  return agent;
}
