// minDALL-E's text tokenizer: Hugging Face's CharBPETokenizer (BERT clean-up, then lowercasing,
// BERT pre-tokenisation on whitespace and punctuation, BPE with "</w>" ending each word, [UNK] for
// unknown characters) over its bpe-16k vocab.json + merges.txt, with [PAD] added and every prompt
// padded or truncated to ctx_len_txt ids on the right, as minDALL-E's build_tokenizer sets it up.
// Encoding goes through @huggingface/tokenizers from a tokenizer.json of that structure.
import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';
import { cleanPromptText, TokenizerError } from '../models/tokenizer.js';
import { END_OF_WORD, learnMerges, tinyCorpus } from '../models/tokenizer-builder.js';

export const UNK_TOKEN = '[UNK]';
export const PAD_TOKEN = '[PAD]';

/**
 * The tokenizer.json that Hugging Face's `CharBPETokenizer(vocab, merges, unk_token='[UNK]',
 * lowercase=True)` saves, with [PAD] added after the vocabulary (its id is the vocabulary's size
 * unless the vocabulary already holds it).
 */
export function charBpeTokenizerJson(vocab: Record<string, number>, merges: readonly string[]): object {
  if (vocab[UNK_TOKEN] === undefined) throw new Error(`charBpeTokenizerJson: the vocab has no ${UNK_TOKEN}`);
  let padId = vocab[PAD_TOKEN];
  if (padId === undefined) padId = Math.max(-1, ...Object.values(vocab)) + 1;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: padId,
        content: PAD_TOKEN,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    // CharBPETokenizer(lowercase=True): BertNormalizer(lowercase=False), whose strip_accents follows
    // lowercase (so accents stay), then Lowercase.
    normalizer: {
      type: 'Sequence',
      normalizers: [
        {
          type: 'BertNormalizer',
          clean_text: true,
          handle_chinese_chars: true,
          strip_accents: null,
          lowercase: false,
        },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'BPEDecoder', suffix: END_OF_WORD },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: UNK_TOKEN,
      continuing_subword_prefix: null,
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [...merges],
    },
  };
}

const TINY_MERGES = 200;
const PRINTABLE = Array.from({ length: 0x7e - 0x20 }, (_, i) => String.fromCharCode(0x21 + i));

/** Sizes of the tiny tokenizer, for configs that must match it without building it. */
export const TINY_DALLE_TOKENIZER = {
  /** [UNK], 94 printable ASCII characters and their "</w>" forms, the merges, then [PAD]. */
  vocabSize: 1 + 2 * PRINTABLE.length + TINY_MERGES + 1,
  padId: 1 + 2 * PRINTABLE.length + TINY_MERGES,
} as const;

/** A small CharBPE tokenizer.json for tests and the tiny model: merges learned from the built-in corpus. */
export function buildTinyDalleTokenizerJson(): object {
  const merges = learnMerges(tinyCorpus(), TINY_MERGES);
  if (merges.length !== TINY_MERGES) throw new Error(`tiny tokenizer: learned ${merges.length} merges`);
  const list = [
    UNK_TOKEN,
    ...PRINTABLE,
    ...PRINTABLE.map((c) => c + END_OF_WORD),
    ...merges.map((m) => m.replace(' ', '')),
  ];
  const vocab: Record<string, number> = {};
  list.forEach((token, id) => {
    if (token in vocab) throw new Error(`tiny tokenizer: duplicate token ${token}`);
    vocab[token] = id;
  });
  return charBpeTokenizerJson(vocab, merges);
}

export interface DalleEncoding {
  /** Exactly contextLength ids: the prompt's tokens, then [PAD]. */
  readonly ids: readonly number[];
  /** Tokens of the prompt that fit (before padding). */
  readonly length: number;
  /** Whether the prompt had more tokens than fit, and was cut. */
  readonly truncated: boolean;
  /** Tokens of the whole prompt. */
  readonly total: number;
}

export class DalleTokenizer {
  readonly padId: number;

  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly contextLength: number,
    padId: number,
  ) {
    this.padId = padId;
  }

  static fromJson(json: unknown, contextLength: number, source = 'tokenizer.json'): DalleTokenizer {
    const j = json as {
      model?: { type?: string; vocab?: Record<string, number> };
      added_tokens?: { id: number; content: string }[];
    };
    if (j?.model?.type !== 'BPE' || typeof j.model.vocab !== 'object')
      throw new TokenizerError('TOKENIZER_INVALID', `${source}: not a BPE tokenizer.json`);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json as ConstructorParameters<typeof Tokenizer>[0], {});
    } catch (err) {
      throw new TokenizerError('TOKENIZER_INVALID', `${source}: ${(err as Error).message}`, { cause: err });
    }
    const pad = tokenizer.token_to_id(PAD_TOKEN);
    if (pad === undefined) throw new TokenizerError('TOKENIZER_INVALID', `${source}: no ${PAD_TOKEN} token`);
    return new DalleTokenizer(tokenizer, contextLength, pad);
  }

  static async fromFile(path: string, contextLength: number): Promise<DalleTokenizer> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new TokenizerError('TOKENIZER_NOT_FOUND', `tokenizer file not found: ${path}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new TokenizerError('TOKENIZER_INVALID', `${path}: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
    return DalleTokenizer.fromJson(json, contextLength, path);
  }

  encode(prompt: string): DalleEncoding {
    const clean = cleanPromptText(prompt);
    const all = clean.length === 0 ? [] : this.tokenizer.encode(clean, { add_special_tokens: false }).ids;
    const body = all.slice(0, this.contextLength);
    const ids = [...body];
    while (ids.length < this.contextLength) ids.push(this.padId);
    return { ids, length: body.length, truncated: all.length > body.length, total: all.length };
  }

  /** The text of ids up to the first [PAD] (lowercased, as the model reads it). */
  decode(ids: readonly number[]): string {
    let end = ids.indexOf(this.padId);
    if (end < 0) end = ids.length;
    return end === 0 ? '' : this.tokenizer.decode(ids.slice(0, end), { skip_special_tokens: true }).trim();
  }
}
