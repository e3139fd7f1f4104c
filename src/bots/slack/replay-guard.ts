// HTTP mode's guard against replayed requests. Bolt verifies each request's signature and refuses
// timestamps older than 5 minutes, but within those 5 minutes it accepts the same signed bytes again:
// someone who captured one /imagine could run it over and over on its author's quota. The signature
// is a MAC over the timestamp and the body, so a signature seen twice is a replay (Slack's own retries
// are signed anew with a new timestamp). Sightings live in Redis for the window, so every bot process
// behind a load balancer shares them. Socket Mode needs none of this: its envelopes arrive over a
// socket the app opened with its own token.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AnyMiddlewareArgs, Middleware } from '@slack/bolt';
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';

/** The context property the receiver fills in with the request's signature. */
export const SIGNATURE_PROPERTY = 'slackRequestSignature';

/** Bolt's 5 minutes plus a minute of clock skew between Slack and this host. */
export const REPLAY_WINDOW_SECONDS = 6 * 60;

/** HTTPReceiver's customPropertiesExtractor: the signature header, for the guard to read. */
export function signatureProperty(req: IncomingMessage): Record<string, string> {
  const header = req.headers['x-slack-signature'];
  const signature = Array.isArray(header) ? header[0] : header;
  return signature === undefined ? {} : { [SIGNATURE_PROPERTY]: signature };
}

/**
 * Global Bolt middleware: the first request with a signature goes on; another with the same
 * signature within the window is acked (so Slack sees no error) and dropped, with a warning. When
 * Redis cannot answer the request goes on: refusing everything would not stop a replay either, and
 * the job submission right after says what is wrong.
 */
export function replayGuard(options: {
  connection: Redis;
  prefix: string;
  logger: Logger;
}): Middleware<AnyMiddlewareArgs> {
  const { connection, prefix, logger } = options;
  return async (args) => {
    const signature = args.context[SIGNATURE_PROPERTY];
    if (typeof signature === 'string' && signature !== '') {
      const digest = createHash('sha256').update(signature).digest('hex');
      const first = await connection
        .set(`${prefix}:slack:seen:${digest}`, '1', 'EX', REPLAY_WINDOW_SECONDS, 'NX')
        .catch((error: unknown) => {
          logger.warn({ err: error }, 'could not check a Slack request for replay; handling it');
          return 'OK' as const;
        });
      if (first === null) {
        logger.warn(
          { team: args.context.teamId, within: REPLAY_WINDOW_SECONDS },
          'dropped a replayed Slack request (its signature was already seen)',
        );
        if ('ack' in args && typeof args.ack === 'function') await (args.ack as () => Promise<void>)();
        return;
      }
    }
    await args.next();
  };
}
