import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DefaultFileHosts,
  type DownloadOptions,
  discordFileHosts,
  downloadImage,
  ingestPolicy,
  MAX_REDIRECTS,
  slackFileHosts,
} from '../../../src/bots/core/ingest.js';
import { renderError } from '../../../src/bots/core/render.js';
import { CodedError } from '../../../src/shared/errors.js';

// A real HTTP server on loopback stands in for the platform's file host; a second one is the host a
// redirect must never reach. Both record what they were asked.

interface Seen {
  path: string;
  authorization: string | undefined;
}

interface Stream {
  /** Bytes the server's socket accepted (write callbacks that succeeded). */
  flushed: number;
  /** Resolves when the response is closed, finished or not. */
  closed: Promise<void>;
  finished: boolean;
}

const BIG = 256 * 1024 * 1024;
const CHUNK = 64 * 1024;

let images: Record<'png' | 'jpeg' | 'webp' | 'gif' | 'avif' | 'huge', Buffer>;
let host: Server;
let evil: Server;
let base: string;
let evilBase: string;
let seen: Seen[] = [];
let evilSeen: Seen[] = [];
let stream: Stream | undefined;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Writes `total` bytes that start like a PNG, each chunk after the last one flushed, recording progress. */
function streamBytes(res: ServerResponse, total: number, headers: Record<string, string>): void {
  res.writeHead(200, { 'content-type': 'image/png', ...headers });
  const chunk = Buffer.alloc(CHUNK);
  PNG_SIGNATURE.copy(chunk);
  const state: Stream = { flushed: 0, finished: false, closed: once(res, 'close').then(() => {}) };
  stream = state;
  let written = 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (written >= total) {
      res.end(() => {
        state.finished = true;
      });
      return;
    }
    written += CHUNK;
    res.write(chunk, (err) => {
      if (err) return;
      state.flushed += CHUNK;
      next();
    });
  };
  next();
}

function route(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', base);
  const send = (status: number, body: Buffer | string, type?: string) => {
    res.writeHead(status, type === undefined ? {} : { 'content-type': type });
    res.end(body);
  };
  const path = url.pathname;
  const hop = /^\/hop\/(\d+)$/.exec(path);
  if (hop) {
    const n = Number(hop[1]);
    res.writeHead(302, { location: n === 0 ? '/png' : `/hop/${n - 1}` }).end();
    return;
  }
  switch (path) {
    case '/png':
      return send(200, images.png, 'image/png');
    case '/jpeg':
      return send(200, images.jpeg, 'image/jpeg; charset=binary');
    case '/webp':
      return send(200, images.webp, 'image/webp');
    case '/gif':
      return send(200, images.gif, 'image/gif');
    case '/avif':
      return send(200, images.avif, 'image/avif');
    case '/octet':
      return send(200, images.png, 'application/octet-stream');
    case '/untyped':
      return send(200, images.png);
    case '/text-png':
      return send(200, images.png, 'text/plain');
    case '/mislabelled':
      return send(200, images.jpeg, 'image/png');
    case '/huge':
      return send(200, images.huge, 'image/png');
    case '/html':
      return send(
        200,
        '<!DOCTYPE html><html><head><title>Sign in</title></head><body>log in</body></html>',
        'text/html; charset=utf-8',
      );
    case '/html-as-image':
      return send(
        200,
        '\ufeff  <!doctype html><html><body>Sign in to Slack to see this file.</body></html>',
        'image/png',
      );
    case '/svg':
      return send(
        200,
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>',
        'image/svg+xml',
      );
    case '/garbage':
      return send(
        200,
        Buffer.from('this is not an image at all, just some text that goes on and on for a while'),
        'image/png',
      );
    case '/empty':
      return send(200, Buffer.alloc(0), 'image/png');
    case '/truncated':
      return send(200, images.png.subarray(0, Math.floor(images.png.length / 2)), 'image/png');
    case '/truncated-header':
      return send(200, images.png.subarray(0, 20), 'image/png');
    case '/big-length':
      return streamBytes(res, BIG, { 'content-length': String(BIG) });
    case '/big-chunked':
      return streamBytes(res, BIG, {});
    case '/slow-headers':
      setTimeout(() => send(200, images.png, 'image/png'), 3000).unref();
      return;
    case '/slow-body':
      res.writeHead(200, { 'content-type': 'image/png' });
      res.write(images.png.subarray(0, 100));
      setTimeout(() => res.end(images.png.subarray(100)), 3000).unref();
      return;
    case '/redirect':
      res.writeHead(302, { location: '/png' }).end();
      return;
    case '/redirect-absolute':
      res.writeHead(301, { location: `${base}/png` }).end();
      return;
    case '/redirect-evil':
      res.writeHead(302, { location: `${evilBase}/png` }).end();
      return;
    case '/redirect-evil-ip':
      res.writeHead(307, { location: `http://127.0.0.1:${(evil.address() as AddressInfo).port}/png` }).end();
      return;
    case '/redirect-https-elsewhere':
      res.writeHead(302, { location: 'https://evil.example/png' }).end();
      return;
    case '/redirect-no-location':
      res.writeHead(302).end();
      return;
    case '/status/404':
      return send(404, 'This content is no longer available.', 'text/plain');
    case '/status/500':
      return send(500, 'oops', 'text/plain');
    default:
      return send(404, 'no such route', 'text/plain');
  }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  const solid = (width: number, height: number) =>
    sharp({ create: { width, height, channels: 3, background: '#3366cc' } });
  const noise = sharp(Buffer.from(Array.from({ length: 48 * 32 * 3 }, (_, i) => (i * 7919) % 251)), {
    raw: { width: 48, height: 32, channels: 3 },
  });
  images = {
    png: await noise.clone().png().toBuffer(),
    jpeg: await solid(40, 30).jpeg().toBuffer(),
    webp: await solid(40, 30).webp().toBuffer(),
    gif: await solid(40, 30).gif().toBuffer(),
    avif: await solid(40, 30).avif().toBuffer(),
    huge: await solid(3000, 2000).png().toBuffer(),
  };
  host = createServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    route(req, res);
  });
  evil = createServer((req, res) => {
    evilSeen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'image/png' }).end(images.png);
  });
  base = `http://127.0.0.1:${await listen(host)}`;
  // `localhost`, not the IP: a different host name, like a different site would be.
  evilBase = `http://localhost:${await listen(evil)}`;
});

afterAll(async () => {
  for (const server of [host, evil]) {
    server.closeAllConnections();
    server.close();
  }
});

beforeEach(() => {
  seen = [];
  evilSeen = [];
  stream = undefined;
});

/** Options for the local host: reachable only as an allowed origin. */
function local(extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return {
    allowedHosts: discordFileHosts,
    allowedOrigins: [base],
    maxBytes: 1024 * 1024,
    maxPixels: 1_000_000,
    timeoutMs: 5000,
    platform: 'discord',
    ...extra,
  };
}

/** The CodedError a download rejects with (fails the test when it resolves or throws something else). */
async function refusal(p: Promise<unknown>): Promise<CodedError> {
  try {
    await p;
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    return error as CodedError;
  }
  throw new Error('expected the download to fail, it succeeded');
}

/** A fetch that must never be called: for URLs refused before any request. */
function forbiddenFetch(): { fetch: typeof fetch; calls: string[] } {
  const calls: string[] = [];
  const f = (async (input: string | URL | Request) => {
    calls.push(String(input));
    throw new Error('fetch must not be called');
  }) as typeof fetch;
  return { fetch: f, calls };
}

describe('downloadImage: good images', () => {
  it.each([
    ['png', 'image/png', 48, 32],
    ['jpeg', 'image/jpeg', 40, 30],
    ['webp', 'image/webp', 40, 30],
    ['gif', 'image/gif', 40, 30],
    ['avif', 'image/avif', 40, 30],
  ] as const)('downloads a %s with its format and size', async (name, contentType, width, height) => {
    const got = await downloadImage(`${base}/${name}`, local());
    expect(got).toMatchObject({ contentType, width, height });
    expect(got.format).toBe(name === 'avif' ? 'heif' : name);
    expect(Buffer.from(got.bytes).equals(images[name])).toBe(true);
  });

  it('judges untyped, octet-stream, text/plain and mislabelled bodies by their magic bytes', async () => {
    for (const path of ['/octet', '/untyped', '/text-png']) {
      expect((await downloadImage(`${base}${path}`, local())).contentType, path).toBe('image/png');
    }
    const jpeg = await downloadImage(`${base}/mislabelled`, local());
    expect(jpeg).toMatchObject({ contentType: 'image/jpeg', format: 'jpeg' });
  });

  it('sends the caller headers to the allowed host', async () => {
    await downloadImage(`${base}/png`, local({ headers: { authorization: 'Bearer xoxb-secret' } }));
    expect(seen).toEqual([{ path: '/png', authorization: 'Bearer xoxb-secret' }]);
  });
});

describe('downloadImage: byte and pixel caps', () => {
  it('refuses a declared size over the cap without a request', async () => {
    const { fetch, calls } = forbiddenFetch();
    const e = await refusal(downloadImage(`${base}/png`, local({ declaredSize: 2 * 1024 * 1024, fetch })));
    expect(e.code).toBe('image_too_large');
    expect(e.details).toEqual({ bytes: 2 * 1024 * 1024, maxBytes: 1024 * 1024 });
    expect(calls).toEqual([]);
  });

  it('refuses on Content-Length and stops the transfer', async () => {
    const e = await refusal(downloadImage(`${base}/big-length`, local()));
    expect(e.code).toBe('image_too_large');
    expect(e.details).toEqual({ bytes: BIG, maxBytes: 1024 * 1024 });
    const s = stream;
    if (!s) throw new Error('the server did not stream');
    await s.closed;
    expect(s.finished).toBe(false);
    // Socket buffers on loopback hold a few MiB; without the cancel all 256 MiB would go.
    expect(s.flushed).toBeLessThan(32 * 1024 * 1024);
  });

  it('counts bytes while streaming when there is no Content-Length, and stops just past the cap', async () => {
    const e = await refusal(downloadImage(`${base}/big-chunked`, local()));
    expect(e.code).toBe('image_too_large');
    expect(e.details).toEqual({ maxBytes: 1024 * 1024 });
    const s = stream;
    if (!s) throw new Error('the server did not stream');
    await s.closed;
    expect(s.finished).toBe(false);
    expect(s.flushed).toBeLessThan(32 * 1024 * 1024);
  });

  it('refuses an image over the pixel cap from its header', async () => {
    expect(images.huge.length).toBeLessThan(1024 * 1024);
    const e = await refusal(downloadImage(`${base}/huge`, local()));
    expect(e.code).toBe('image_too_large');
    expect(e.details).toEqual({ pixels: 6_000_000, maxPixels: 1_000_000 });
    expect(renderError(e)).toBe('That image has 6.0 MP; the limit is 1.0 MP. Please send a smaller one.');
  });
});

describe('downloadImage: what is not an image', () => {
  it('says a web page is not an image, or a missing scope when the caller says so', async () => {
    const page = await refusal(downloadImage(`${base}/html`, local()));
    expect(page.code).toBe('not_an_image');
    expect(page.details.reason).toBe('html');
    const slack = await refusal(
      downloadImage(`${base}/html`, {
        ...ingestPolicy('slack', base),
        headers: { authorization: 'Bearer x' },
      }),
    );
    expect(slack.code).toBe('missing_scope');
    expect(slack.details).toEqual({ scope: 'files:read', platform: 'slack' });
  });

  it('recognises a web page by its bytes under an image type', async () => {
    const e = await refusal(downloadImage(`${base}/html-as-image`, local({ htmlMeans: 'missing_scope' })));
    expect(e.code).toBe('missing_scope');
    expect((await refusal(downloadImage(`${base}/html-as-image`, local()))).details.reason).toBe('html');
  });

  it('refuses bytes without an image signature, SVG included', async () => {
    for (const path of ['/garbage', '/svg']) {
      const e = await refusal(downloadImage(`${base}${path}`, local()));
      expect(e.code, path).toBe('not_an_image');
      expect(e.details.reason, path).toBe('signature');
    }
  });

  it('refuses an empty body and a truncated PNG', async () => {
    expect((await refusal(downloadImage(`${base}/empty`, local()))).details.reason).toBe('empty');
    const half = await refusal(downloadImage(`${base}/truncated`, local()));
    expect(half.code).toBe('not_an_image');
    expect(half.details).toEqual({ reason: 'truncated', format: 'png' });
    expect((await refusal(downloadImage(`${base}/truncated-header`, local()))).code).toBe('not_an_image');
  });
});

describe('downloadImage: time, statuses and the network', () => {
  it('times out on slow headers and on a slow body', async () => {
    for (const path of ['/slow-headers', '/slow-body']) {
      const started = Date.now();
      const e = await refusal(downloadImage(`${base}${path}`, local({ timeoutMs: 300 })));
      expect(e.code, path).toBe('download_failed');
      expect(e.details, path).toEqual({ reason: 'timeout', timeoutMs: 300 });
      expect(Date.now() - started, path).toBeLessThan(2500);
    }
  });

  it("stops when the caller's signal aborts", async () => {
    const controller = new AbortController();
    const p = downloadImage(`${base}/slow-body`, local({ signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    expect((await refusal(p)).code).toBe('cancelled');
  });

  it('reports error statuses', async () => {
    for (const status of [404, 500]) {
      const e = await refusal(downloadImage(`${base}/status/${status}`, local()));
      expect(e.code).toBe('download_failed');
      expect(e.details).toEqual({ reason: 'status', status });
    }
  });

  it('reports a connection that fails', async () => {
    const closed = createServer();
    const port = await listen(closed);
    closed.close();
    await once(closed, 'close');
    const origin = `http://127.0.0.1:${port}`;
    const e = await refusal(downloadImage(`${origin}/png`, local({ allowedOrigins: [origin] })));
    expect(e.code).toBe('download_failed');
    expect(e.details.reason).toBe('network');
  });
});

describe('downloadImage: redirects', () => {
  it('follows a redirect to an allowed path, with the headers', async () => {
    for (const path of ['/redirect', '/redirect-absolute']) {
      seen = [];
      const got = await downloadImage(`${base}${path}`, local({ headers: { authorization: 'Bearer t' } }));
      expect(got.contentType).toBe('image/png');
      expect(seen).toEqual([
        { path, authorization: 'Bearer t' },
        { path: '/png', authorization: 'Bearer t' },
      ]);
    }
  });

  it(`follows ${MAX_REDIRECTS} redirects and no more`, async () => {
    expect((await downloadImage(`${base}/hop/${MAX_REDIRECTS - 1}`, local())).contentType).toBe('image/png');
    seen = [];
    const e = await refusal(downloadImage(`${base}/hop/${MAX_REDIRECTS}`, local()));
    expect(e.code).toBe('download_failed');
    expect(e.details).toEqual({ reason: 'too_many_redirects', max: MAX_REDIRECTS });
    expect(seen.map((s) => s.path)).toEqual(['/hop/3', '/hop/2', '/hop/1', '/hop/0']);
  });

  it('never requests a host outside the allow-list, so its headers never get there', async () => {
    for (const path of ['/redirect-evil', '/redirect-evil-ip']) {
      const e = await refusal(
        downloadImage(`${base}${path}`, local({ headers: { authorization: 'Bearer t' } })),
      );
      expect(e.code, path).toBe('host_not_allowed');
      expect(e.details.platform).toBe('discord');
    }
    expect(evilSeen).toEqual([]);
    // The check is not vacuous: the evil server answers whoever asks.
    const direct = await downloadImage(`${evilBase}/png`, local({ allowedOrigins: [evilBase] }));
    expect(direct.contentType).toBe('image/png');
    expect(evilSeen).toHaveLength(1);
  });

  it('refuses a redirect to an https host outside the list, and one without a Location', async () => {
    expect((await refusal(downloadImage(`${base}/redirect-https-elsewhere`, local()))).details).toEqual({
      host: 'evil.example',
      platform: 'discord',
    });
    expect((await refusal(downloadImage(`${base}/redirect-no-location`, local()))).details).toEqual({
      reason: 'status',
      status: 302,
    });
  });
});

describe('downloadImage: hosts', () => {
  /** A fetch standing in for the platform's CDN over https: records URLs and headers. */
  function cdn(answer: (url: URL) => Response) {
    const calls: { url: string; authorization: string | null; redirect: string | undefined }[] = [];
    const f = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      calls.push({
        url: url.href,
        authorization: new Headers(init?.headers).get('authorization'),
        redirect: init?.redirect,
      });
      return answer(url);
    }) as typeof fetch;
    return { fetch: f, calls };
  }

  it('fetches the platform hosts over https, following redirects by hand', async () => {
    const { fetch, calls } = cdn((url) =>
      url.pathname === '/a.png'
        ? new Response(images.png, { headers: { 'content-type': 'image/png' } })
        : new Response(null, { status: 302, headers: { location: '/a.png' } }),
    );
    const url = 'https://cdn.discordapp.com/attachments/1/2/start?ex=1&is=2&hm=3';
    const got = await downloadImage(url, {
      ...ingestPolicy('discord'),
      fetch,
      headers: { authorization: 'x' },
    });
    expect(got.width).toBe(48);
    expect(calls).toEqual([
      { url, authorization: 'x', redirect: 'manual' },
      { url: 'https://cdn.discordapp.com/a.png', authorization: 'x', redirect: 'manual' },
    ]);
  });

  it('stops before a redirect to another https host', async () => {
    const { fetch, calls } = cdn(
      () => new Response(null, { status: 301, headers: { location: 'https://evil.example/x' } }),
    );
    const e = await refusal(
      downloadImage('https://files.slack.com/files-pri/T1-F1/a.png', {
        ...ingestPolicy('slack'),
        fetch,
        headers: { authorization: 'Bearer xoxb' },
      }),
    );
    expect(e.code).toBe('host_not_allowed');
    expect(calls.map((c) => c.url)).toEqual(['https://files.slack.com/files-pri/T1-F1/a.png']);
  });

  it.each([
    ['http://cdn.discordapp.com/a.png', 'plain http'],
    ['https://cdn.discordapp.com:8443/a.png', 'another port'],
    ['https://user:pw@cdn.discordapp.com/a.png', 'credentials'],
    ['https://evil.example/a.png', 'another host'],
    ['https://cdn.discordapp.com.evil.example/a.png', 'an allowed name as a subdomain'],
    ['https://evilcdn.discordapp.com/a.png', 'a name that ends like an allowed one'],
    ['https://discordapp.com/a.png', 'the parent domain'],
    ['https://127.0.0.1/a.png', 'an IPv4 literal'],
    ['https://2130706433/a.png', 'a decimal IPv4 literal'],
    ['https://0x7f.1/a.png', 'a hex IPv4 literal'],
    ['https://[::1]/a.png', 'an IPv6 literal'],
    ['https://[::ffff:169.254.169.254]/latest/meta-data', 'a mapped IPv6 literal'],
    ['file:///etc/passwd', 'a file URL'],
    ['ftp://cdn.discordapp.com/a.png', 'ftp'],
    ['data:image/png;base64,iVBORw0KGgo=', 'a data URL'],
    ['not a url', 'something that is not a URL'],
    [`${'http://127.0.0.1:1'}/a.png`, 'a loopback origin that is not allowed'],
  ])('never requests %s (%s)', async (url) => {
    const { fetch, calls } = forbiddenFetch();
    const e = await refusal(
      downloadImage(url, {
        ...ingestPolicy('discord'),
        allowedHosts: [...discordFileHosts, '*.0.0.1', '*.1'],
        fetch,
      }),
    );
    expect(e.code).toBe('host_not_allowed');
    expect(calls).toEqual([]);
  });

  it('matches *.suffix patterns on subdomains only, case-insensitively', async () => {
    const { fetch, calls } = cdn(
      () => new Response(images.gif, { headers: { 'content-type': 'image/gif' } }),
    );
    const options = { allowedHosts: ['*.slack.com'], fetch };
    await downloadImage('https://files.slack.com/a.gif', options);
    await downloadImage('https://A.B.Slack.COM/a.gif', options);
    expect(calls.map((c) => c.url)).toEqual(['https://files.slack.com/a.gif', 'https://a.b.slack.com/a.gif']);
    for (const url of ['https://slack.com/a.gif', 'https://evilslack.com/a.gif']) {
      expect((await refusal(downloadImage(url, options))).code, url).toBe('host_not_allowed');
    }
  });

  it('renders a refused host as a sentence naming the platform', async () => {
    const e = await refusal(downloadImage('https://evil.example/a.png', ingestPolicy('slack')));
    expect(renderError(e)).toBe(
      'I can only read images uploaded to Slack; links to other sites are not fetched. Please attach the image.',
    );
  });

  it('refuses bad options before anything else', async () => {
    const { fetch } = forbiddenFetch();
    await expect(downloadImage(`${base}/png`, local({ maxBytes: 0, fetch }))).rejects.toThrow(RangeError);
    await expect(downloadImage(`${base}/png`, local({ allowedHosts: ['*'], fetch }))).rejects.toThrow(
      RangeError,
    );
    await expect(downloadImage(`${base}/png`, local({ allowedOrigins: ['ftp://x'], fetch }))).rejects.toThrow(
      RangeError,
    );
  });
});

describe('ingestPolicy', () => {
  it("holds each platform's file hosts and what an HTML body means there", () => {
    expect(ingestPolicy('discord')).toEqual({
      allowedHosts: ['cdn.discordapp.com', 'media.discordapp.net'],
      allowedOrigins: [],
      platform: 'discord',
      htmlMeans: 'not_an_image',
    });
    expect(ingestPolicy('slack', 'http://127.0.0.1:8080/api/')).toEqual({
      allowedHosts: ['files.slack.com', 'files.slack-gov.com'],
      allowedOrigins: ['http://127.0.0.1:8080'],
      platform: 'slack',
      htmlMeans: 'missing_scope',
    });
    expect(slackFileHosts).toEqual(DefaultFileHosts.slack);
    expect(ingestPolicy('web').allowedHosts).toEqual([]);
  });
});
