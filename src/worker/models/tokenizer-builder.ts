// Writes a small CLIP-style BPE tokenizer.json for tests and the tiny random models: the same
// normalizer, pre-tokenizer, post-processor and decoder as openai/clip-vit-base-patch32, the same
// vocabulary layout (256 byte symbols, their "</w>" forms, one token per merge, then the two specials).
//
// The merges are learned here, deterministically, from a built-in corpus of prompt-like text. This is
// BPE *training* (choosing merges); encoding always goes through @huggingface/tokenizers.

/** CLIP's pre-tokenizer pattern as it appears in the Hugging Face tokenizer.json (special tokens first). */
export const CLIP_SPLIT_PATTERN =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

export const START_TOKEN = '<|startoftext|>';
export const END_TOKEN = '<|endoftext|>';
export const END_OF_WORD = '</w>';

/**
 * GPT-2's reversible byte -> printable character table, in CLIP's vocabulary order: the printable
 * bytes map to themselves first (!..~, ¡..¬, ®..ÿ), the remaining bytes to U+0100 upwards.
 * Index i of the returned array is the symbol with vocabulary id i.
 */
export function byteLevelSymbols(): { bytes: number[]; symbols: string[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const codes = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + n);
      n++;
    }
  }
  return { bytes, symbols: codes.map((c) => String.fromCharCode(c)) };
}

/** A tokenizer.json in the structure of openai/clip-vit-base-patch32's, around any vocab and merges. */
export function clipTokenizerJson(vocab: Record<string, number>, merges: readonly string[]): object {
  const startId = vocab[START_TOKEN];
  const endId = vocab[END_TOKEN];
  if (startId === undefined || endId === undefined) {
    throw new Error(`clipTokenizerJson: the vocab must contain ${START_TOKEN} and ${END_TOKEN}`);
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(startId, START_TOKEN), special(endId, END_TOKEN)],
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
        { type: 'Split', pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [END_TOKEN, endId],
      cls: [START_TOKEN, startId],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: END_TOKEN,
      continuing_subword_prefix: '',
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      vocab,
      merges: [...merges],
    },
  };
}

/**
 * Merges learned for the tiny tokenizer; the vocabulary is 512 + this + 2. The corpus supports 392;
 * stopping earlier leaves its rarest words in several pieces, as real prompts often are.
 */
const TINY_MERGES = 300;

/** What the random-model writer and tests need to know about the tiny tokenizer without building it. */
export const TINY_TOKENIZER = {
  numMerges: TINY_MERGES,
  vocabSize: 512 + TINY_MERGES + 2,
  startId: 512 + TINY_MERGES,
  endId: 512 + TINY_MERGES + 1,
  /** Hugging Face's CLIP pads with its pad token, which is the end token. */
  padId: 512 + TINY_MERGES + 1,
  contextLength: 77,
} as const;

// Prompt-like text: CLIP's prompt templates over everyday nouns, plus art-style phrases. Only ASCII,
// so that accented letters stay split into their UTF-8 byte symbols (tests rely on that).
const TEMPLATES = [
  'a photo of a {}.',
  'a painting of the {}.',
  'a watercolor painting of a {}',
  'a drawing of the {}.',
  'a close-up photo of the {}.',
  'a bright photo of a {}.',
  'a sketch of a {}',
  'an oil painting of a small {}',
  'the {} in a field at sunset',
  'a cute {} on the beach',
];
const NOUNS = [
  'cat',
  'dog',
  'bird',
  'horse',
  'tree',
  'house',
  'car',
  'boat',
  'flower',
  'mountain',
  'city',
  'forest',
  'river',
  'castle',
  'robot',
  'apple',
  'teacher',
  'garden',
  'bridge',
  'lake',
  'fox',
  'bear',
  'owl',
  'train',
  'lighthouse',
];
const PHRASES = [
  'a watercolor painting of a cat sitting on a chair',
  'an oil painting of a dog running in the snow',
  "it's a beautiful day in the city, with blue sky and white clouds",
  "the cat's eyes are green and the dog's nose is black",
  'a fantasy landscape with mountains, rivers and a castle, trending on artstation',
  'a portrait of a teacher in the style of van gogh, highly detailed',
  'digital art of a robot reading a book in a library at night',
  'a red bicycle leaning against a yellow wall',
  'sunset over the ocean, dramatic lighting, 4k, unreal engine',
  'a bowl of fruit on a wooden table, still life, soft light',
  'the moon and the stars above a quiet village',
  'two cats and three dogs playing together in a green garden',
  'a black and white photograph of an old train station',
  'pencil sketch of a lighthouse on a rocky coast',
  'an abstract painting with bright colors and bold shapes',
  "don't look back, a dreamy and surreal scene with floating islands",
  'a small house in the forest, cozy, warm light in the windows',
  'a cyberpunk city street at night, neon lights, rain',
  'impressionist painting of a garden with flowers and a pond',
  'a photo of a happy dog with a red ball',
];

/** The built-in corpus, one prompt per entry. */
export function tinyCorpus(): string[] {
  const out: string[] = [];
  for (const t of TEMPLATES) for (const n of NOUNS) out.push(t.replace('{}', n));
  return out.concat(PHRASES);
}

/**
 * Learns `numMerges` BPE merges from `texts` with CLIP's pre-tokenization (lowercase, CLIP's split
 * pattern, UTF-8 bytes as byte-level symbols, "</w>" on each word's last symbol). Each round merges
 * the most frequent adjacent pair; ties go to the smaller "a b" string, so the result is deterministic.
 */
export function learnMerges(texts: readonly string[], numMerges: number): string[] {
  const { bytes, symbols } = byteLevelSymbols();
  const byteToSymbol = new Map(bytes.map((b, i) => [b, symbols[i]!]));
  const encoder = new TextEncoder();
  const splitter = new RegExp(CLIP_SPLIT_PATTERN, 'gu');
  const counts = new Map<string, number>();
  for (const text of texts) {
    const normalized = text.normalize('NFC').replace(/\s+/g, ' ').toLowerCase();
    for (const m of normalized.matchAll(splitter)) {
      const word = Array.from(encoder.encode(m[0]), (b) => byteToSymbol.get(b)!).join('');
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  // Sorted so that nothing depends on Map insertion order of the corpus.
  const words = [...counts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([w, count]) => {
      const syms = Array.from(w);
      syms[syms.length - 1] += END_OF_WORD;
      return { syms, count };
    });

  const known = new Set<string>([...symbols, ...symbols.map((s) => s + END_OF_WORD)]);
  const merges: string[] = [];
  while (merges.length < numMerges) {
    const pairs = new Map<string, number>();
    for (const { syms, count } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const a = syms[i]!;
        const b = syms[i + 1]!;
        // A pair whose result already exists would give a second merge for one token; CLIP's
        // vocabulary has one entry per merge, so such pairs are never chosen.
        if (known.has(a + b)) continue;
        const key = `${a} ${b}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push(best);
    known.add(a + b);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(a + b);
          i++;
        } else {
          out.push(w.syms[i]!);
        }
      }
      w.syms = out;
    }
  }
  return merges;
}

/** CLIP's vocabulary layout: byte symbols, their "</w>" forms, one token per merge, then the specials. */
export function clipVocab(merges: readonly string[]): Record<string, number> {
  const { symbols } = byteLevelSymbols();
  const list = [...symbols, ...symbols.map((s) => s + END_OF_WORD), ...merges.map((m) => m.replace(' ', ''))];
  list.push(START_TOKEN, END_TOKEN);
  const vocab: Record<string, number> = {};
  list.forEach((token, id) => {
    if (token in vocab) throw new Error(`clipVocab: duplicate token ${JSON.stringify(token)}`);
    vocab[token] = id;
  });
  return vocab;
}

let tinyCache: string | undefined;

/**
 * The tiny CLIP tokenizer.json (deterministic; a fresh object on every call, so callers may mutate it).
 * Vocabulary: 512 byte symbols, 300 learned merges, <|startoftext|> and <|endoftext|> last (814 ids).
 */
export function buildTinyClipTokenizerJson(): object {
  if (tinyCache === undefined) {
    const merges = learnMerges(tinyCorpus(), TINY_TOKENIZER.numMerges);
    if (merges.length !== TINY_TOKENIZER.numMerges) {
      throw new Error(
        `tiny tokenizer: learned ${merges.length} merges, expected ${TINY_TOKENIZER.numMerges}`,
      );
    }
    tinyCache = JSON.stringify(clipTokenizerJson(clipVocab(merges), merges));
  }
  return JSON.parse(tinyCache) as object;
}
