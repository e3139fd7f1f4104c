// Attachment URLs that lead off the platform's file hosts, directly or by redirect: the bot refuses
// before it sends a single request to the other host, and the person reads which uploads it takes.
// A loopback server stands in for the platform's CDN (an allowed origin, as the operator configures
// one); a second loopback server, under another name, is the host that must never be reached.
// (Loopback and private addresses behind allowed names are test/bots/core/address-guard.test.ts.)
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadImage, ingestPolicy } from '../../src/bots/core/ingest.js';
import { renderError } from '../../src/bots/core/render.js';
import { CodedError } from '../../src/shared/errors.js';

let png: Buffer;
let cdn: Server;
let other: Server;
let cdnBase: string;
let otherBase: string;
const otherSeen: string[] = [];

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#884422' } })
    .png()
    .toBuffer();
  cdn = createServer((req, res) => {
    const path = req.url ?? '/';
    const to = new URL(path, cdnBase).searchParams.get('to');
    if (path.startsWith('/png')) return res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    if (path.startsWith('/hop'))
      return res.writeHead(302, { location: `/go?to=${encodeURIComponent(to ?? '')}` }).end();
    if (to) return res.writeHead(307, { location: to }).end();
    res.writeHead(404).end();
  });
  other = createServer((req, res) => {
    otherSeen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'image/png' }).end(png);
  });
  cdnBase = `http://127.0.0.1:${await listen(cdn)}`;
  otherBase = `http://localhost:${await listen(other)}`;
});

afterAll(() => {
  for (const s of [cdn, other]) {
    s.closeAllConnections();
    s.close();
  }
});

async function refusal(p: Promise<unknown>): Promise<CodedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CodedError);
  return error as CodedError;
}

describe('redirects to a host that is not allowed', () => {
  it.each(['discord', 'slack'] as const)(
    'are refused before the host is asked, in %s’s words',
    async (platform) => {
      const sentence = `I can only read images uploaded to ${platform === 'discord' ? 'Discord' : 'Slack'}; links to other sites are not fetched. Please attach the image.`;
      const policy = {
        ...ingestPolicy(platform, cdnBase),
        timeoutMs: 5000,
        headers: { authorization: 'Bearer xoxb-secret' },
      };
      // The CDN itself works: what follows is refused for where it leads.
      expect((await downloadImage(`${cdnBase}/png`, policy)).format).toBe('png');
      const targets = [
        `${otherBase}/cat.png`, // another site (plain http)
        'https://evil.example/cat.png', // https, but not a file host
        'https://files.slack.com.evil.example/cat.png', // an allowed name as a subdomain of another
        'https://cdn.discordapp.com:8443/cat.png', // an allowed name on another port
        'ftp://cdn.discordapp.com/cat.png',
      ];
      for (const target of targets) {
        for (const start of [
          `/go?to=${encodeURIComponent(target)}`,
          `/hop?to=${encodeURIComponent(target)}`,
        ]) {
          const e = await refusal(downloadImage(`${cdnBase}${start}`, policy));
          expect(e.code, `${start}`).toBe('host_not_allowed');
          expect(renderError(e)).toBe(sentence);
        }
      }
      // Nothing, and so no bot token, reached the other host; it answers anyone who asks directly.
      expect(otherSeen).toEqual([]);
      expect(
        (await downloadImage(`${otherBase}/direct.png`, { allowedHosts: [], allowedOrigins: [otherBase] }))
          .format,
      ).toBe('png');
      expect(otherSeen).toEqual(['/direct.png']);
      otherSeen.length = 0;
    },
  );
});
