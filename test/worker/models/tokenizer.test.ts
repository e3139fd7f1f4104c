import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClipTokenizer,
  cleanPromptText,
  packIds,
  TokenizerError,
  unescapeHtml,
} from '../../../src/worker/models/tokenizer.js';
import {
  buildTinyClipTokenizerJson,
  learnMerges,
  TINY_TOKENIZER,
} from '../../../src/worker/models/tokenizer-builder.js';

// GPT-2's byte -> symbol table, written out again here so the tests do not trust the builder's copy.
// Index i is the symbol with id i; `byteSymbol(b)` is the symbol of byte b.
function byteTable(): { bytes: number[]; symbols: string[] } {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  for (let b = 0, n = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return { bytes: bs, symbols: cs.map((c) => String.fromCharCode(c)) };
}
const byteSymbols = (): string[] => byteTable().symbols;
function byteSymbol(b: number): string {
  const { bytes, symbols } = byteTable();
  return symbols[bytes.indexOf(b)]!;
}

const tinyJson = buildTinyClipTokenizerJson() as {
  model: { vocab: Record<string, number>; merges: string[] };
};
const tinyVocab = tinyJson.model.vocab;
const tiny = ClipTokenizer.fromJson(buildTinyClipTokenizerJson());
const { startId: S, endId: E } = TINY_TOKENIZER;

/** Ids of token strings, looked up in the tiny vocab table (fails loudly on a token it lacks). */
function ids(...tokens: string[]): number[] {
  return tokens.map((t) => {
    const id = tinyVocab[t];
    if (id === undefined) throw new Error(`token ${JSON.stringify(t)} is not in the tiny vocab`);
    return id;
  });
}

/** A full row: start, body, end, then end-token padding to 77. */
function row(body: number[], pad = E): number[] {
  const r = [S, ...body, E];
  while (r.length < 77) r.push(pad);
  return r;
}

describe('tiny CLIP tokenizer.json (builder)', () => {
  it('has CLIP’s vocabulary layout: bytes, bytes+</w>, one token per merge, then the two specials', () => {
    const sym = byteSymbols();
    expect(Object.keys(tinyVocab)).toHaveLength(TINY_TOKENIZER.vocabSize);
    expect(TINY_TOKENIZER.vocabSize).toBe(814);
    sym.forEach((s, i) => {
      expect(tinyVocab[s]).toBe(i);
      expect(tinyVocab[`${s}</w>`]).toBe(256 + i);
    });
    tinyJson.model.merges.forEach((m, i) => {
      expect(tinyVocab[m.replace(' ', '')]).toBe(512 + i);
    });
    expect(tinyVocab['<|startoftext|>']).toBe(TINY_TOKENIZER.vocabSize - 2);
    expect(tinyVocab['<|endoftext|>']).toBe(TINY_TOKENIZER.vocabSize - 1);
    // Same positions as in the real vocabulary for the byte symbols.
    expect(tinyVocab['a</w>']).toBe(320);
    expect(tinyVocab['1</w>']).toBe(272);
    expect(tinyVocab['!']).toBe(0);
  });

  it('is deterministic and learns whole tokens for the common prompt words', () => {
    expect(JSON.stringify(buildTinyClipTokenizerJson())).toBe(JSON.stringify(tinyJson));
    for (const w of ['photo', 'of', 'the', 'cat', 'dog', 'watercolor', 'painting']) {
      expect(tinyVocab[`${w}</w>`], w).toBeGreaterThanOrEqual(512);
    }
    // Most frequent pair first, ties to the smaller "a b" string.
    expect(learnMerges(['ab ab cd', 'cd'], 3)).toEqual(['a b</w>', 'c d</w>']);
    expect(learnMerges(['xyz xyz'], 5)).toEqual(['x y', 'xy z</w>']);
  });

  it('gives each tokenizer its own copy of the json', () => {
    const a = buildTinyClipTokenizerJson() as { version: string };
    a.version = 'changed';
    expect((buildTinyClipTokenizerJson() as { version: string }).version).toBe('1.0');
  });
});

describe('ClipTokenizer on the tiny vocabulary', () => {
  it('exposes the special ids, padding id and vocabulary size', () => {
    expect(tiny.startId).toBe(812);
    expect(tiny.endId).toBe(813);
    expect(tiny.padId).toBe(813);
    expect(tiny.vocabSize).toBe(814);
    expect(tiny.contextLength).toBe(77);
  });

  it('encodes whole words to single tokens', () => {
    const e = tiny.encode('a photo of a cat');
    expect(e.ids).toEqual(row(ids('a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>')));
    expect(e.ids).toHaveLength(77);
    expect(e.length).toBe(7);
    expect(e.truncated).toBe(false);
    expect(tiny.encode('a watercolor painting of the dog').ids).toEqual(
      row(ids('a</w>', 'watercolor</w>', 'painting</w>', 'of</w>', 'the</w>', 'dog</w>')),
    );
  });

  it('splits unseen words into BPE pieces', () => {
    // painter: p a i n t e r</w>; merges by rank: "i n" (1), "a in" (7), "e r</w>" (26); nothing joins the rest.
    expect(tinyJson.model.merges.slice(0, 27)).toEqual(expect.arrayContaining(['i n', 'a in', 'e r</w>']));
    expect(tiny.tokenize('painter')).toEqual(['p', 'ain', 't', 'er</w>']);
    expect(tiny.encode('painter').ids).toEqual(row(ids('p', 'ain', 't', 'er</w>')));
    // "watercolor</w>" exists but not "watercolor" without the end of word, so the plural splits.
    expect(tiny.encode('watercolors').ids).toEqual(row(ids('w', 'atercolo', 'r', 's</w>')));
    expect(tiny.encode('zebra').ids).toEqual(row(ids('z', 'e', 'b', 'r', 'a</w>')));
  });

  it('splits punctuation and contractions as CLIP does', () => {
    expect(tiny.encode("it's a cat, a dog!").ids).toEqual(
      row(ids('it</w>', "'s</w>", 'a</w>', 'cat</w>', ',</w>', 'a</w>', 'dog</w>', '!</w>')),
    );
    // A run of punctuation is one pre-token; digits are one pre-token each.
    expect(tiny.tokenize('!!? 2024')).toEqual(['!', '!', '?</w>', '2</w>', '0</w>', '2</w>', '4</w>']);
  });

  it('lowercases and collapses whitespace', () => {
    const e = tiny.encode('  A   PHOTO\tof\n the DOG  ');
    expect(e.ids).toEqual(row(ids('a</w>', 'photo</w>', 'of</w>', 'the</w>', 'dog</w>')));
    expect(e.length).toBe(7);
  });

  it('encodes non-ASCII text as UTF-8 byte symbols', () => {
    // é is C3 A9, whose byte symbols are Ã and ©; "c a" is a merge, "ca f" is not.
    expect(tiny.tokenize('Café')).toEqual(['ca', 'f', 'Ã', '©</w>']);
    expect(tiny.encode('Café').ids).toEqual(row(ids('ca', 'f', 'Ã', '©</w>')));
    // Decomposed input is composed first (NFC), so both spellings agree.
    expect(tiny.encode('cafe\u0301').ids).toEqual(tiny.encode('caf\u00e9').ids);
    // U+1F431 is F0 9F 90 B1: four byte symbols, the last with the end of word.
    const emoji = [byteSymbol(0xf0), byteSymbol(0x9f), byteSymbol(0x90), `${byteSymbol(0xb1)}</w>`];
    expect(emoji).toEqual(['ð', 'Ł', 'Ĳ', '±</w>']);
    expect(tiny.tokenize('🐱')).toEqual(emoji);
    // An emoji is neither letter nor number: it joins the punctuation after it in one pre-token.
    expect(tiny.encode('🐱!').ids).toEqual(row(ids('ð', 'Ł', 'Ĳ', '±', '!</w>')));
  });

  it('encodes the empty prompt to start, end and padding', () => {
    for (const text of ['', '   \n\t ']) {
      const e = tiny.encode(text);
      expect(e.ids).toEqual(row([]));
      expect(e.ids.slice(0, 3)).toEqual([812, 813, 813]);
      expect(e.length).toBe(2);
      expect(e.truncated).toBe(false);
    }
  });

  it('truncates to start + first 75 tokens + end and says so', () => {
    const cat = ids('cat</w>')[0]!;
    const exact = tiny.encode(Array(75).fill('cat').join(' '));
    expect(exact.truncated).toBe(false);
    expect(exact.length).toBe(77);
    expect(exact.ids).toEqual([S, ...Array(75).fill(cat), E]);

    const over = tiny.encode(`${Array(75).fill('cat').join(' ')} dog`);
    expect(over.truncated).toBe(true);
    expect(over.ids).toEqual([S, ...Array(75).fill(cat), E]);

    // The cut may fall inside a word's pieces: the row keeps the first 75 pieces.
    const pieces = ids('p', 'ain', 't', 'er</w>');
    const long = tiny.encode(Array(30).fill('painter').join(' '));
    expect(long.truncated).toBe(true);
    expect(long.length).toBe(77);
    expect(long.ids.slice(1, 76)).toEqual(Array.from({ length: 75 }, (_, i) => pieces[i % 4]));
    expect(long.ids[76]).toBe(E);
  });

  it('handles a 10,000-character prompt, truncated with the end token kept', () => {
    const text = 'a watercolor painting of a cat, '.repeat(400).slice(0, 10_000);
    const e = tiny.encode(text);
    const unit = ids('a</w>', 'watercolor</w>', 'painting</w>', 'of</w>', 'a</w>', 'cat</w>', ',</w>');
    expect(e.truncated).toBe(true);
    expect(e.length).toBe(77);
    expect(e.ids).toEqual([S, ...Array.from({ length: 75 }, (_, i) => unit[i % 7]), E]);

    // One 10,000-letter word cannot be cut at a space: it goes through BPE whole.
    const word = tiny.encode('painting'.repeat(1250));
    expect(word.truncated).toBe(true);
    expect(word.ids[76]).toBe(E);
    expect(word.ids.slice(1, 6)).toEqual(ids('p', 'ain', 't', 'in', 'g'));
  });

  it('finds the tokens after many words that give none', () => {
    // With no unk token the library drops a symbol missing from the vocab, so "x" gives no token: the
    // bounded first pass sees too few tokens and the whole prompt is tokenized.
    const json = buildTinyClipTokenizerJson() as {
      model: { vocab: Record<string, number>; unk_token: unknown };
    };
    delete json.model.vocab['x</w>'];
    json.model.unk_token = null;
    const t = ClipTokenizer.fromJson(json);
    const sparse = t.encode(`${'x '.repeat(400)}a cat`);
    expect(sparse.ids).toEqual(row(ids('a</w>', 'cat</w>')));
    expect(sparse.truncated).toBe(false);
  });

  it('honours contextLength and padId options', () => {
    const t = ClipTokenizer.fromJson(buildTinyClipTokenizerJson(), { contextLength: 6, padId: 0 });
    expect(t.encode('a cat').ids).toEqual([S, ...ids('a</w>', 'cat</w>'), E, 0, 0]);
    const e = t.encode('a photo of a cat');
    expect(e.ids).toEqual([S, ...ids('a</w>', 'photo</w>', 'of</w>', 'a</w>'), E]);
    expect(e.truncated).toBe(true);
    expect(() => ClipTokenizer.fromJson(buildTinyClipTokenizerJson(), { contextLength: 1 })).toThrow(
      RangeError,
    );
    expect(() => ClipTokenizer.fromJson(buildTinyClipTokenizerJson(), { padId: 814 })).toThrow(RangeError);
  });

  it('removes literal special tokens so a prompt cannot move the end token', () => {
    const plain = tiny.encode('a cat');
    expect(tiny.encode('a <|endoftext|> cat')).toEqual(plain);
    expect(tiny.encode('a<|ENDOFTEXT|>cat <|startoftext|>')).toEqual(plain);
  });

  it('unescapes HTML entities before tokenizing', () => {
    expect(tiny.encode('cat &amp; dog').ids).toEqual(row(ids('cat</w>', '&</w>', 'dog</w>')));
    expect(tiny.encode('&lt;cat&gt;').ids).toEqual(row(ids('<</w>', 'cat</w>', '></w>')));
  });

  it('encodes batches row by row and packs them as int64', () => {
    const texts = ['a photo of a cat', '', 'painter'];
    const batch = tiny.encodeBatch(texts);
    expect(batch).toEqual(texts.map((t) => tiny.encode(t)));
    const packed = packIds(batch);
    expect(packed).toHaveLength(3 * 77);
    expect(Array.from(packed.slice(0, 7), Number)).toEqual([
      S,
      ...ids('a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>'),
      E,
    ]);
    expect(Number(packed[77])).toBe(S);
    expect(Number(packed[78])).toBe(E);
    expect(Array.from(packed.slice(154, 159), Number)).toEqual([S, ...ids('p', 'ain', 't', 'er</w>')]);
  });

  it('decodes a row back to the cleaned text', () => {
    expect(tiny.decode(tiny.encode('A Photo of a CAT').ids)).toBe('a photo of a cat');
    expect(tiny.decode(tiny.encode('Café painter').ids)).toBe('café painter');
    expect(tiny.decode(tiny.encode('').ids)).toBe('');
  });
});

describe('agreement with Hugging Face (fixture from transformers + tokenizers)', () => {
  const fixture = JSON.parse(
    readFileSync(new URL('../../fixtures/tokenizer/hf-ids.json', import.meta.url), 'utf8'),
  ) as { tokenizerSha256: string; cases: { text: string; tokens: string[]; ids: number[] }[] };

  it('was made from this exact tiny tokenizer.json', () => {
    // If the builder changes, regenerate with test/fixtures/tokenizer/make-hf-ids.py.
    const sha = createHash('sha256').update(JSON.stringify(buildTinyClipTokenizerJson())).digest('hex');
    expect(sha).toBe(fixture.tokenizerSha256);
    expect(fixture.cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(fixture.cases.map((c) => [JSON.stringify(c.text).slice(0, 40), c] as const))('%s', (_name, c) => {
    expect(tiny.tokenize(c.text)).toEqual(c.tokens);
    const e = tiny.encode(c.text);
    expect(e.ids).toEqual(c.ids);
    expect(e.length).toBe(Math.min(77, c.tokens.length + 2));
    expect(e.truncated).toBe(c.tokens.length > 75);
  });
});

describe('real tokenizer.json layout (openai/clip-vit-base-patch32)', () => {
  // The structure of the Hugging Face file, written out by hand: real special ids and byte-symbol ids,
  // a handful of merges instead of 48,894.
  const sym = byteSymbols();
  const merges = [
    'i t</w>',
    "' s</w>",
    "' t</w>",
    't e',
    's t</w>',
    'te st</w>',
    'd o',
    'do n</w>',
    'c a',
    'ca t</w>',
  ];
  const vocab: Record<string, number> = {};
  sym.forEach((s, i) => {
    vocab[s] = i;
    vocab[`${s}</w>`] = 256 + i;
  });
  merges.forEach((m, i) => {
    vocab[m.replace(' ', '')] = 512 + i;
  });
  vocab['<|startoftext|>'] = 49406;
  vocab['<|endoftext|>'] = 49407;
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  const realJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(49406, '<|startoftext|>'), special(49407, '<|endoftext|>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFC' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex:
              "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
          },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: ['<|endoftext|>', 49407],
      cls: ['<|startoftext|>', 49406],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<|endoftext|>',
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      vocab,
      merges,
    },
  };
  const real = ClipTokenizer.fromJson(realJson);

  it('reads the real special ids, pad id and vocabulary size', () => {
    expect(real.startId).toBe(49406);
    expect(real.endId).toBe(49407);
    expect(real.padId).toBe(49407);
    expect(real.vocabSize).toBe(49408);
  });

  it('splits "it\'s a test!" with the \'s contraction and the punctuation apart', () => {
    expect(real.tokenize("it's a test!")).toEqual(['it</w>', "'s</w>", 'a</w>', 'test</w>', '!</w>']);
    const e = real.encode("It's a TEST!");
    expect(e.ids.slice(0, 7)).toEqual([49406, 512, 513, 320, 517, 256, 49407]);
    expect(e.ids.slice(7)).toEqual(Array(70).fill(49407));
    expect(e.length).toBe(7);
  });

  it('splits numbers into single digits', () => {
    // Real CLIP ids of "2</w>", "0</w>", "4</w>": byte symbols keep their positions.
    expect(real.tokenize('2024')).toEqual(['2</w>', '0</w>', '2</w>', '4</w>']);
    expect(real.encode('cat 2024').ids.slice(0, 7)).toEqual([49406, 521, 273, 271, 273, 275, 49407]);
    expect(real.tokenize("don't cat42")).toEqual(['don</w>', "'t</w>", 'cat</w>', '4</w>', '2</w>']);
  });

  it('is the pipeline the tiny builder writes', () => {
    const built = buildTinyClipTokenizerJson() as Record<string, unknown> & {
      model: Record<string, unknown>;
    };
    for (const key of [
      'version',
      'truncation',
      'padding',
      'normalizer',
      'pre_tokenizer',
      'decoder',
    ] as const) {
      expect(built[key], key).toEqual(realJson[key]);
    }
    const { vocab: _v, merges: _m, ...modelRest } = built.model;
    const { vocab: _rv, merges: _rm, ...realModelRest } = realJson.model;
    expect(modelRest).toEqual(realModelRest);
    expect(built.post_processor).toEqual({
      ...realJson.post_processor,
      sep: ['<|endoftext|>', TINY_TOKENIZER.endId],
      cls: ['<|startoftext|>', TINY_TOKENIZER.startId],
    });
    expect(built.added_tokens).toEqual([
      special(TINY_TOKENIZER.startId, '<|startoftext|>'),
      special(TINY_TOKENIZER.endId, '<|endoftext|>'),
    ]);
  });
});

describe('cleanPromptText and unescapeHtml', () => {
  it('unescapes twice as CLIP does, lowercases, collapses and strips whitespace', () => {
    expect(cleanPromptText('  Tom &amp;amp; JERRY\u00a0\u3000 &lt;3 \n')).toBe('tom & jerry <3');
    expect(cleanPromptText('e\u0301')).toBe('\u00e9');
  });

  it('knows numeric and the common named entities', () => {
    expect(unescapeHtml('&#39;&#x27;&quot;&apos;&gt;&lt;&amp;')).toBe(`''"'><&`);
    expect(unescapeHtml('&#128049; &#0; &#x110000;')).toBe('🐱 \ufffd \ufffd');
    expect(unescapeHtml('&nbsp;')).toBe('\u00a0');
    expect(unescapeHtml('&unknown; & &apos')).toBe('&unknown; & &apos');
  });
});

describe('loading tokenizer.json from a model folder', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'clip-tokenizer-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function folderWith(name: string, content: string | undefined): Promise<string> {
    const d = join(dir, name);
    await mkdir(d);
    if (content !== undefined) await writeFile(join(d, 'tokenizer.json'), content);
    return d;
  }

  async function errorOf(p: Promise<unknown>): Promise<TokenizerError> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TokenizerError);
    return err as TokenizerError;
  }

  it('loads the tiny tokenizer from a folder', async () => {
    const d = await folderWith('ok', JSON.stringify(buildTinyClipTokenizerJson()));
    const t = await ClipTokenizer.fromFolder(d);
    expect(t.encode('a photo of a cat').ids).toEqual(tiny.encode('a photo of a cat').ids);
  });

  it('names the missing file', async () => {
    const d = await folderWith('empty', undefined);
    const err = await errorOf(ClipTokenizer.fromFolder(d));
    expect(err.reason).toBe('TOKENIZER_NOT_FOUND');
    expect(err.code).toBe('model_missing');
    expect(err.message).toContain(join(d, 'tokenizer.json'));
    expect((await errorOf(ClipTokenizer.fromFolder(join(dir, 'nope')))).reason).toBe('TOKENIZER_NOT_FOUND');
  });

  it('rejects a file that is not JSON', async () => {
    const d = await folderWith('garbage', '{"model": {"type": "BPE", ');
    const err = await errorOf(ClipTokenizer.fromFolder(d));
    expect(err.reason).toBe('TOKENIZER_INVALID');
    expect(err.code).toBe('config_invalid');
    expect(err.message).toMatch(/tokenizer\.json: not valid JSON/);
  });

  it('rejects JSON that is not a BPE tokenizer, naming the field', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['array', [1, 2], /not a BPE tokenizer\.json/],
      ['no-model', { version: '1.0' }, /at model/],
      ['wordlevel', { model: { type: 'WordLevel', vocab: {}, merges: [] } }, /model\.type must be "BPE"/],
      ['bad-vocab', { model: { type: 'BPE', vocab: { a: 'x' }, merges: [] } }, /at model\.vocab\.a/],
      ['bad-merges', { model: { type: 'BPE', vocab: { a: 0 }, merges: 'a b' } }, /at model\.merges/],
    ];
    for (const [name, json, re] of cases) {
      const err = await errorOf(ClipTokenizer.fromFolder(await folderWith(name, JSON.stringify(json))));
      expect(err.reason, name).toBe('TOKENIZER_INVALID');
      expect(err.message, name).toMatch(re);
    }
  });

  it('rejects a BPE tokenizer without CLIP’s special tokens', async () => {
    const json = buildTinyClipTokenizerJson() as {
      model: { vocab: Record<string, number> };
      added_tokens: unknown[];
    };
    delete json.model.vocab['<|startoftext|>'];
    json.added_tokens = [];
    const err = await errorOf(ClipTokenizer.fromFolder(await folderWith('nospecial', JSON.stringify(json))));
    expect(err.reason).toBe('TOKENIZER_INVALID');
    expect(err.message).toContain('no id for <|startoftext|>');
  });

  it('rejects start/end ids that disagree between post_processor and vocab', () => {
    const json = buildTinyClipTokenizerJson() as { post_processor: { sep: [string, number] } };
    json.post_processor.sep = ['<|endoftext|>', 49407];
    expect(() => ClipTokenizer.fromJson(json)).toThrow(
      /post_processor\.sep gives <\|endoftext\|> the id 49407, the vocab 813/,
    );
  });

  it('maps a symbol missing from the vocab to unk, and fails when unk has no id either', () => {
    const json = buildTinyClipTokenizerJson() as {
      model: { vocab: Record<string, number>; unk_token: string };
    };
    delete json.model.vocab.z;
    // unk is <|endoftext|>, as in the real file: the missing symbol becomes the end id.
    expect(ClipTokenizer.fromJson(json).encode('zebra').ids.slice(0, 4)).toEqual([S, E, ...ids('e', 'b')]);
    json.model.unk_token = '<unk>';
    const t = ClipTokenizer.fromJson(json);
    expect(() => t.encode('zebra')).toThrow(TokenizerError);
    expect(() => t.encode('zebra')).toThrow(/has no id in the vocab/);
  });
});
