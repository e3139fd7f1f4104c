// Per-route rate limits for the fake REST API: a sliding window per bucket (route template + major
// parameter, as Discord and @discordjs/rest key them). A refused request does not use up the window, so a
// client that waits Retry-After gets through, as it does on Discord.
import { createHash } from 'node:crypto';
import type { FakeClock } from './clock.js';
import { RestError } from './rules.js';

export interface RateLimitOptions {
  /**
   * Requests allowed per bucket within `windowMs`.
   * @defaultValue 5
   */
  limit?: number;
  /**
   * Length of the sliding window.
   * @defaultValue 5_000
   */
  windowMs?: number;
  /**
   * Send X-RateLimit-* headers on successful responses too, as Discord does. Off by default because
   * @discordjs/rest then queues requests itself and never gets a 429, which hides an adapter that edits
   * too fast; 429 responses always carry the headers.
   * @defaultValue false
   */
  headersOnSuccess?: boolean;
}

export const DefaultRateLimitOptions = {
  limit: 5,
  windowMs: 5_000,
  headersOnSuccess: false,
} as const satisfies Required<RateLimitOptions>;

export class RateLimiter {
  readonly #options: Required<RateLimitOptions>;
  readonly #hits = new Map<string, number[]>();

  constructor(
    private readonly clock: FakeClock,
    options: RateLimitOptions = {},
  ) {
    this.#options = { ...DefaultRateLimitOptions, ...options };
    if (!(this.#options.limit >= 1) || !(this.#options.windowMs > 0)) {
      throw new RangeError('rateLimit needs limit >= 1 and windowMs > 0');
    }
  }

  /**
   * Takes one slot of `bucket` or throws the 429 Discord would send. Returns the headers to put on the
   * successful response (empty unless headersOnSuccess).
   */
  take(bucket: string): Record<string, string> {
    const now = this.clock.now();
    const { limit, windowMs, headersOnSuccess } = this.#options;
    const recent = (this.#hits.get(bucket) ?? []).filter((at) => at > now - windowMs);
    if (recent.length >= limit) {
      const oldest = recent[0] ?? now;
      const retryAfterMs = Math.max(1, oldest + windowMs - now);
      const seconds = retryAfterMs / 1000;
      // Discord sends whole seconds in Retry-After; fractions keep tests with short windows fast, and
      // @discordjs/rest parses either with Number().
      throw new RestError(
        429,
        { message: 'You are being rate limited.', retry_after: seconds, global: false },
        {
          'Retry-After': seconds.toFixed(3),
          ...this.#headers(bucket, 0, seconds, now),
          'X-RateLimit-Scope': 'user',
        },
      );
    }
    recent.push(now);
    this.#hits.set(bucket, recent);
    if (!headersOnSuccess) return {};
    const resetAfter = ((recent[0] ?? now) + windowMs - now) / 1000;
    return this.#headers(bucket, limit - recent.length, resetAfter, now);
  }

  #headers(bucket: string, remaining: number, resetAfter: number, now: number): Record<string, string> {
    return {
      'X-RateLimit-Limit': String(this.#options.limit),
      'X-RateLimit-Remaining': String(remaining),
      'X-RateLimit-Reset': ((now + resetAfter * 1000) / 1000).toFixed(3),
      'X-RateLimit-Reset-After': resetAfter.toFixed(3),
      // Discord's bucket hash is per route, not per major parameter.
      'X-RateLimit-Bucket': createHash('sha1')
        .update(bucket.split('|')[0] ?? bucket)
        .digest('hex')
        .slice(0, 16),
    };
  }
}
