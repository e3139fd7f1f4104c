// The playground's image library: a local "channel" is a folder of uploaded images under
// `${dataDir}/library/<channel>/` with a small manifest (file -> index id). The images are indexed
// through the embed-image queue like chat images; this module only keeps the files and the manifest.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { z } from 'zod';
import { BadInputError, NotFoundError } from '../../shared/errors.js';
import { CHANNEL_NAME } from './channels.js';

export { CHANNEL_NAME, channelFromName, libraryScope, UPLOAD_MAX_BYTES } from './channels.js';

/** Channel names double as folder names: a strict alphabet keeps paths inside the library. */
export const channelNameSchema = z
  .string()
  .regex(CHANNEL_NAME, 'lowercase letters, digits, _ and - (at most 40)');

const MANIFEST = '.manifest.json';

/** Image types the library keeps, by the content type the browser sends. */
const extensions: Readonly<Record<string, string>> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/avif': 'avif',
};

export const libraryContentTypes: Readonly<Record<string, string>> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  avif: 'image/avif',
};

const entrySchema = z.object({
  /** Id of the row in the images table (from the embed-image result). */
  imageId: z.string(),
  /** File name inside the channel folder: `<hash>.<ext>`. */
  file: z.string(),
  /** Name the user uploaded it as (shown only). */
  name: z.string(),
  bytes: z.number().int(),
  addedAt: z.string(),
});
export type LibraryEntry = z.infer<typeof entrySchema>;

const manifestSchema = z.array(entrySchema);

/** File names the library writes: hex hash and a known extension (never a user's path). */
const FILE_NAME = /^[0-9a-f]{32}\.(png|jpg|webp|gif|avif)$/;

export class Library {
  readonly root: string;
  // One writer at a time per process: two uploads must not lose each other's manifest entry.
  #chain: Promise<unknown> = Promise.resolve();

  constructor(root: string) {
    this.root = root;
  }

  /** The folder of a channel (validated name). */
  dir(channel: string): string {
    return join(this.root, channelNameSchema.parse(channel));
  }

  async list(channel: string): Promise<LibraryEntry[]> {
    return this.#read(channel);
  }

  /**
   * Stores the bytes under their content hash and returns the file name. The caller indexes the
   * image and then calls `record`; a file without an entry is invisible and overwritten on retry.
   */
  async store(
    channel: string,
    bytes: Uint8Array,
    contentType: string,
  ): Promise<{ file: string; hash: string }> {
    const ext = extensions[contentType.split(';')[0]!.trim().toLowerCase()];
    if (!ext) {
      throw new BadInputError(`the library keeps PNG, JPEG, WebP, GIF and AVIF images, not ${contentType}`);
    }
    const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 32);
    const file = `${hash}.${ext}`;
    const dir = this.dir(channel);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, file), bytes);
    return { file, hash };
  }

  /** Adds (or replaces, for the same file) the manifest entry of a stored, indexed image. */
  record(channel: string, entry: LibraryEntry): Promise<void> {
    return this.#exclusive(async () => {
      const entries = (await this.#read(channel)).filter((e) => e.file !== entry.file);
      entries.push(entry);
      await this.#write(channel, entries);
    });
  }

  /** Removes an entry and its file; returns the entry, or throws not_found. */
  remove(channel: string, imageId: string): Promise<LibraryEntry> {
    return this.#exclusive(async () => {
      const entries = await this.#read(channel);
      const entry = entries.find((e) => e.imageId === imageId);
      if (!entry) throw new NotFoundError('no such image in this library', { imageId });
      await this.#write(
        channel,
        entries.filter((e) => e !== entry),
      );
      // Another entry can share the file only through a hash collision; keep it then.
      if (!entries.some((e) => e !== entry && e.file === entry.file)) {
        await rm(join(this.dir(channel), entry.file), { force: true });
      }
      return entry;
    });
  }

  /** Removes a stored file that no entry refers to (an upload whose indexing failed). */
  discard(channel: string, file: string): Promise<void> {
    return this.#exclusive(async () => {
      if (!FILE_NAME.test(file)) return;
      if ((await this.#read(channel)).some((e) => e.file === file)) return;
      await rm(join(this.dir(channel), file), { force: true });
    });
  }

  /** The bytes of a library file and their content type. */
  async readFile(channel: string, file: string): Promise<{ bytes: Buffer; contentType: string }> {
    if (!FILE_NAME.test(file)) throw new NotFoundError('no such file', { file });
    try {
      const bytes = await readFile(join(this.dir(channel), file));
      return {
        bytes,
        contentType: libraryContentTypes[extname(file).slice(1)] ?? 'application/octet-stream',
      };
    } catch {
      throw new NotFoundError('no such file', { file });
    }
  }

  /** Channels that hold a manifest. */
  async channels(): Promise<string[]> {
    try {
      const names = await readdir(this.root, { withFileTypes: true });
      return names
        .filter((d) => d.isDirectory() && channelNameSchema.safeParse(d.name).success)
        .map((d) => d.name)
        .sort();
    } catch {
      return [];
    }
  }

  async #read(channel: string): Promise<LibraryEntry[]> {
    let raw: string;
    try {
      raw = await readFile(join(this.dir(channel), MANIFEST), 'utf8');
    } catch {
      return [];
    }
    const parsed = manifestSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : [];
  }

  async #write(channel: string, entries: LibraryEntry[]): Promise<void> {
    const dir = this.dir(channel);
    await mkdir(dir, { recursive: true });
    // Write then rename: a crash mid-write must not leave half a manifest.
    const tmp = join(dir, `${MANIFEST}.${process.pid}.tmp`);
    await writeFile(tmp, `${JSON.stringify(entries, null, 2)}\n`);
    await rename(tmp, join(dir, MANIFEST));
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => {});
    return run;
  }
}
