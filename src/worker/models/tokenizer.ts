// CLIP's BPE tokenizer for the text tower: loads a Hugging Face tokenizer.json with
// @huggingface/tokenizers and turns prompts into fixed-length id rows (start, tokens, end, padding),
// truncating as CLIP does so that the end-of-text token the text tower pools at is always present.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import { type ErrorCode, ReasonedError } from '../../shared/errors.js';

// Also the vocab's fault when a prompt's token has no id: the text cannot be wrong, the vocab can.
const tokenizerErrorCodes = {
  TOKENIZER_NOT_FOUND: 'model_missing',
  TOKENIZER_INVALID: 'config_invalid',
} as const satisfies Record<string, ErrorCode>;

export type TokenizerErrorReason = keyof typeof tokenizerErrorCodes;

/** A tokenizer.json that is missing or that we cannot use; the message names the file and the problem. */
export class TokenizerError extends ReasonedError<
  TokenizerErrorReason,
  (typeof tokenizerErrorCodes)[TokenizerErrorReason]
> {
  override readonly name = 'TokenizerError';
  constructor(reason: TokenizerErrorReason, message: string, options: { cause?: unknown } = {}) {
    super(tokenizerErrorCodes[reason], reason, message, options);
  }
}

export interface ClipTokenizerOptions {
  /** Ids per encoded row, start and end tokens included (CLIP's context). @defaultValue 77 */
  readonly contextLength?: number;
  /**
   * Id written after the end token up to `contextLength`.
   * @defaultValue the tokenizer.json's `padding.pad_id` when set, else the end token's id: Hugging Face's
   * CLIP tokenizer pads to max_length with its pad token, which is <|endoftext|> (49407) for
   * openai/clip-vit-base-patch32. (OpenAI's original code pads with 0; the text tower never looks past
   * the first end token, so either works, and we follow Hugging Face.)
   */
  readonly padId?: number;
}

export const DefaultClipTokenizerOptions = {
  contextLength: 77,
} as const satisfies Required<Omit<ClipTokenizerOptions, 'padId'>>;

export interface ClipEncoding {
  /** Exactly `contextLength` ids: start, the tokens, end, then padding. */
  readonly ids: number[];
  /** Ids before the padding, start and end included (so the end token sits at `length - 1`). */
  readonly length: number;
  /** True when tokens were dropped to fit the context. */
  readonly truncated: boolean;
}

const START_TOKEN = '<|startoftext|>';
const END_TOKEN = '<|endoftext|>';

// Only the parts we rely on are checked; the rest is the library's to interpret.
const tokenizerJsonSchema = z.looseObject({
  model: z.looseObject({
    type: z.literal('BPE', { error: 'model.type must be "BPE" (CLIP uses byte-level BPE)' }),
    vocab: z.record(z.string(), z.number().int().nonnegative()),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])),
  }),
  added_tokens: z
    .array(z.looseObject({ id: z.number().int().nonnegative(), content: z.string() }))
    .optional()
    .nullable(),
  post_processor: z.looseObject({ type: z.string() }).optional().nullable(),
  padding: z.looseObject({ pad_id: z.number().int().nonnegative().optional() }).optional().nullable(),
});

type TokenizerJson = z.infer<typeof tokenizerJsonSchema>;

export class ClipTokenizer {
  readonly contextLength: number;
  readonly startId: number;
  readonly endId: number;
  readonly padId: number;
  /** One more than the largest id (vocabulary and added tokens): the text tower's embedding rows. */
  readonly vocabSize: number;
  private readonly tokenizer: Tokenizer;

  private constructor(json: TokenizerJson, source: string, options: ClipTokenizerOptions) {
    const o = { ...DefaultClipTokenizerOptions, ...options };
    if (!Number.isInteger(o.contextLength) || o.contextLength < 2) {
      throw new RangeError(
        `contextLength must be an integer >= 2 (start and end tokens), got ${o.contextLength}`,
      );
    }
    this.contextLength = o.contextLength;
    try {
      // The library indexes these keys unconditionally; a tokenizer.json may omit them.
      this.tokenizer = new Tokenizer(
        {
          ...json,
          added_tokens: json.added_tokens ?? [],
          normalizer: json.normalizer ?? null,
          pre_tokenizer: json.pre_tokenizer ?? null,
          post_processor: json.post_processor ?? null,
          decoder: json.decoder ?? null,
        },
        {},
      );
    } catch (err) {
      throw new TokenizerError('TOKENIZER_INVALID', `${source}: ${(err as Error).message}`, { cause: err });
    }

    // RobertaProcessing names CLIP's start/end tokens (cls/sep) with their ids; otherwise CLIP's names.
    const pp = json.post_processor as { type?: string; cls?: unknown; sep?: unknown } | null | undefined;
    const special = (pair: unknown, fallback: string, role: string) => {
      const given = pp?.type === 'RobertaProcessing' && Array.isArray(pair) ? pair : [];
      const token = typeof given[0] === 'string' ? given[0] : fallback;
      const id = this.tokenizer.token_to_id(token);
      if (id === undefined) throw new TokenizerError('TOKENIZER_INVALID', `${source}: no id for ${token}`);
      if (typeof given[1] === 'number' && given[1] !== id) {
        throw new TokenizerError(
          'TOKENIZER_INVALID',
          `${source}: post_processor.${role} gives ${token} the id ${given[1]}, the vocab ${id}`,
        );
      }
      return id;
    };
    this.startId = special(pp?.cls, START_TOKEN, 'cls');
    this.endId = special(pp?.sep, END_TOKEN, 'sep');
    this.padId = o.padId ?? json.padding?.pad_id ?? this.endId;

    let maxId = -1;
    for (const id of Object.values(json.model.vocab)) maxId = Math.max(maxId, id);
    for (const t of json.added_tokens ?? []) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    if (!Number.isInteger(this.padId) || this.padId < 0 || this.padId >= this.vocabSize) {
      throw new RangeError(`padId ${this.padId} is outside the vocabulary of ${this.vocabSize}`);
    }
  }

  /** From a parsed tokenizer.json; `source` names it in errors. */
  static fromJson(
    json: unknown,
    options: ClipTokenizerOptions = {},
    source = 'tokenizer.json',
  ): ClipTokenizer {
    const parsed = tokenizerJsonSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
      throw new TokenizerError(
        'TOKENIZER_INVALID',
        `${source}: not a BPE tokenizer.json${where}: ${issue?.message}`,
      );
    }
    return new ClipTokenizer(parsed.data, source, options);
  }

  static async fromFile(path: string, options: ClipTokenizerOptions = {}): Promise<ClipTokenizer> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new TokenizerError('TOKENIZER_NOT_FOUND', `tokenizer file not found: ${path}`, { cause: err });
      }
      throw new TokenizerError('TOKENIZER_INVALID', `cannot read ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new TokenizerError('TOKENIZER_INVALID', `${path}: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
    return ClipTokenizer.fromJson(json, options, path);
  }

  /** From a model folder holding tokenizer.json (the Hugging Face repo layout). */
  static fromFolder(dir: string, options: ClipTokenizerOptions = {}): Promise<ClipTokenizer> {
    return ClipTokenizer.fromFile(join(dir, 'tokenizer.json'), options);
  }

  /** [start, first contextLength-2 tokens, end, pad...], always contextLength ids. */
  encode(text: string): ClipEncoding {
    const max = this.contextLength - 2;
    const { ids: body, truncated } = this.bodyIds(cleanPromptText(text), max);
    const ids = [this.startId, ...body, this.endId];
    const length = ids.length;
    while (ids.length < this.contextLength) ids.push(this.padId);
    return { ids, length, truncated };
  }

  encodeBatch(texts: readonly string[]): ClipEncoding[] {
    return texts.map((t) => this.encode(t));
  }

  /** The BPE token strings of a prompt after cleanup, without start/end and without truncation. */
  tokenize(text: string): string[] {
    const clean = cleanPromptText(text);
    return clean.length === 0 ? [] : this.tokenizer.tokenize(clean);
  }

  /** Text of an encoded row up to its first end token (lowercased, as CLIP sees it). */
  decode(ids: readonly number[]): string {
    const start = ids[0] === this.startId ? 1 : 0;
    let end = ids.indexOf(this.endId, start);
    if (end < 0) end = ids.length;
    const body = ids.slice(start, end);
    return body.length === 0 ? '' : this.tokenizer.decode(body, { skip_special_tokens: true }).trim();
  }

  private bodyIds(clean: string, max: number): { ids: number[]; truncated: boolean } {
    // Bound the work on long prompts: pre-tokens never span an ASCII space, so the ids of the text
    // before a space are exactly a prefix of the ids of the whole text. Each word gives at least one
    // token almost always; if this prefix still has too few, we tokenize everything.
    const cut = nthIndexOf(clean, ' ', 2 * this.contextLength);
    if (cut >= 0) {
      const ids = this.rawIds(clean.slice(0, cut));
      if (ids.length > max) return { ids: ids.slice(0, max), truncated: true };
    }
    const ids = this.rawIds(clean);
    return ids.length > max ? { ids: ids.slice(0, max), truncated: true } : { ids, truncated: false };
  }

  private rawIds(text: string): number[] {
    if (text.length === 0) return [];
    const { ids } = this.tokenizer.encode(text, { add_special_tokens: false });
    for (const id of ids) {
      // The library maps a token missing from the vocab to the unk id, which may itself be missing.
      if (!Number.isInteger(id)) {
        throw new TokenizerError(
          'TOKENIZER_INVALID',
          `a token of ${JSON.stringify(text)} has no id in the vocab`,
        );
      }
    }
    return ids;
  }
}

/** Rows of ids as one int64 [rows, contextLength] buffer, the text tower's input_ids. */
export function packIds(encodings: readonly ClipEncoding[]): BigInt64Array {
  const width = encodings[0]?.ids.length ?? 0;
  const out = new BigInt64Array(encodings.length * width);
  encodings.forEach((e, r) => {
    if (e.ids.length !== width) throw new RangeError(`row ${r} has ${e.ids.length} ids, expected ${width}`);
    e.ids.forEach((id, c) => {
      out[r * width + c] = BigInt(id);
    });
  });
  return out;
}

const SPECIAL_TOKENS = /<\|startoftext\|>|<\|endoftext\|>/g;

/**
 * CLIP's text cleanup as far as we can follow it: HTML entities unescaped twice (as CLIP's
 * basic_clean does; ftfy's mojibake repair is not available in JS), NFC and lowercase (as the
 * tokenizer.json normalizer does; idempotent there), whitespace runs to one space, trimmed.
 * Literal special-token strings are removed, so a prompt cannot smuggle in an end token and move the
 * point where the text tower pools.
 */
export function cleanPromptText(text: string): string {
  return unescapeHtml(unescapeHtml(text))
    .normalize('NFC')
    .toLowerCase()
    .replace(SPECIAL_TOKENS, ' ')
    .replace(/\p{White_Space}+/gu, ' ')
    .trim();
}

const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: '\u00a0',
};

/** The entities prompts actually contain (chat platforms escape & < >), numeric ones, and a few named. */
export function unescapeHtml(text: string): string {
  return text.replace(
    /&(?:#(\d{1,8})|#[xX]([0-9a-fA-F]{1,8})|(amp|lt|gt|quot|nbsp)|(apos)(?=;))(;?)/g,
    (match, dec?: string, hex?: string, name?: string, apos?: string) => {
      if (dec !== undefined || hex !== undefined) {
        const cp = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex!, 16);
        // As Python's html.unescape: NUL, surrogates and out-of-range code points become U+FFFD.
        if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return '\ufffd';
        return String.fromCodePoint(cp);
      }
      const key = name ?? apos;
      return key !== undefined ? (NAMED_ENTITIES[key] ?? match) : match;
    },
  );
}

function nthIndexOf(s: string, ch: string, n: number): number {
  let at = -1;
  for (let i = 0; i < n; i++) {
    at = s.indexOf(ch, at + 1);
    if (at < 0) return -1;
  }
  return at;
}
