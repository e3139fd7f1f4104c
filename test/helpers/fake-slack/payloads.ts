// Builders for what Slack sends an app, in Slack's real shapes: slash commands, interactive payloads
// (block_actions, message_action, shortcut, view_submission) and Events API events with their
// event_callback wrapper. The fake binds them to its team, bot and fresh response_url / trigger_id.

import { randomUUID } from 'node:crypto';
import type { FileTombstone, SlackFile, SlackMessage } from './store.js';

export interface ResponseTarget {
  channel: string;
  user: string;
  messageTs?: string;
}

export interface PayloadContext {
  teamId: string;
  teamDomain: string;
  apiAppId: string;
  botUserId: string;
  botId: string;
  /** The legacy verification token; Bolt ignores it but Slack still sends it. */
  verificationToken: string;
  defaultUserId: string;
  defaultUserName: string;
  defaultChannelId: string;
  channelName(id: string): string;
  /** A fresh response_url, tied to where its messages go (and, for actions, the message to replace). */
  newResponseUrl(kind: 'commands' | 'actions', target: ResponseTarget): string;
  newTriggerId(): string;
  /** An event_ts / action_ts now, in Slack's "seconds.micros" form. */
  nowTs(): string;
}

/** Slash command fields; form-encoded over HTTP, a JSON object in Socket Mode. All strings, as Slack sends. */
export interface SlashCommandPayload {
  token: string;
  team_id: string;
  team_domain: string;
  channel_id: string;
  channel_name: string;
  user_id: string;
  user_name: string;
  command: string;
  text: string;
  api_app_id: string;
  is_enterprise_install: string;
  response_url: string;
  trigger_id: string;
  [key: string]: string;
}

export interface SlashCommandInput {
  command: string;
  text?: string;
  user_id?: string;
  user_name?: string;
  channel_id?: string;
}

interface UserRef {
  id: string;
  username: string;
  name: string;
  team_id: string;
}

export interface BlockActionsInput {
  action_id: string;
  value?: string;
  block_id?: string;
  /** The message the button sits on (for example `fake.message(channel, ts)`); omit for ephemeral ones. */
  message?: SlackMessage;
  message_ts?: string;
  channel_id?: string;
  user_id?: string;
  ephemeral?: boolean;
  text?: string;
}

export interface BlockActionsPayload {
  type: 'block_actions';
  user: UserRef;
  api_app_id: string;
  token: string;
  container: { type: 'message'; message_ts: string; channel_id: string; is_ephemeral: boolean };
  trigger_id: string;
  team: { id: string; domain: string };
  enterprise: null;
  is_enterprise_install: boolean;
  channel: { id: string; name: string };
  message?: SlackMessage;
  state: { values: Record<string, unknown> };
  response_url: string;
  actions: {
    type: 'button';
    action_id: string;
    block_id: string;
    text: { type: 'plain_text'; text: string; emoji: boolean };
    value?: string;
    action_ts: string;
  }[];
}

export interface MessageActionInput {
  callback_id: string;
  message: SlackMessage;
  channel_id?: string;
  user_id?: string;
}

export interface MessageActionPayload {
  type: 'message_action';
  token: string;
  action_ts: string;
  team: { id: string; domain: string };
  user: UserRef;
  channel: { id: string; name: string };
  is_enterprise_install: boolean;
  enterprise: null;
  callback_id: string;
  trigger_id: string;
  response_url: string;
  message_ts: string;
  message: SlackMessage;
}

export interface ShortcutPayload {
  type: 'shortcut';
  token: string;
  action_ts: string;
  team: { id: string; domain: string };
  user: UserRef;
  is_enterprise_install: boolean;
  enterprise: null;
  callback_id: string;
  trigger_id: string;
}

export interface ViewSubmissionInput {
  callback_id: string;
  /** state.values: block_id -> action_id -> element state, e.g. `{ prompt: { text: { type: 'plain_text_input', value: 'a cat' } } }`. */
  values?: Record<string, Record<string, Record<string, unknown>>>;
  private_metadata?: string;
  view_id?: string;
  user_id?: string;
  blocks?: unknown[];
}

export interface ViewSubmissionPayload {
  type: 'view_submission';
  team: { id: string; domain: string };
  user: UserRef;
  api_app_id: string;
  token: string;
  trigger_id: string;
  view: {
    id: string;
    team_id: string;
    type: 'modal';
    callback_id: string;
    private_metadata: string;
    blocks: unknown[];
    state: { values: Record<string, Record<string, Record<string, unknown>>> };
    hash: string;
    title: { type: 'plain_text'; text: string };
    app_id: string;
    bot_id: string;
  };
  response_urls: unknown[];
  is_enterprise_install: boolean;
  enterprise: null;
}

/** Any Events API event: the inner `event` of an event_callback. */
export interface SlackEvent {
  type: string;
  event_ts: string;
  [key: string]: unknown;
}

export interface EventCallback {
  token: string;
  team_id: string;
  context_team_id: string;
  api_app_id: string;
  event: SlackEvent;
  type: 'event_callback';
  event_id: string;
  event_time: number;
  authorizations: {
    enterprise_id: null;
    team_id: string;
    user_id: string;
    is_bot: boolean;
    is_enterprise_install: boolean;
  }[];
  is_ext_shared_channel: boolean;
  event_context: string;
}

export function createPayloadBuilders(ctx: PayloadContext) {
  const user = (id = ctx.defaultUserId): UserRef => ({
    id,
    username: id === ctx.defaultUserId ? ctx.defaultUserName : id.toLowerCase(),
    name: id === ctx.defaultUserId ? ctx.defaultUserName : id.toLowerCase(),
    team_id: ctx.teamId,
  });
  const team = () => ({ id: ctx.teamId, domain: ctx.teamDomain });
  const channel = (id = ctx.defaultChannelId) => ({ id, name: ctx.channelName(id) });

  const events = {
    /** A user's message; with files it is the `file_share` subtype Slack sends for uploads. */
    message(input: {
      text?: string;
      channel?: string;
      user?: string;
      ts?: string;
      thread_ts?: string;
      files?: SlackFile[];
      channel_type?: string;
    }): SlackEvent {
      const ts = input.ts ?? ctx.nowTs();
      return {
        type: 'message',
        ...(input.files !== undefined ? { subtype: 'file_share', files: input.files, upload: false } : {}),
        text: input.text ?? '',
        user: input.user ?? ctx.defaultUserId,
        display_as_bot: false,
        ts,
        ...(input.thread_ts !== undefined ? { thread_ts: input.thread_ts } : {}),
        channel: input.channel ?? ctx.defaultChannelId,
        channel_type: input.channel_type ?? 'channel',
        event_ts: ts,
      };
    },
    fileShared(input: { file_id: string; user_id?: string; channel_id?: string }): SlackEvent {
      return {
        type: 'file_shared',
        file_id: input.file_id,
        user_id: input.user_id ?? ctx.defaultUserId,
        file: { id: input.file_id },
        channel_id: input.channel_id ?? ctx.defaultChannelId,
        event_ts: ctx.nowTs(),
      };
    },
    /** The deleted message travels as previous_message, as Slack sends it. */
    messageDeleted(input: { previous_message: SlackMessage; channel?: string }): SlackEvent {
      const ts = ctx.nowTs();
      return {
        type: 'message',
        subtype: 'message_deleted',
        hidden: true,
        deleted_ts: input.previous_message.ts,
        channel: input.channel ?? ctx.defaultChannelId,
        previous_message: input.previous_message,
        event_ts: ts,
        ts,
        channel_type: 'channel',
      };
    },
    messageChanged(input: {
      message: SlackMessage;
      previous_message: SlackMessage;
      channel?: string;
    }): SlackEvent {
      const ts = ctx.nowTs();
      return {
        type: 'message',
        subtype: 'message_changed',
        hidden: true,
        message: { ...input.message, edited: input.message.edited ?? { user: input.message.user ?? '', ts } },
        channel: input.channel ?? ctx.defaultChannelId,
        previous_message: input.previous_message,
        event_ts: ts,
        ts,
        channel_type: 'channel',
      };
    },
    fileDeleted(input: { file_id: string; channel_ids?: string[] }): SlackEvent {
      return {
        type: 'file_deleted',
        file_id: input.file_id,
        ...(input.channel_ids !== undefined ? { channel_ids: input.channel_ids } : {}),
        event_ts: ctx.nowTs(),
      };
    },
    appHomeOpened(
      input: { user?: string; channel?: string; tab?: 'home' | 'messages'; view?: unknown } = {},
    ): SlackEvent {
      return {
        type: 'app_home_opened',
        user: input.user ?? ctx.defaultUserId,
        channel: input.channel ?? 'D0HOME0001',
        tab: input.tab ?? 'home',
        ...(input.view !== undefined ? { view: input.view } : {}),
        event_ts: ctx.nowTs(),
      };
    },
    memberJoinedChannel(input: { user?: string; channel?: string; inviter?: string } = {}): SlackEvent {
      return {
        type: 'member_joined_channel',
        user: input.user ?? ctx.botUserId,
        channel: input.channel ?? ctx.defaultChannelId,
        channel_type: 'C',
        team: ctx.teamId,
        ...(input.inviter !== undefined ? { inviter: input.inviter } : {}),
        event_ts: ctx.nowTs(),
      };
    },
  };

  return {
    slashCommand(input: SlashCommandInput): SlashCommandPayload {
      const channelId = input.channel_id ?? ctx.defaultChannelId;
      const userId = input.user_id ?? ctx.defaultUserId;
      return {
        token: ctx.verificationToken,
        team_id: ctx.teamId,
        team_domain: ctx.teamDomain,
        channel_id: channelId,
        channel_name: ctx.channelName(channelId),
        user_id: userId,
        user_name: input.user_name ?? ctx.defaultUserName,
        command: input.command,
        text: input.text ?? '',
        api_app_id: ctx.apiAppId,
        is_enterprise_install: 'false',
        response_url: ctx.newResponseUrl('commands', { channel: channelId, user: userId }),
        trigger_id: ctx.newTriggerId(),
      };
    },

    blockActions(input: BlockActionsInput): BlockActionsPayload {
      const channelId = input.channel_id ?? ctx.defaultChannelId;
      const messageTs = input.message?.ts ?? input.message_ts ?? ctx.nowTs();
      return {
        type: 'block_actions',
        user: user(input.user_id),
        api_app_id: ctx.apiAppId,
        token: ctx.verificationToken,
        container: {
          type: 'message',
          message_ts: messageTs,
          channel_id: channelId,
          is_ephemeral: input.ephemeral ?? false,
        },
        trigger_id: ctx.newTriggerId(),
        team: team(),
        enterprise: null,
        is_enterprise_install: false,
        channel: channel(channelId),
        ...(input.message !== undefined && input.ephemeral !== true ? { message: input.message } : {}),
        state: { values: {} },
        response_url: ctx.newResponseUrl('actions', {
          channel: channelId,
          user: input.user_id ?? ctx.defaultUserId,
          ...(input.ephemeral === true ? {} : { messageTs }),
        }),
        actions: [
          {
            type: 'button',
            action_id: input.action_id,
            block_id: input.block_id ?? randomUUID().slice(0, 5),
            text: { type: 'plain_text', text: input.text ?? input.action_id, emoji: true },
            ...(input.value !== undefined ? { value: input.value } : {}),
            action_ts: ctx.nowTs(),
          },
        ],
      };
    },

    messageAction(input: MessageActionInput): MessageActionPayload {
      const channelId = input.channel_id ?? ctx.defaultChannelId;
      return {
        type: 'message_action',
        token: ctx.verificationToken,
        action_ts: ctx.nowTs(),
        team: team(),
        user: user(input.user_id),
        channel: channel(channelId),
        is_enterprise_install: false,
        enterprise: null,
        callback_id: input.callback_id,
        trigger_id: ctx.newTriggerId(),
        response_url: ctx.newResponseUrl('actions', {
          channel: channelId,
          user: input.user_id ?? ctx.defaultUserId,
          messageTs: input.message.ts,
        }),
        message_ts: input.message.ts,
        message: input.message,
      };
    },

    shortcut(input: { callback_id: string; user_id?: string }): ShortcutPayload {
      return {
        type: 'shortcut',
        token: ctx.verificationToken,
        action_ts: ctx.nowTs(),
        team: team(),
        user: user(input.user_id),
        is_enterprise_install: false,
        enterprise: null,
        callback_id: input.callback_id,
        trigger_id: ctx.newTriggerId(),
      };
    },

    viewSubmission(input: ViewSubmissionInput): ViewSubmissionPayload {
      return {
        type: 'view_submission',
        team: team(),
        user: user(input.user_id),
        api_app_id: ctx.apiAppId,
        token: ctx.verificationToken,
        trigger_id: ctx.newTriggerId(),
        view: {
          id: input.view_id ?? 'V0MODAL0001',
          team_id: ctx.teamId,
          type: 'modal',
          callback_id: input.callback_id,
          private_metadata: input.private_metadata ?? '',
          blocks: input.blocks ?? [],
          state: { values: input.values ?? {} },
          hash: `${ctx.nowTs()}.fake`,
          title: { type: 'plain_text', text: 'Modal' },
          app_id: ctx.apiAppId,
          bot_id: ctx.botId,
        },
        response_urls: [],
        is_enterprise_install: false,
        enterprise: null,
      };
    },

    events,

    /** Wraps an event as the Events API delivers it (HTTP body, or the payload of an events_api envelope). */
    eventCallback(event: SlackEvent): EventCallback {
      return {
        token: ctx.verificationToken,
        team_id: ctx.teamId,
        context_team_id: ctx.teamId,
        api_app_id: ctx.apiAppId,
        event,
        type: 'event_callback',
        event_id: `Ev${randomUUID().replaceAll('-', '').slice(0, 10).toUpperCase()}`,
        event_time: Math.floor(Date.now() / 1000),
        authorizations: [
          {
            enterprise_id: null,
            team_id: ctx.teamId,
            user_id: ctx.botUserId,
            is_bot: true,
            is_enterprise_install: false,
          },
        ],
        is_ext_shared_channel: false,
        event_context: `4-fake-${randomUUID().slice(0, 8)}`,
      };
    },

    urlVerification(challenge: string = randomUUID()) {
      return { token: ctx.verificationToken, challenge, type: 'url_verification' as const };
    },
  };
}

export type PayloadBuilders = ReturnType<typeof createPayloadBuilders>;

/** A copy of a message with files gone: 'drop' removes them, 'tombstone' leaves `{id, mode:'tombstone'}`. */
export function withoutFiles(
  message: SlackMessage,
  mode: 'drop' | 'tombstone' = 'drop',
  ids?: readonly string[],
): SlackMessage {
  const gone = (f: SlackFile | FileTombstone) => ids === undefined || ids.includes(f.id);
  const files =
    mode === 'drop'
      ? (message.files ?? []).filter((f) => !gone(f))
      : (message.files ?? []).map((f): SlackFile | FileTombstone =>
          gone(f) ? { id: f.id, mode: 'tombstone' } : f,
        );
  const { files: _old, ...rest } = message;
  return files.length > 0 ? { ...rest, files } : rest;
}
