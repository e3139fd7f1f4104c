// A read-only view of an uncompressed zip file, as torch.save writes one (every entry "stored",
// aligned for mapping): the central directory is read once, entry bytes on demand from the file, so
// a gigabyte checkpoint is never held in memory. Zip64 records are understood; compression is not.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { type ErrorCode, ReasonedError } from '../../../shared/errors.js';

/** What the file holds is its fault; failing to read it is ours (or the disk's). */
const zipErrorCodes = {
  not_zip: 'bad_input',
  compressed: 'bad_input',
  truncated: 'bad_input',
  io: 'internal',
} as const satisfies Record<string, ErrorCode>;

export type ZipErrorReason = keyof typeof zipErrorCodes;

export class ZipError extends ReasonedError<ZipErrorReason, (typeof zipErrorCodes)[ZipErrorReason]> {
  override readonly name = 'ZipError';
  constructor(reason: ZipErrorReason, message: string, options: { cause?: unknown } = {}) {
    super(zipErrorCodes[reason], reason, message, options);
  }
}

export interface ZipEntry {
  readonly name: string;
  readonly size: number;
  /** Where the entry's bytes start in the file (after its local header). */
  readonly dataOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;

export class ZipReader {
  private fd: number | undefined;
  private readonly entries = new Map<string, ZipEntry>();

  private constructor(
    readonly path: string,
    fd: number,
    readonly size: number,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and reads its central directory; throws ZipError. */
  static open(path: string): ZipReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw new ZipError('io', `cannot open ${path}: ${(cause as Error).message}`, { cause });
    }
    const zip = new ZipReader(path, fd, fstatSync(fd).size);
    try {
      zip.readDirectory();
    } catch (err) {
      zip.close();
      throw err;
    }
    return zip;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /** Reads `length` bytes of an entry starting `offset` bytes into it. */
  read(entry: ZipEntry, offset = 0, length = entry.size - offset): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > entry.size) {
      throw new ZipError(
        'truncated',
        `${this.path}: bytes [${offset}, ${offset + length}) lie outside entry ${entry.name} (${entry.size} bytes)`,
      );
    }
    return this.readAt(entry.dataOffset + offset, length);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private readAt(position: number, length: number): Uint8Array {
    if (this.fd === undefined) throw new ZipError('io', `${this.path}: already closed`);
    if (position < 0 || position + length > this.size) {
      throw new ZipError(
        'truncated',
        `${this.path} is truncated: needs bytes up to ${position + length}, has ${this.size}`,
      );
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, position + done);
      if (n === 0) throw new ZipError('truncated', `${this.path}: file ended at byte ${position + done}`);
      done += n;
    }
    return out;
  }

  private readDirectory(): void {
    // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
    const tailLen = Math.min(this.size, 22 + 0xffff);
    const tail = this.readAt(this.size - tailLen, tailLen);
    const tv = view(tail);
    let at = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD) {
        at = i;
        break;
      }
    }
    if (at < 0) throw new ZipError('not_zip', `${this.path} is not a zip file (no end of central directory)`);
    let count = tv.getUint16(at + 10, true);
    let dirSize = tv.getUint32(at + 12, true);
    let dirOffset = tv.getUint32(at + 16, true);
    if (count === 0xffff || dirSize === U32_MAX || dirOffset === U32_MAX) {
      const locAt = this.size - tailLen + at - 20;
      const loc = view(this.readAt(locAt, 20));
      if (loc.getUint32(0, true) !== EOCD64_LOCATOR) {
        throw new ZipError('not_zip', `${this.path}: zip64 sizes without a zip64 locator`);
      }
      const rec = view(this.readAt(u64(loc, 8), 56));
      if (rec.getUint32(0, true) !== EOCD64) throw new ZipError('not_zip', `${this.path}: bad zip64 record`);
      count = u64(rec, 32);
      dirSize = u64(rec, 40);
      dirOffset = u64(rec, 48);
    }
    const dir = this.readAt(dirOffset, dirSize);
    const dv = view(dir);
    const utf8 = new TextDecoder('utf-8', { fatal: false });
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > dir.length || dv.getUint32(p, true) !== CENTRAL) {
        throw new ZipError('not_zip', `${this.path}: central directory entry ${i} is damaged`);
      }
      const method = dv.getUint16(p + 10, true);
      let compressed = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localOffset = dv.getUint32(p + 42, true);
      // The name, extra field and comment lengths come from the file: they must stay inside the directory.
      if (p + 46 + nameLen + extraLen + commentLen > dir.length) {
        throw new ZipError('not_zip', `${this.path}: central directory entry ${i} is damaged`);
      }
      const name = utf8.decode(dir.subarray(p + 46, p + 46 + nameLen));
      // Zip64 extra field: the 64-bit values of whichever fields read 0xffffffff, in this order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = dv.getUint16(e, true);
        const len = dv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) {
          throw new ZipError('not_zip', `${this.path}: central directory entry ${i} is damaged`);
        }
        if (id === 0x0001) {
          const fieldEnd = e + 4 + len;
          const field = (q: number): number => {
            if (q + 8 > fieldEnd) {
              throw new ZipError('not_zip', `${this.path}: central directory entry ${i} is damaged`);
            }
            return u64(dv, q);
          };
          let q = e + 4;
          if (size === U32_MAX) {
            size = field(q);
            q += 8;
          }
          if (compressed === U32_MAX) {
            compressed = field(q);
            q += 8;
          }
          if (localOffset === U32_MAX) localOffset = field(q);
        }
        e += 4 + len;
      }
      p = extraEnd + commentLen;
      if (method !== 0 || compressed !== size) {
        throw new ZipError(
          'compressed',
          `${this.path}: entry ${name} is compressed (method ${method}); torch.save writes stored entries only`,
        );
      }
      const local = view(this.readAt(localOffset, 30));
      if (local.getUint32(0, true) !== LOCAL) {
        throw new ZipError('not_zip', `${this.path}: local header of ${name} is damaged`);
      }
      const dataOffset = localOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
      if (dataOffset + size > this.size) {
        throw new ZipError(
          'truncated',
          `${this.path} is truncated: entry ${name} needs bytes up to ${dataOffset + size}, the file has ${this.size}`,
        );
      }
      this.entries.set(name, { name, size, dataOffset });
    }
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(v: DataView, at: number): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError('not_zip', `zip field ${n} is out of range`);
  return Number(n);
}
