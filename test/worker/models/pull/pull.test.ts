// `models pull` against local HTTP servers that answer as Hugging Face (resolve -> 302 -> CDN on another
// origin, X-Linked-Size / X-Linked-Etag) and heibox (?p=...&dl=1 -> 302) do, serving a tiny random CLIP
// folder and the taming-style checkpoint fixture.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkModelFolder } from '../../../../src/worker/models/check.js';
import { loadModelConfig, tinyVqganConfig } from '../../../../src/worker/models/config.js';
import { DownloadError, download } from '../../../../src/worker/models/pull/download.js';
import { PickleError } from '../../../../src/worker/models/pull/pickle.js';
import {
  PullError,
  type PullOptions,
  pullClip,
  pullVqgan,
  type VqganSource,
  vqganConfigFromTamingYaml,
  withPullLock,
} from '../../../../src/worker/models/pull/pull.js';
import { writeRandomModels, writeRandomVqgan } from '../../../../src/worker/models/random.js';
import { Weights } from '../../../../src/worker/models/weights.js';
import { entryArgs } from '../../../helpers/entry.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../../..');
const FIXTURES = join(ROOT, 'test/fixtures/pull');
const REPO = 'test-org/clip-tiny';

interface Route {
  body: Buffer;
  /** Send this many bytes of the first request's body, then drop the connection. */
  cutAfter?: number;
  /** Answer Range requests with 200 and the whole body, as some servers do. */
  noRanges?: boolean;
  status?: number;
  headers?: Record<string, string>;
  /** 302 to this path on the CDN server instead of answering. */
  redirectTo?: string;
}

interface Seen {
  host: string;
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
  auth: string | undefined;
  status: number;
}

/** A tiny static server with Range, If-Range, cut connections and redirects. */
class FakeServer {
  readonly routes = new Map<string, Route>();
  readonly seen: Seen[] = [];
  private server!: Server;
  url = '';

  constructor(private readonly name: string) {}

  async start(redirectBase?: () => string): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res, redirectBase));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse, redirectBase?: () => string): void {
    const path = req.url ?? '/';
    const route = this.routes.get(path);
    const record = (status: number) =>
      this.seen.push({
        host: this.name,
        path,
        range: req.headers.range,
        ifRange: req.headers['if-range'] as string | undefined,
        auth: req.headers.authorization,
        status,
      });
    if (!route) {
      record(404);
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
      return;
    }
    if (route.status) {
      record(route.status);
      res.writeHead(route.status).end('no');
      return;
    }
    const etag = `"${createHash('sha1').update(route.body).digest('hex')}"`;
    if (route.redirectTo) {
      record(302);
      res.writeHead(302, { location: `${redirectBase!()}${route.redirectTo}`, ...route.headers }).end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (m && !route.noRanges && (!ifRange || ifRange === etag)) {
      const start = Number(m[1]);
      if (start >= route.body.length) {
        record(416);
        res.writeHead(416, { 'content-range': `bytes */${route.body.length}` }).end();
        return;
      }
      record(206);
      res.writeHead(206, {
        etag,
        'content-length': route.body.length - start,
        'content-range': `bytes ${start}-${route.body.length - 1}/${route.body.length}`,
        ...route.headers,
      });
      res.end(route.body.subarray(start));
      return;
    }
    record(200);
    res.writeHead(200, { etag, 'content-length': route.body.length, ...route.headers });
    if (route.cutAfter !== undefined) {
      const cut = route.cutAfter;
      delete route.cutAfter; // only the first time
      // FIN after the bytes (not a reset, which may discard what the client has not read yet).
      res.write(route.body.subarray(0, cut), () => res.socket?.end());
      return;
    }
    res.end(route.body);
  }
}

const hf = new FakeServer('hf');
const cdn = new FakeServer('cdn');
let work: string;
let source: string;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Serves `file` of the random CLIP folder as Hugging Face does: small files direct, weights via the CDN. */
function serveClipFile(file: string, body: Buffer, lfs = false): void {
  const path = `/${REPO}/resolve/main/${file}`;
  if (!lfs) {
    hf.routes.set(path, { body });
    return;
  }
  const blob = `/repos/ab/cd/${sha256(body)}`;
  hf.routes.set(path, {
    body: Buffer.alloc(0),
    redirectTo: blob,
    headers: { 'x-linked-size': String(body.length), 'x-linked-etag': `"${sha256(body)}"` },
  });
  cdn.routes.set(blob, { body });
}

const CKPT_PATH = `/d/abc/files/?p=${encodeURIComponent('/ckpts/last.ckpt')}&dl=1`;
const YAML_PATH = `/d/abc/files/?p=${encodeURIComponent('/configs/model.yaml')}&dl=1`;

function serveVqgan(ckpt: Buffer, extra: Partial<Route> = {}): VqganSource {
  hf.routes.set(CKPT_PATH, { body: Buffer.alloc(0), redirectTo: '/seafhttp/files/1/last.ckpt' });
  cdn.routes.set('/seafhttp/files/1/last.ckpt', { body: ckpt, ...extra });
  hf.routes.set(YAML_PATH, { body: readFileSync(join(FIXTURES, 'model.yaml')) });
  return { checkpointUrl: `${hf.url}${CKPT_PATH}`, configUrl: `${hf.url}${YAML_PATH}` };
}

function options(outDir: string, extra: Partial<PullOptions> = {}): PullOptions {
  return { outDir, hfEndpoint: hf.url, download: { progressIntervalMs: 0 }, ...extra };
}

const CLIP_FILES = ['config.json', 'tokenizer.json', 'preprocessor_config.json', 'model.safetensors'];

beforeAll(async () => {
  await cdn.start();
  await hf.start(() => cdn.url);
  source = mkdtempSync(join(tmpdir(), 'pull-src-'));
  writeRandomModels({ preset: 'tiny', outDir: source, seed: 7 });
});

afterAll(async () => {
  await hf.stop();
  await cdn.stop();
  rmSync(source, { recursive: true, force: true });
});

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'pull-out-'));
  hf.routes.clear();
  cdn.routes.clear();
  hf.seen.length = 0;
  cdn.seen.length = 0;
  for (const f of CLIP_FILES) {
    serveClipFile(f, readFileSync(join(source, 'clip', f)), f === 'model.safetensors');
  }
});

afterEach(() => rmSync(work, { recursive: true, force: true }));

function expectVqganEqualsFixture(dir: string): void {
  const got = Weights.fromFile(join(dir, 'model.safetensors'));
  const want = Weights.fromFile(join(FIXTURES, 'expected.safetensors'));
  try {
    // Exactly the model's tensors, in state_dict order: no loss.*, nothing else.
    expect(new Set(got.names())).toEqual(new Set(want.names()));
    for (const name of want.names()) {
      expect(got.info(name).dtype).toBe('F32');
      expect(got.get(name), name).toEqual(want.get(name));
    }
  } finally {
    got.close();
    want.close();
  }
}

describe('models pull (CLI)', () => {
  it('pulls a Hugging Face CLIP and a taming VQGAN, and `models check` passes on both', async () => {
    const vq = serveVqgan(readFileSync(join(FIXTURES, 'last.ckpt')));
    const out = join(work, 'models');
    const cli = entryArgs('src/worker/models/cli.ts');
    const env = { ...process.env, HF_ENDPOINT: hf.url, HF_TOKEN: 'hf_secret', MODELS_DIR: out };
    const r = await run(
      process.execPath,
      [...cli, 'pull', '--clip', REPO, '--vqgan-url', vq.checkpointUrl, '--vqgan-config-url', vq.configUrl],
      { cwd: ROOT, env },
    );
    expect(r.stdout).toContain(`wrote ${join(out, 'clip')}`);
    expect(r.stdout).toContain(`wrote ${join(out, 'vqgan')}`);
    expect(r.stderr).toMatch(/clip\/model\.safetensors: .* done/);
    expect(r.stderr).toMatch(/vqgan: 123 tensors kept, 6 loss\.\* skipped; trained 10 steps/);

    for (const f of CLIP_FILES) {
      expect(readFileSync(join(out, 'clip', f)).equals(readFileSync(join(source, 'clip', f))), f).toBe(true);
    }
    expectVqganEqualsFixture(join(out, 'vqgan'));
    const config = await loadModelConfig(join(out, 'vqgan'));
    expect(config).toEqual({
      kind: 'vqgan',
      config: vqganConfigFromTamingYaml(readFileSync(join(FIXTURES, 'model.yaml'), 'utf8')),
    });
    expect(existsSync(join(out, '.partial'))).toBe(false);

    // The token goes to the Hugging Face origin only, never to the CDN it redirects to.
    expect(
      hf.seen.filter((s) => s.path.startsWith(`/${REPO}/`)).every((s) => s.auth === 'Bearer hf_secret'),
    ).toBe(true);
    expect(cdn.seen.length).toBeGreaterThan(0);
    expect(cdn.seen.every((s) => s.auth === undefined)).toBe(true);

    for (const m of ['clip', 'vqgan']) {
      const c = await run(process.execPath, [...cli, 'check', join(out, m)], { cwd: ROOT, env });
      expect(c.stdout).toMatch(/\n {2}ok\n$/);
    }
  }, 60_000);
});

describe('pullClip', () => {
  it('resumes an interrupted download with a Range request', async () => {
    const weights = readFileSync(join(source, 'clip', 'model.safetensors'));
    const blob = [...cdn.routes.keys()][0]!;
    const half = Math.floor(weights.length / 2);
    cdn.routes.get(blob)!.cutAfter = half;

    const err = await pullClip(REPO, options(work)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).reason).toBe('network');
    expect((err as Error).message).toMatch(/run the same command again to resume/);
    expect(existsSync(join(work, 'clip'))).toBe(false);
    // What reached the disk: at most what was sent (a stream that errors drops chunks not yet read).
    const kept = statSync(join(work, '.partial', 'clip', 'model.safetensors.part')).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(half);

    const seenBefore = hf.seen.length;
    const r = await pullClip(REPO, options(work));
    expect(r.parameters).toBeGreaterThan(0);
    // The small files were not fetched again; the weights continued from where they stopped.
    expect(hf.seen.slice(seenBefore).map((s) => s.path)).toEqual([`/${REPO}/resolve/main/model.safetensors`]);
    const resumed = cdn.seen.at(-1)!;
    expect(resumed.range).toBe(`bytes=${kept}-`);
    expect(resumed.ifRange).toMatch(/^"[0-9a-f]{40}"$/);
    expect(resumed.status).toBe(206);
    expect(readFileSync(join(work, 'clip', 'model.safetensors')).equals(weights)).toBe(true);
    expect((await checkModelFolder(join(work, 'clip'))).problems).toEqual([]);
  });

  it('names the URL on a 404 and leaves a good folder in place', async () => {
    writeRandomModels({ preset: 'tiny', outDir: work, seed: 1 });
    const before = readFileSync(join(work, 'clip', 'model.safetensors'));

    const missingRepo = await pullClip('nobody/nothing', options(work)).catch((e: unknown) => e);
    expect(missingRepo).toBeInstanceOf(DownloadError);
    expect((missingRepo as DownloadError).reason).toBe('not_found');
    expect((missingRepo as Error).message).toBe(
      `${hf.url}/nobody/nothing/resolve/main/config.json: HTTP 404 Not Found`,
    );

    hf.routes.delete(`/${REPO}/resolve/main/model.safetensors`);
    const noWeights = await pullClip(REPO, options(work)).catch((e: unknown) => e);
    expect(noWeights).toBeInstanceOf(PullError);
    expect((noWeights as PullError).reason).toBe('no_safetensors');
    expect((noWeights as PullError).code).toBe('bad_input');
    expect((noWeights as Error).message).toMatch(/has no model\.safetensors at revision main/);
    expect((noWeights as Error).message).toMatch(/save_pretrained/);

    expect(readFileSync(join(work, 'clip', 'model.safetensors')).equals(before)).toBe(true);
  });

  it('refuses a download whose sha256 is not the one Hugging Face announced', async () => {
    const path = `/${REPO}/resolve/main/model.safetensors`;
    hf.routes.get(path)!.headers!['x-linked-etag'] = `"${'0'.repeat(64)}"`;
    const err = await pullClip(REPO, options(work)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).reason).toBe('checksum');
    expect((err as DownloadError).code).toBe('download_failed');
    expect(existsSync(join(work, '.partial', 'clip', 'model.safetensors.part'))).toBe(false);
    expect(existsSync(join(work, 'clip'))).toBe(false);
  });

  it('says what to do on a 401 and on a refused connection', async () => {
    hf.routes.set(`/${REPO}/resolve/main/config.json`, { body: Buffer.alloc(0), status: 401 });
    await expect(pullClip(REPO, options(work))).rejects.toThrow(
      `${hf.url}/${REPO}/resolve/main/config.json: HTTP 401 Unauthorized (a gated or private file: set HF_TOKEN`,
    );
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const err = await pullClip(REPO, options(work, { hfEndpoint: `http://127.0.0.1:${port}` })).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).reason).toBe('network');
    expect((err as Error).message).toMatch(
      /cannot download http:\/\/127\.0\.0\.1:\d+\/.*config\.json: ECONNREFUSED/,
    );
  });
});

describe('pullVqgan', () => {
  it('converts the checkpoint after a restart from a server that ignores Range', async () => {
    const ckpt = readFileSync(join(FIXTURES, 'last.ckpt'));
    const vq = serveVqgan(ckpt, { cutAfter: 100_000, noRanges: true });
    await expect(pullVqgan(vq, options(work))).rejects.toThrow(/connection broke after \d+ of \d+ bytes/);
    const kept = statSync(join(work, '.partial', 'vqgan-download', 'last.ckpt.part')).size;
    expect(kept).toBeGreaterThan(0);
    const r = await pullVqgan(vq, options(work));
    expect(r.skipped.filter((k) => k.startsWith('loss.'))).toHaveLength(6);
    expect(cdn.seen.at(-1)).toMatchObject({ range: `bytes=${kept}-`, status: 200 });
    expectVqganEqualsFixture(join(work, 'vqgan'));
    expect(existsSync(join(work, '.partial', 'vqgan-download'))).toBe(false);
  });

  it('refuses a checkpoint whose pickle names os.system and keeps the old model', async () => {
    writeRandomVqgan(join(work, 'vqgan'), tinyVqganConfig(), { seed: 3 });
    const before = readFileSync(join(work, 'vqgan', 'model.safetensors'));
    const vq = serveVqgan(readFileSync(join(FIXTURES, 'evil.ckpt')));
    const err = await pullVqgan(vq, options(work)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PickleError);
    expect((err as PickleError).reason).toBe('forbidden_global');
    expect((err as PickleError).code).toBe('bad_input');
    expect((err as Error).message).toMatch(/asks for posix\.system/);
    expect(readFileSync(join(work, 'vqgan', 'model.safetensors')).equals(before)).toBe(true);
    // Nothing of it is kept for a rerun, and no lock or staging folder is left behind.
    expect(existsSync(join(work, '.partial', 'vqgan-download'))).toBe(false);
    expect(existsSync(join(work, '.partial', 'vqgan'))).toBe(false);
  });

  it('checks the checkpoint against model.yaml before writing anything', async () => {
    const vq = serveVqgan(readFileSync(join(FIXTURES, 'last.ckpt')));
    const yaml = readFileSync(join(FIXTURES, 'model.yaml'), 'utf8').replace('n_embed: 8', 'n_embed: 9');
    hf.routes.set(YAML_PATH, { body: Buffer.from(yaml) });
    await expect(pullVqgan(vq, options(work))).rejects.toThrow(
      /does not fit model\.yaml \(1 problems\):\n {2}quantize\.embedding\.weight: shape \[8,4\], expected \[9,4\]/,
    );
    expect(existsSync(join(work, 'vqgan'))).toBe(false);
  });
});

describe('vqganConfigFromTamingYaml', () => {
  it('reads taming ddconfig and refuses other quantisers', () => {
    const yaml = readFileSync(join(FIXTURES, 'model.yaml'), 'utf8');
    const c = vqganConfigFromTamingYaml(yaml);
    expect(c).toMatchObject({ model_type: 'vqgan', n_embed: 8, embed_dim: 4 });
    expect(c.ddconfig).toMatchObject({ ch: 32, ch_mult: [1], attn_resolutions: [8], z_channels: 4 });
    expect(() =>
      vqganConfigFromTamingYaml(yaml.replace('taming.models.vqgan.VQModel', 'taming.models.vqgan.GumbelVQ')),
    ).toThrow(/only taming\.models\.vqgan\.VQModel/);
    expect(() => vqganConfigFromTamingYaml('model: [1')).toThrow(/not valid YAML/);
  });
});

describe('download', () => {
  const body = Buffer.from('0123456789'.repeat(1000));
  const url = () => `${cdn.url}/file.bin`;

  it('finishes from a complete .part (416) and restarts when the file changed (If-Range)', async () => {
    cdn.routes.set('/file.bin', { body });
    const dest = join(work, 'file.bin');
    writeFileSync(`${dest}.part`, body);
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url: url(), total: body.length }));
    const done = await download(url(), dest, { progressIntervalMs: 0 });
    expect(done).toMatchObject({ bytes: body.length, resumedFrom: body.length, sha256: sha256(body) });
    expect(cdn.seen.at(-1)!.status).toBe(416);

    // A part from an older version of the file: the server's ETag differs, so it sends everything.
    writeFileSync(`${dest}.part`, Buffer.from('stale bytes'));
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url: url(), validator: '"old"' }));
    rmSync(dest);
    const again = await download(url(), dest);
    expect(again.resumedFrom).toBe(0);
    expect(cdn.seen.at(-1)).toMatchObject({ range: 'bytes=11-', ifRange: '"old"', status: 200 });
    expect(readFileSync(dest).equals(body)).toBe(true);
  });

  it('checks the announced size, and says when it cannot write', async () => {
    cdn.routes.set('/file.bin', { body, headers: { 'x-linked-size': String(body.length + 1) } });
    await expect(download(url(), join(work, 'a.bin'))).rejects.toThrow(
      `the server offers ${body.length} bytes, expected ${body.length + 1}`,
    );
    cdn.routes.set('/file.bin', { body });
    await expect(download(url(), join(work, 'a.bin'), { size: 5 })).rejects.toMatchObject({
      reason: 'size_mismatch',
    });
    const err = await download(url(), join(work, 'no', 'such', 'dir', 'a.bin')).catch((e: unknown) => e);
    // The disk is not the download's failure.
    expect(err).toMatchObject({ reason: 'disk', code: 'internal' });
    expect((err as Error).message).toMatch(/^cannot write .*a\.bin/);
  });

  it('lets one pull at a time write a folder', async () => {
    await withPullLock(work, async () => {
      await expect(withPullLock(work, async () => 1)).rejects.toMatchObject({
        reason: 'busy',
        code: 'unavailable',
      });
    });
    // The lock went with its holder; a lock left by a live process is honoured, a dead one's is not.
    expect(existsSync(join(work, '.partial'))).toBe(false);
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)']);
    try {
      mkdirSync(join(work, '.partial'));
      writeFileSync(join(work, '.partial', 'lock'), String(sleeper.pid));
      await expect(withPullLock(work, async () => 1)).rejects.toThrow(/another models pull \(pid \d+\)/);
    } finally {
      sleeper.kill();
      await new Promise((resolve) => sleeper.once('exit', resolve));
    }
    await expect(withPullLock(work, async () => 2)).resolves.toBe(2);
  });
});
