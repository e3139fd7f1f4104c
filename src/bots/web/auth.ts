// Who may use the playground and /admin. On loopback only the machine's own users can reach them; on
// any other address the page would let anyone paint on the GPUs and retry, promote or delete jobs in
// bull-board, so a password is then required and a process without one refuses to start.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import { basicAuth } from 'hono/basic-auth';
import { HTTPException } from 'hono/http-exception';
import { CodedError } from '../../shared/errors.js';

/** Whether a bind address is reachable from this machine only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) {
    // The URL parser writes every spelling of an address one way (`0:0::1` -> `::1`, `::ffff:127.0.0.1`
    // -> `::ffff:7f00:1`).
    const canonical = new URL(`http://[${h}]/`).hostname;
    return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:/.test(canonical);
  }
  // Any other name may resolve to anything (`0.0.0.0` in /etc/hosts, a LAN address): not loopback.
  return false;
}

/**
 * Throws the one-line reason a playground on `host` may not start without a password (runMain prints
 * it as `bot: ...`). Called before it listens.
 */
export function assertPlaygroundExposure(host: string, password: string | undefined): void {
  if (password !== undefined && password !== '') return;
  if (isLoopbackHost(host)) return;
  throw new CodedError(
    'config_invalid',
    `the playground would listen on ${host} (HOST), not on loopback, without a password: set PLAYGROUND_PASSWORD (12 characters or more; it guards the page and /admin) or HOST=127.0.0.1`,
    { details: { problems: [{ variable: 'PLAYGROUND_PASSWORD', message: 'is required off loopback' }] } },
  );
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Hono middleware asking for the password: HTTP Basic with any user name (a browser asks once and
 * sends it with every request of the page, its event streams and /admin included), or
 * `Authorization: Bearer <password>` for scripts (read here, not by hono's bearerAuth, whose token68
 * syntax refuses a password with spaces). Compared in constant time over digests, so neither the
 * content nor the length leaks through timing.
 */
export function passwordGuard(password: string): MiddlewareHandler {
  const expected = digest(password);
  const same = (given: string) => timingSafeEqual(digest(given), expected);
  const basic = basicAuth({
    verifyUser: (_user, given) => same(given),
    realm: 'vqclip playground (any user name)',
    invalidUserMessage: 'the playground needs its password (PLAYGROUND_PASSWORD)',
  });
  return async (c, next) => {
    const bearer = /^bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
    if (bearer !== undefined) {
      if (same(bearer.trim())) return next();
      return c.text('the playground needs its password (PLAYGROUND_PASSWORD)', 401, {
        'WWW-Authenticate': 'Basic realm="vqclip playground (any user name)"',
      });
    }
    try {
      return await basic(c, next);
    } catch (error) {
      // Hono's guard throws its 401 (with WWW-Authenticate); the playground's onError would make any
      // throw a coded 500, so the answer is given here.
      if (error instanceof HTTPException) return error.getResponse();
      throw error;
    }
  };
}
