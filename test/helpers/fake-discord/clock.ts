// Time and ids for the fake Discord. Every deadline the fake enforces (3 s ack, 15 min token, CDN URL
// expiry, rate-limit windows) reads this clock, so a test can jump past a deadline without sleeping while
// real time still flows for discord.js, which sleeps for real on a 429.
import { randomBytes } from 'node:crypto';

/** Discord's epoch (2015-01-01T00:00:00Z), the zero of snowflake timestamps. */
export const DISCORD_EPOCH = 1_420_070_400_000;

/** Real time plus an offset that only grows, so `advance` never makes the clock run backwards. */
export class FakeClock {
  #offset = 0;
  readonly #base: () => number;

  constructor(base: () => number = Date.now) {
    this.#base = base;
  }

  now(): number {
    return this.#base() + this.#offset;
  }

  /** Moves the fake's time forward by `ms` (e.g. 3_001 to miss the ack window, 15 * 60_000 + 1 for tokens). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`clock.advance needs a non-negative number of ms, got ${ms}`);
    this.#offset += ms;
  }
}

/**
 * Snowflakes in Discord's layout (ms since DISCORD_EPOCH << 22 | counter). discord.js' REST router only
 * treats 17-19 digit numbers as ids (major parameters, bucket routes), so ids must look real.
 */
export class Snowflakes {
  #counter = 0;
  #last = 0n;

  constructor(private readonly clock: FakeClock) {}

  /** A new id for "now", strictly greater than every id this generator handed out before. */
  next(): string {
    let id = this.at(this.clock.now());
    if (BigInt(id) <= this.#last) id = (this.#last + 1n).toString();
    this.#last = BigInt(id);
    return id;
  }

  /** An id dated `ms` (seeded history in the past); ids at the same ms differ by a counter. */
  at(ms: number): string {
    return ((BigInt(Math.max(0, ms - DISCORD_EPOCH)) << 22n) | BigInt(this.#counter++ & 0xfff)).toString();
  }
}

/** When a snowflake was made (ms since the Unix epoch). */
export function snowflakeTime(id: string): number {
  return Number(BigInt(id) >> 22n) + DISCORD_EPOCH;
}

/** An opaque token in the alphabet Discord uses for interaction tokens (base64url). */
export function randomToken(bytes = 48): string {
  return randomBytes(bytes).toString('base64url');
}
