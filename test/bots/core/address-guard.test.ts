// Attachment downloads never connect to loopback or private addresses, whatever a name resolves to
// and after every redirect; only the operator's configured origins (here a real HTTP server on
// 127.0.0.1, as the fake CDNs are) are exempt. `localhost` is the real resolver's name for loopback.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  isPublicAddress,
  publicFetch,
  publicOnlyLookup,
  resolvePublic,
} from '../../../src/bots/core/address-guard.js';
import { downloadImage, ingestPolicy } from '../../../src/bots/core/ingest.js';
import { CodedError } from '../../../src/shared/errors.js';

let server: Server;
let origin: string;
let port: number;
let seen: string[] = [];
let png: Buffer;

beforeAll(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c04' } })
    .png()
    .toBuffer();
  server = createServer((req, res) => {
    seen.push(req.url ?? '');
    if (req.url === '/a.png') res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    else if (req.url?.startsWith('/to?')) {
      const location = new URLSearchParams(req.url.slice(4)).get('url') ?? '/';
      res.writeHead(302, { location }).end();
    } else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  seen = [];
});

async function refusal(p: Promise<unknown>): Promise<CodedError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof CodedError)) throw new Error(`expected a CodedError, got ${String(error)}`);
  return error;
}

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.255.0.9',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:a9fe:a9fe',
    '64:ff9b::7f00:1',
    '64:ff9b::a00:1',
    '2002:7f00:1::1',
    '2001:db8::1',
    'not an address',
  ])('refuses %s', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '162.159.128.233',
    '2606:4700::1111',
    '2a00:1450:4001::200e',
    '64:ff9b::808:808',
  ])('allows %s', (address) => {
    expect(isPublicAddress(address)).toBe(true);
  });
});

describe('resolvePublic and the connection lookup', () => {
  const answers =
    (...addresses: string[]) =>
    async () =>
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  it('refuses a name when any of its addresses is not public', async () => {
    await expect(resolvePublic('cdn.example', answers('8.8.8.8', '10.0.0.7'))).rejects.toThrow(
      /cdn\.example \(10\.0\.0\.7: not a public address\)/,
    );
    await expect(resolvePublic('cdn.example', answers('2606:4700::1', 'fd00::1'))).rejects.toThrow(
      /not a public address/,
    );
    await expect(resolvePublic('cdn.example', answers())).rejects.toThrow(/no address/);
    expect(await resolvePublic('cdn.example', answers('8.8.8.8', '2606:4700::1'))).toHaveLength(2);
  });

  it('hands the connection only checked addresses, one or all as Node asks', async () => {
    const call = (resolver: () => Promise<{ address: string; family: number }[]>, all: boolean) =>
      new Promise<{ err: unknown; address: unknown; family: unknown }>((resolve) =>
        publicOnlyLookup(resolver)('cdn.example', { all }, (err, address, family) =>
          resolve({ err, address, family }),
        ),
      );
    expect(await call(answers('8.8.8.8'), false)).toEqual({ err: null, address: '8.8.8.8', family: 4 });
    expect((await call(answers('8.8.8.8', '2606:4700::1'), true)).address).toHaveLength(2);
    // A name that answered public a moment ago and loopback now (DNS rebinding) is refused now.
    const refused = await call(answers('127.0.0.1'), false);
    expect(refused.err).toBeInstanceOf(CodedError);
    expect((refused.err as CodedError).code).toBe('host_not_allowed');
  });
});

describe('publicFetch', () => {
  it('never connects to a name that resolves to loopback, while a plain fetch does', async () => {
    // The control: the server answers a plain fetch through the same name.
    expect((await fetch(`http://localhost:${port}/a.png`)).status).toBe(200);
    expect(seen).toEqual(['/a.png']);
    seen = [];
    const error = await publicFetch(`http://localhost:${port}/a.png`).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(String((error as { cause?: unknown }).cause)).toMatch(/not a public address/);
    expect(seen).toEqual([]);
  });

  it('refuses a private IP literal before any connection', async () => {
    await expect(publicFetch(`${origin}/a.png`)).rejects.toThrow(/not a public address/);
    await expect(publicFetch(`http://[::1]:${port}/a.png`)).rejects.toThrow(/not a public address/);
    expect(seen).toEqual([]);
  });
});

describe('downloadImage and private addresses', () => {
  // `localhost` allowed by name: only the address check stands between the download and loopback.
  const byName = { allowedHosts: ['localhost'], platform: 'discord' as const };

  it('refuses an allowed name that resolves to loopback', async () => {
    const e = await refusal(downloadImage('https://localhost/a.png', byName));
    expect(e.code).toBe('host_not_allowed');
    expect(String(e.details.host)).toMatch(/^localhost \((127\.0\.0\.1|::1): not a public address\)$/);
    expect(e.details.platform).toBe('discord');
  });

  it('refuses a redirect from the configured origin to a name on loopback', async () => {
    const to = encodeURIComponent('https://localhost/a.png');
    const e = await refusal(downloadImage(`${origin}/to?url=${to}`, { ...byName, allowedOrigins: [origin] }));
    expect(e.code).toBe('host_not_allowed');
    expect(seen).toEqual([`/to?url=${to}`]);
  });

  it('refuses redirects to private and loopback literals, and to this server by name', async () => {
    for (const target of [
      'https://127.0.0.1/a.png',
      'https://[::1]/a.png',
      'https://10.0.0.1/a.png',
      `http://localhost:${port}/a.png`,
    ]) {
      seen = [];
      const e = await refusal(
        downloadImage(`${origin}/to?url=${encodeURIComponent(target)}`, {
          ...ingestPolicy('discord', origin),
          allowedHosts: ['localhost'],
        }),
      );
      expect(e.code, target).toBe('host_not_allowed');
      expect(seen, target).toHaveLength(1);
    }
  });

  it('reaches loopback only through the origin the operator configured', async () => {
    const got = await downloadImage(`${origin}/a.png`, ingestPolicy('discord', origin));
    expect(got.width).toBe(8);
    const e = await refusal(downloadImage(`${origin}/a.png`, ingestPolicy('discord')));
    expect(e.code).toBe('host_not_allowed');
  });
});
