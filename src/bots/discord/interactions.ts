// The receiver: every INTERACTION_CREATE goes to one handler by command name, button id or modal id.
// A handler's failure is logged and told to the person in plain words; nothing escapes to discord.js.
import type { Interaction } from 'discord.js';
import { parseActionId, unknownButtonError } from '../core/actions.js';
import { CommandNames } from './commands.js';
import { ComponentIds } from './components.js';
import { type DiscordContext, tellError } from './context.js';
import { onImagine, onJobButton, onQueue, onRemixSubmit } from './imagine-flow.js';
import { onSettings } from './settings-flow.js';
import { onFindSimilar, onSearch, onShare, onWhatIsThis, onWhatis } from './vision-flow.js';

export async function routeInteraction(ctx: DiscordContext, i: Interaction): Promise<void> {
  if (!i.isRepliable()) return;
  try {
    if (i.isChatInputCommand()) {
      switch (i.commandName) {
        case CommandNames.imagine:
          return await onImagine(ctx, i);
        case CommandNames.whatis:
          return await onWhatis(ctx, i);
        case CommandNames.search:
          return await onSearch(ctx, i);
        case CommandNames.queue:
          return await onQueue(ctx, i);
        case CommandNames.settings:
          return await onSettings(ctx, i);
      }
    } else if (i.isMessageContextMenuCommand()) {
      if (i.commandName === CommandNames.whatIsThis) return await onWhatIsThis(ctx, i);
      if (i.commandName === CommandNames.findSimilar) return await onFindSimilar(ctx, i);
    } else if (i.isButton()) {
      if (i.customId === ComponentIds.share) return await onShare(ctx, i);
      if (parseActionId(i.customId)) return await onJobButton(ctx, i);
    } else if (i.isModalSubmit()) {
      if (parseActionId(i.customId)?.action === 'remix') return await onRemixSubmit(ctx, i);
    }
    // A command registered by a newer version, or a button of an older one.
    await tellError(ctx, i, unknownButtonError());
  } catch (error) {
    await tellError(ctx, i, error);
  }
}
