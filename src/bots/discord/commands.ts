// The application commands the Discord bot answers, as discord.js builders: what `registerCommands`
// PUTs (the whole set, so registering is idempotent) and what the interaction router matches by name.
// Limits (prompt length, steps, presets) come from the job schemas so Discord's client refuses early.
import {
  ApplicationCommandType,
  ApplicationIntegrationType,
  ChannelType,
  ContextMenuCommandBuilder,
  InteractionContextType,
  PermissionFlagsBits,
  type RESTPostAPIApplicationCommandsJSONBody,
  SlashCommandBuilder,
} from 'discord.js';
import { drawers, jobLimits, presets } from '../../shared/jobs.js';

/** Command and context-menu names, shared by the definitions and the router. */
export const CommandNames = {
  imagine: 'imagine',
  whatis: 'whatis',
  search: 'search',
  queue: 'queue',
  settings: 'settings',
  whatIsThis: 'What is this?',
  findSimilar: 'Find similar',
} as const;

// Everywhere a person can reach the app: servers that added the bot, the bot's DMs, and (user
// install) any server or group DM, where the bot itself cannot post.
const everywhere = [
  InteractionContextType.Guild,
  InteractionContextType.BotDM,
  InteractionContextType.PrivateChannel,
];
const bothInstalls = [ApplicationIntegrationType.GuildInstall, ApplicationIntegrationType.UserInstall];

const presetChoices = presets.map((p) => ({ name: p, value: p }));
const safetyChoices = [
  { name: 'show everything', value: 'off' },
  { name: 'hide flagged images behind a spoiler', value: 'spoiler' },
  { name: 'withhold flagged images', value: 'block' },
];

function imagine(): SlashCommandBuilder {
  const command = new SlashCommandBuilder()
    .setName(CommandNames.imagine)
    .setDescription('Paint a picture from words (VQGAN+CLIP)')
    .setIntegrationTypes(bothInstalls)
    .setContexts(everywhere);
  command
    .addStringOption((o) =>
      o
        .setName('prompt')
        .setDescription('What to paint; `a:1 | b:-0.5` weighs parts, a negative weight pushes away')
        .setRequired(true)
        .setMaxLength(jobLimits.promptChars),
    )
    .addStringOption((o) =>
      o
        .setName('preset')
        .setDescription('Quality and speed')
        .addChoices(...presetChoices),
    )
    .addStringOption((o) =>
      o
        .setName('size')
        .setDescription('One side (256) or WIDTHxHEIGHT (384x256), multiples of 16')
        .setMaxLength(11),
    )
    .addIntegerOption((o) =>
      o.setName('steps').setDescription('Optimisation steps').setMinValue(1).setMaxValue(jobLimits.maxSteps),
    )
    .addIntegerOption((o) =>
      o
        .setName('seed')
        .setDescription('Same seed, same picture')
        .setMinValue(0)
        .setMaxValue(2 ** 32 - 1),
    )
    .addAttachmentOption((o) => o.setName('init_image').setDescription('Start from this image'))
    .addAttachmentOption((o) => o.setName('image_prompt').setDescription('Paint towards this image'))
    .addStringOption((o) =>
      o
        .setName('drawer')
        .setDescription('vqgan-clip paints by optimising; dalle writes image tokens (minDALL-E)')
        .addChoices(...drawers.map((d) => ({ name: d, value: d }))),
    )
    .addIntegerOption((o) =>
      o
        .setName('candidates')
        .setDescription('dalle: samples to draw, CLIP keeps the best')
        .setMinValue(1)
        .setMaxValue(jobLimits.maxCandidates),
    );
  return command;
}

function whatis(): SlashCommandBuilder {
  const command = new SlashCommandBuilder()
    .setName(CommandNames.whatis)
    .setDescription('What is in an image? Top labels by CLIP')
    .setIntegrationTypes(bothInstalls)
    .setContexts(everywhere);
  command
    .addAttachmentOption((o) => o.setName('image').setDescription('The image').setRequired(true))
    .addStringOption((o) =>
      o
        .setName('labels')
        .setDescription('Your own labels, comma separated (cat, dog, human); empty: everyday objects')
        .setMaxLength(2000),
    );
  return command;
}

function search(): SlashCommandBuilder {
  // Channel search reads a server's indexed channels, so it exists only where the bot is installed.
  const command = new SlashCommandBuilder()
    .setName(CommandNames.search)
    .setDescription("Search this channel's images by words or by an example image")
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild);
  command
    .addStringOption((o) =>
      o.setName('query').setDescription('What the image shows').setMaxLength(jobLimits.queryChars),
    )
    .addAttachmentOption((o) => o.setName('image').setDescription('Find images like this one'));
  return command;
}

function queue(): SlashCommandBuilder {
  return new SlashCommandBuilder()
    .setName(CommandNames.queue)
    .setDescription('Your pictures in progress, with their place in the queue')
    .setIntegrationTypes(bothInstalls)
    .setContexts(everywhere);
}

function settings() {
  const textChannels = [
    ChannelType.GuildText,
    ChannelType.GuildAnnouncement,
    ChannelType.PublicThread,
    ChannelType.PrivateThread,
  ] as const;
  return new SlashCommandBuilder()
    .setName(CommandNames.settings)
    .setDescription('Server settings of the bot (Manage Server)')
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild)
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageGuild)
    .addSubcommand((s) => s.setName('show').setDescription('The current settings and indexed channels'))
    .addSubcommand((s) =>
      s
        .setName('defaults')
        .setDescription('Server defaults: preset and safety')
        .addStringOption((o) =>
          o
            .setName('preset')
            .setDescription('Preset when a person names none')
            .addChoices(...presetChoices),
        )
        .addStringOption((o) =>
          o
            .setName('safety')
            .setDescription('What happens to images the safety check flags')
            .addChoices(...safetyChoices),
        )
        .addBooleanOption((o) =>
          o
            .setName('age_restricted')
            .setDescription('Show flagged images (as spoilers) in age-restricted channels'),
        ),
    )
    .addSubcommand((s) =>
      s
        .setName('indexing')
        .setDescription("Index a channel's images for /search (reads people's images: opt in per channel)")
        .addBooleanOption((o) => o.setName('enabled').setDescription('On or off').setRequired(true))
        .addChannelOption((o) =>
          o
            .setName('channel')
            .setDescription('Default: this channel')
            .addChannelTypes(...textChannels),
        ),
    )
    .addSubcommand((s) =>
      s
        .setName('backfill')
        .setDescription("Index a channel's recent history (resumes where it stopped)")
        .addChannelOption((o) =>
          o
            .setName('channel')
            .setDescription('Default: this channel')
            .addChannelTypes(...textChannels),
        )
        .addIntegerOption((o) =>
          o
            .setName('messages')
            .setDescription('How many messages to read this time (default 1000)')
            .setMinValue(1)
            .setMaxValue(10_000),
        ),
    );
}

function messageMenu(name: string, guildOnly: boolean): ContextMenuCommandBuilder {
  return new ContextMenuCommandBuilder()
    .setName(name)
    .setType(ApplicationCommandType.Message)
    .setIntegrationTypes(guildOnly ? [ApplicationIntegrationType.GuildInstall] : bothInstalls)
    .setContexts(guildOnly ? [InteractionContextType.Guild] : everywhere);
}

/** The whole command set, as the JSON a PUT of /applications/:id/commands takes. */
export function commandDefinitions(): RESTPostAPIApplicationCommandsJSONBody[] {
  return [
    imagine().toJSON(),
    whatis().toJSON(),
    search().toJSON(),
    queue().toJSON(),
    settings().toJSON(),
    messageMenu(CommandNames.whatIsThis, false).toJSON(),
    messageMenu(CommandNames.findSimilar, true).toJSON(),
  ];
}
