// Request plumbing for the playground API: bodies read with a byte cap that is enforced before the
// whole body is read (Content-Length first, then while streaming), JSON parsed and validated with
// zod, and every failure answered as `{ error: { code, message, details } }` with a user sentence.
import type { Context } from 'hono';
import type { z } from 'zod';
import { asCodedError, BadInputError, type CodedError, ImageTooLargeError } from '../../shared/errors.js';
import { checkJob } from '../../shared/jobs.js';
import { renderError } from '../core/render.js';

/** Too large for this endpoint: image uploads say image_too_large, JSON bodies bad_input. */
function tooLarge(kind: 'image' | 'json', bytes: number | undefined, maxBytes: number): CodedError {
  if (kind === 'image')
    return new ImageTooLargeError(bytes === undefined ? { maxBytes } : { bytes, maxBytes });
  return new BadInputError(`the request body is larger than ${maxBytes} bytes`, { maxBytes });
}

/**
 * Reads the request body, refusing it as soon as it is known to exceed `maxBytes`: a declared
 * Content-Length over the cap is refused without reading a byte; a chunked body is counted as it
 * streams and abandoned at the first chunk past the cap.
 */
export async function readBody(c: Context, maxBytes: number, kind: 'image' | 'json'): Promise<Uint8Array> {
  const declared = c.req.header('content-length');
  if (declared !== undefined) {
    const n = Number(declared);
    if (Number.isFinite(n) && n > maxBytes) throw tooLarge(kind, n, maxBytes);
  }
  const body = c.req.raw.body;
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(kind, undefined, maxBytes);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** Reads, parses and validates a JSON body: `bad_input` for bad JSON, unknown fields or bad values. */
export async function readJson<S extends z.ZodType>(
  c: Context,
  schema: S,
  maxBytes: number,
): Promise<z.output<S>> {
  const bytes = await readBody(c, maxBytes, 'json');
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new BadInputError('the request body is not valid JSON', { reason: 'bad_json' });
  }
  return checkJob(schema, value);
}

/** Validates query parameters (strings) with a zod schema that coerces them. */
export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  return checkJob(schema, c.req.query());
}

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/** The JSON body of a failed request; `message` is the sentence to show, never a stack trace. */
export function errorBody(error: unknown): ErrorBody {
  const coded = asCodedError(error);
  // Internal details can hold paths and library messages: users get the sentence only.
  const details = coded.code === 'internal' ? {} : { ...coded.details };
  return { error: { code: coded.code, message: renderError(coded), details } };
}
