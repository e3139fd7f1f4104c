// Slack's v0 request signature, as Slack computes it for HTTP-mode deliveries: HMAC-SHA256 over
// `v0:${timestamp}:${rawBody}` with the app's signing secret, sent in x-slack-signature.

import { createHmac } from 'node:crypto';

export function signV0(signingSecret: string, timestampSec: number, rawBody: string): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestampSec}:${rawBody}`).digest('hex')}`;
}

export interface SignedHeaders {
  'x-slack-request-timestamp': string;
  'x-slack-signature': string;
}

export function signedHeaders(signingSecret: string, timestampSec: number, rawBody: string): SignedHeaders {
  return {
    'x-slack-request-timestamp': String(timestampSec),
    'x-slack-signature': signV0(signingSecret, timestampSec, rawBody),
  };
}
