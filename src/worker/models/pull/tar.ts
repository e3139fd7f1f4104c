// Reads chosen files out of a .tar.gz (minDALL-E ships its checkpoint as one) without unpacking the
// rest: gunzip through node:zlib, then the tar headers (POSIX ustar, with pax `path` records and GNU
// long names). Written here because no tar package is installed and this subset is small; only the
// members asked for are written, each to a path the caller chooses, so member names never pick where
// a file lands.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { ReasonedError } from '../../../shared/errors.js';

export class TarError extends ReasonedError<'malformed', 'bad_input'> {
  override readonly name = 'TarError';
  constructor(message: string) {
    super('bad_input', 'malformed', message);
  }
}

const BLOCK = 512;

function field(h: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && h[end] !== 0) end++;
  return new TextDecoder().decode(h.subarray(start, end));
}

function sizeOf(h: Uint8Array, source: string): number {
  if (h[124]! & 0x80) {
    // GNU base-256 for sizes of 8 GiB and more.
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i]!;
    return n;
  }
  const text = field(h, 124, 12).trim();
  if (!/^[0-7]*$/.test(text)) throw new TarError(`${source}: a tar header has a bad size "${text}"`);
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function checksumOk(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  return sum === Number.parseInt(field(h, 148, 8).trim() || '0', 8);
}

/**
 * Writes each regular-file member for which `destination(name)` gives a path; returns the names
 * written. Throws TarError on a damaged archive, and zlib's error on a damaged gzip stream.
 */
export async function extractTarGz(
  path: string,
  destination: (name: string) => string | undefined,
): Promise<string[]> {
  const written: string[] = [];
  let buf: Buffer = Buffer.alloc(0);
  let header: { name: string; size: number; type: string } | undefined;
  let remaining = 0; // data bytes of the current member still to come
  let padding = 0;
  let out: Awaited<ReturnType<typeof open>> | undefined;
  let data: Buffer[] | undefined; // pax / long-name payloads
  let nextName: string | undefined;
  let ended = false;
  try {
    for await (const chunk of createReadStream(path).pipe(createGunzip())) {
      buf = buf.length === 0 ? (chunk as Buffer) : Buffer.concat([buf, chunk as Buffer]);
      for (;;) {
        if (ended) break;
        if (header) {
          if (remaining > 0) {
            if (buf.length === 0) break;
            const take = buf.subarray(0, Math.min(remaining, buf.length));
            if (out) await out.write(take);
            else data?.push(Buffer.from(take));
            remaining -= take.length;
            buf = buf.subarray(take.length);
            if (remaining > 0) break;
          }
          if (buf.length < padding) break;
          buf = buf.subarray(padding);
          if (out) {
            await out.close();
            out = undefined;
            written.push(header.name);
          }
          if (data) {
            const payload = Buffer.concat(data).toString('utf8');
            if (header.type === 'L') nextName = payload.replace(/\0+$/, '');
            else {
              const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(payload);
              if (m) nextName = m[1];
            }
            data = undefined;
          }
          header = undefined;
          continue;
        }
        if (buf.length < BLOCK) break;
        const h = buf.subarray(0, BLOCK);
        buf = buf.subarray(BLOCK);
        if (h.every((b) => b === 0)) {
          ended = true; // two zero blocks end the archive; one is enough to stop reading
          break;
        }
        if (!checksumOk(h)) throw new TarError(`${path}: a tar header's checksum does not match`);
        const prefix = field(h, 345, 155);
        const own = field(h, 0, 100);
        const name = nextName ?? (prefix ? `${prefix}/${own}` : own);
        nextName = undefined;
        const type = String.fromCharCode(h[156]! || 48);
        const size = sizeOf(h, path);
        header = { name, size, type };
        remaining = size;
        padding = (BLOCK - (size % BLOCK)) % BLOCK;
        if (type === 'x' || type === 'L') data = [];
        else if (type === '0' || type === '7') {
          const dest = destination(name.replace(/^\.\//, ''));
          if (dest) out = await open(dest, 'w');
        }
      }
      if (ended) break;
    }
  } finally {
    await out?.close();
  }
  if (header && remaining > 0) throw new TarError(`${path}: the archive ends inside ${header.name}`);
  return written;
}
