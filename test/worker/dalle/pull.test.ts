// `models pull --only dalle` against a local HTTP server serving an archive in the layout of
// minDALL-E's 1.3B.tar.gz (tools/make_dalle_pull_fixtures.py: config.yaml, CharBPE vocab + merges,
// torch.save'd stage1/stage2 checkpoints): the converted folder holds exactly the reference weights,
// loads through the same code as random folders, and reproduces PyTorch's logits.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDalleModel } from '../../../src/worker/dalle/model.js';
import {
  configsFromMinDalleYaml,
  pullDalle,
  tokenizerFromCharBpeFiles,
} from '../../../src/worker/dalle/pull.js';
import { DalleRunner } from '../../../src/worker/dalle/runner.js';
import { extractTarGz } from '../../../src/worker/models/pull/tar.js';
import { Weights } from '../../../src/worker/models/weights.js';
import { entryArgs } from '../../helpers/entry.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures');
const ROOT = join(import.meta.dirname, '../../..');
const run = promisify(execFile);
const ARCHIVE = readFileSync(join(FIXTURES, 'pull/mindalle-tiny.tar.gz'));
let server: Server;
let base: string;
let dir: string;
const bodies = new Map<string, Buffer>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dalle-pull-'));
  bodies.set('/models/1.3B.tar.gz', ARCHIVE);
  server = createServer((req, res) => {
    const body = bodies.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/gzip' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('pullDalle', () => {
  it('converts the archive into a folder that runs as PyTorch does', async () => {
    const out = join(dir, 'models');
    const lines: string[] = [];
    const r = await pullDalle(
      { archiveUrl: `${base}/models/1.3B.tar.gz` },
      { outDir: out, log: (l) => lines.push(l) },
    );
    expect(r.dir).toBe(join(out, 'dalle'));
    expect(r.skipped).toEqual(['blocks.0.attn.mask']);
    expect(lines.join('\n')).toMatch(/2 layers of 32 \(4 heads\), 16 text \+ 64 image tokens/);

    // Exactly the reference weights, under the same names.
    const got = Weights.fromFile(join(r.dir, 'model.safetensors'));
    const want = Weights.fromFile(join(FIXTURES, 'reference/mindalle-tiny/model.safetensors'));
    try {
      expect(got.names().sort()).toEqual(want.names().sort());
      for (const name of want.names()) expect(got.get(name), name).toEqual(want.get(name));
    } finally {
      got.close();
      want.close();
    }

    const model = await loadDalleModel(r.dir);
    expect(model.vqganDir).toBe(join(r.dir, 'vqgan'));
    // [PAD] comes after the 57 entries of the vocab file; "a cat" is a</w> + cat</w>.
    expect(model.config.pad_token_id).toBe(57);
    const enc = model.tokenizer.encode('A Cat');
    expect(enc.ids.slice(0, enc.length)).toEqual([27, 54]);
    expect(model.tokenizer.decode(enc.ids)).toBe('a cat');

    // The reference prompt's first image token, through the converted folder.
    const io = Weights.fromFile(join(FIXTURES, 'reference/mindalle-tiny-io.safetensors'));
    try {
      const runner = await DalleRunner.create(model.config, model.weights);
      const logits = await runner.prefill(Array.from(io.get('text_f32', [1, 16])));
      const expected = io.get('step_logits').subarray(0, 1024);
      let err = 0;
      let scale = 0;
      for (let i = 0; i < 1024; i++) {
        err = Math.max(err, Math.abs(logits[i]! - expected[i]!));
        scale = Math.max(scale, Math.abs(expected[i]!));
      }
      expect(err / scale).toBeLessThan(1e-5);
      await runner.release();
    } finally {
      io.close();
    }
    const vq = JSON.parse(readFileSync(join(r.dir, 'vqgan/config.json'), 'utf8')) as Record<string, unknown>;
    expect(vq).toMatchObject({ model_type: 'vqgan', n_embed: 1024, embed_dim: 4 });
  });

  it('is what `models pull --only dalle` runs', async () => {
    const out = join(dir, 'cli');
    const { stdout } = await run(
      process.execPath,
      entryArgs(
        'src/worker/models/cli.ts',
        'pull',
        '--only',
        'dalle',
        '--dalle-url',
        `${base}/models/1.3B.tar.gz`,
        '--out',
        out,
      ),
      { cwd: ROOT },
    );
    expect(stdout).toMatch(/wrote .*dalle \([\d,]+ parameters, with its VQGAN\)/);
    expect((await loadDalleModel(join(out, 'dalle'))).config.n_layers).toBe(2);
    await expect(
      run(process.execPath, entryArgs('src/worker/models/cli.ts', 'pull', '--only', 'dall-e'), { cwd: ROOT }),
    ).rejects.toMatchObject({ code: 2 });
  });

  it('refuses an archive without the stage-2 checkpoint and leaves no folder', async () => {
    // The same archive without its last member (stage2_last.ckpt): rebuilt from the real one.
    const members = join(dir, 'members');
    rmSync(members, { recursive: true, force: true });
    const names = await extractTarGz(join(FIXTURES, 'pull/mindalle-tiny.tar.gz'), () => undefined);
    expect(names).toEqual([]);
    const raw = gunzipTar(ARCHIVE).filter((m) => !m.name.endsWith('stage2_last.ckpt'));
    bodies.set('/models/broken.tar.gz', gzipSync(buildTar(raw)));
    const out = join(dir, 'broken');
    await expect(
      pullDalle({ archiveUrl: `${base}/models/broken.tar.gz` }, { outDir: out }),
    ).rejects.toMatchObject({
      code: 'bad_input',
      message: expect.stringMatching(/no stage2\.ckpt/),
    });
    expect(() => readFileSync(join(out, 'dalle/config.json'))).toThrow();
  });

  it('reads minDALL-E config.yaml and CharBPE files, and says what does not fit', () => {
    expect(() => configsFromMinDalleYaml('stage1: {}')).toThrow(/not a minDALL-E config/);
    const yaml = `stage1: {embed_dim: 4, n_embed: 8, hparams: {z_channels: 4, resolution: 8, in_channels: 3, out_ch: 3, ch: 32, ch_mult: [1], num_res_blocks: 1}}
stage2: {vocab_size_txt: 100, vocab_size_img: 16, hparams: {embed_dim: 32, n_layers: 2, n_heads: 4, ctx_len_txt: 8, ctx_len_img: 16}}`;
    expect(() => configsFromMinDalleYaml(yaml)).toThrow(/8 codes but stage 2 writes 16/);
    expect(() => tokenizerFromCharBpeFiles('{"[UNK]": 0}', 'a b c')).toThrow(/not a pair/);
    expect(tokenizerFromCharBpeFiles('{"[UNK]": 0, "a": 1, "[PAD]": 2}', '#version: 0.2\n').padId).toBe(2);
    writeFileSync(join(dir, 'not.tar.gz'), gzipSync(Buffer.alloc(600, 7)));
    return expect(extractTarGz(join(dir, 'not.tar.gz'), () => undefined)).rejects.toThrow(/checksum/);
  });
});

interface Member {
  name: string;
  data: Buffer;
}

/** The members of an uncompressed-after-gunzip ustar/pax archive (test helper; headers only as far as needed). */
function gunzipTar(gz: Buffer): Member[] {
  const tar = gunzipSync(gz);
  const out: Member[] = [];
  let pending: string | undefined;
  for (let at = 0; at + 512 <= tar.length; ) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const size = Number.parseInt(h.subarray(124, 136).toString().replace(/\0.*$/, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    const data = tar.subarray(at + 512, at + 512 + size);
    const name = h.subarray(0, 100).toString().replace(/\0.*$/s, '');
    if (type === 'x') pending = /path=([^\n]*)\n/.exec(data.toString())?.[1];
    else {
      out.push({ name: pending ?? name, data: Buffer.from(data) });
      pending = undefined;
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** A plain ustar archive of `members`. */
function buildTar(members: readonly Member[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const h = Buffer.alloc(512);
    h.write(m.name, 0, 100);
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${m.data.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\x0000', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    parts.push(h, m.data, Buffer.alloc((512 - (m.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
