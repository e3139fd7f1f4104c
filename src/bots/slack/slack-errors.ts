// Web API refusals turned into the core's error codes, so a Slack problem (a missing scope, a
// channel the bot is not in, a deleted file) reaches the user as one of render.ts's sentences and
// never as Slack's raw error string. Pure: the error object in, a CodedError out.
import {
  asCodedError,
  CodedError,
  MissingScopeError,
  NoImageError,
  UnavailableError,
} from '../../shared/errors.js';

/** Slack's `error` string of a platform error (`missing_scope`, `not_in_channel`), if it is one. */
export function slackErrorOf(error: unknown): string | undefined {
  const e = error as { code?: unknown; data?: { error?: unknown } } | null;
  if (e?.code !== 'slack_webapi_platform_error') return undefined;
  return typeof e.data?.error === 'string' ? e.data.error : undefined;
}

/** The CodedError a user is told about for a failed Web API call. */
export function fromSlackError(error: unknown): CodedError {
  if (error instanceof CodedError) return error;
  const code = slackErrorOf(error);
  const needed = (error as { data?: { needed?: unknown } } | null)?.data?.needed;
  switch (code) {
    case 'missing_scope':
      return new MissingScopeError(typeof needed === 'string' ? needed : 'unknown', { slack: code });
    // Not a scope but the same remedy (invite the app), which the missing_scope sentence names; no
    // scope is named because none would help.
    case 'not_in_channel':
    case 'channel_not_found':
    case 'is_archived':
      return new CodedError('missing_scope', `slack refused: ${code}`, { details: { slack: code } });
    case 'file_not_found':
    case 'file_deleted':
    case 'message_not_found':
      return new NoImageError('message');
    case undefined:
      break;
    default:
      return asCodedError(error);
  }
  const e = error as { code?: unknown } | null;
  if (e?.code === 'slack_webapi_rate_limited_error' || e?.code === 'slack_webapi_request_error') {
    return new UnavailableError('slack is not answering', { cause: error });
  }
  return asCodedError(error);
}
