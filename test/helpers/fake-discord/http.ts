// HTTP plumbing for the fake: reading JSON or multipart bodies (payload_json + files[n]) into a recorded
// request, and writing responses. Multipart is decoded by the platform's own FormData parser (undici's
// Response.formData), the same code family that encodes it in @discordjs/rest.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, RestError } from './rules.js';

export interface RecordedFile {
  /** The form field, e.g. `files[0]`. */
  field: string;
  /** n of `files[n]` (the id discord.js puts in `attachments`), or -1 for other field names. */
  index: number;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

export interface RecordedRequest {
  /** Order of arrival, from 1. */
  readonly seq: number;
  /** Fake-clock time of arrival. */
  readonly at: number;
  readonly method: string;
  /** Path below the API version, e.g. `/interactions/123/abc/callback`. */
  readonly path: string;
  /** Method and route template, e.g. `POST /interactions/:id/:token/callback`; `method path` if unmatched. */
  route: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body, or the parsed `payload_json` of a multipart body; undefined when there is none. */
  readonly body: unknown;
  readonly files: readonly RecordedFile[];
  /** Interaction this request used (callback or webhook token), if any. */
  interactionId?: string;
  /** Filled when the response is sent. */
  status: number;
  response: unknown;
}

const MAX_BODY_BYTES = 256 * 1024 * 1024;

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw errors.entityTooLarge();
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

export async function parseBody(
  contentType: string | undefined,
  raw: Buffer,
): Promise<{ body: unknown; files: RecordedFile[] }> {
  if (raw.length === 0) return { body: undefined, files: [] };
  if (contentType?.startsWith('multipart/form-data')) {
    const form = await new Response(new Uint8Array(raw), { headers: { 'content-type': contentType } })
      .formData()
      .catch(() => {
        throw new RestError(400, { code: 50035, message: 'Invalid Form Body' });
      });
    let body: unknown;
    const files: RecordedFile[] = [];
    for (const [field, value] of form.entries()) {
      if (typeof value === 'string') {
        if (field === 'payload_json') body = parseJson(value);
        continue;
      }
      const index = /^files\[(\d+)\]$/.exec(field)?.[1];
      files.push({
        field,
        index: index === undefined ? -1 : Number(index),
        filename: value.name,
        contentType: value.type || 'application/octet-stream',
        bytes: Buffer.from(await value.arrayBuffer()),
      });
    }
    return { body, files };
  }
  return { body: parseJson(raw.toString('utf8')), files: [] };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw errors.invalidJson();
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (status === 204 || body === undefined) {
    res.writeHead(status, headers).end();
    return;
  }
  const text = JSON.stringify(body);
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    })
    .end(text);
}

export function headerRecord(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}
