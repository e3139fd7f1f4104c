// Chat flags (`--seed 3`, `--size 256x192`) taken out of what a person typed after /imagine, /whatis or
// /search, as pure functions every adapter shares. Flags become job options; the rest stays the prompt,
// whose own `text:weight | text` syntax (colons, bars, `blurry:-0.5`) passes through untouched.
import { BadInputError } from '../../shared/errors.js';
import { type Drawer, drawers, jobLimits, type Preset, presets } from '../../shared/jobs.js';

/** One flag: its kind, and for the help sentence a few words on what it does. */
export type FlagSpec =
  | { readonly type: 'boolean'; readonly help?: string }
  | { readonly type: 'integer'; readonly min: number; readonly max: number; readonly help?: string }
  | { readonly type: 'choice'; readonly values: readonly string[]; readonly help?: string }
  | {
      readonly type: 'size';
      readonly min: number;
      readonly max: number;
      readonly multipleOf: number;
      readonly help?: string;
    }
  | { readonly type: 'text'; readonly maxLength: number; readonly help?: string };

/** Flags by name: lowercase ASCII words (`seed`, `cut-outs`); what people type is matched case-insensitively. */
export type FlagsSpec = Readonly<Record<string, FlagSpec>>;

/** `--size` values, normalised: `256` reads as `256x256`, `256×192` as `256x192`. */
export type SizeValue = `${number}x${number}`;

type ValueOf<F extends FlagSpec> = F extends { type: 'boolean' }
  ? boolean
  : F extends { type: 'integer' }
    ? number
    : F extends { type: 'choice'; values: readonly (infer V)[] }
      ? V
      : F extends { type: 'size' }
        ? SizeValue
        : string;

/** The flags that were given, typed by the spec; absent flags are absent keys. */
export type ParsedFlags<S extends FlagsSpec> = { -readonly [K in keyof S]?: ValueOf<S[K]> };

export interface FlagParse<S extends FlagsSpec> {
  /** The text with the flags (and their values) taken out, trimmed. */
  readonly rest: string;
  readonly flags: ParsedFlags<S>;
}

/** Why flags were refused; travels as `details.reason` of the BadInputError (render.ts has a sentence for each). */
export type FlagProblem = 'unknown_flag' | 'missing_value' | 'bad_value' | 'repeated_flag' | 'unclosed_quote';

export const imagineFlags = {
  preset: { type: 'choice', values: presets, help: 'speed against quality' },
  seed: { type: 'integer', min: 0, max: 2 ** 32 - 1, help: 'the same seed paints the same picture' },
  steps: { type: 'integer', min: 1, max: jobLimits.maxSteps },
  // 16: the VQGAN's downsampling factor; imagineJobSchema refuses other sizes, this says so earlier.
  size: { type: 'size', min: jobLimits.minSide, max: jobLimits.maxSide, multipleOf: 16 },
  drawer: {
    type: 'choice',
    values: drawers,
    help: 'vqgan-clip paints by optimising, dalle writes image tokens',
  },
  candidates: {
    type: 'integer',
    min: 1,
    max: jobLimits.maxCandidates,
    help: 'dalle: samples, CLIP keeps the best',
  },
} as const satisfies FlagsSpec;

export const whatisFlags = {
  k: { type: 'integer', min: 1, max: jobLimits.maxTopK, help: 'how many labels' },
} as const satisfies FlagsSpec;

export const searchFlags = {
  k: { type: 'integer', min: 1, max: jobLimits.maxSearchK, help: 'how many matches' },
} as const satisfies FlagsSpec;

// A flag starts a word: `--name` or, because Slack and macOS turn `--` into a dash as you type, `—name`
// or `–name`. It needs a letter after the dashes, so `-0.5`, `--0.5` and `a--b` stay prompt text.
const FLAG = /(?<=^|\s)(--|\u2014|\u2013)([A-Za-z][\w-]*)(?==|\s|$)/g;
const STARTS_FLAG = /^(?:--|\u2014|\u2013)[A-Za-z]/;

// Straight quotes, and the curly ones smart punctuation puts in their place.
const QUOTES: Readonly<Record<string, string>> = {
  '"': '"',
  "'": "'",
  '\u201c': '\u201d',
  '\u2018': '\u2019',
};

/** Flag names in details are quoted back to the user: keep a pasted novel out of the reply. */
const MAX_QUOTED = 40;

function fail(reason: FlagProblem, message: string, details: Record<string, unknown>): never {
  throw new BadInputError(message, { reason, ...details });
}

/**
 * Takes the flags out of `text`: `--flag value`, `--flag=value`, `—flag value`, quoted values
 * (`--x "two words"`), booleans (`--flag`, `--flag=false`) and sizes (`--size 256`, `--size 256x192`).
 * Flags may appear anywhere; the remaining pieces are joined with single spaces.
 *
 * Throws a BadInputError with `details.reason` a FlagProblem and `details.flag` the flag as typed:
 * `unknown_flag` (with `suggestion` when a known flag is close, and `known`), `missing_value`,
 * `bad_value` and `missing_value` (with `expected`, the form the value must take), `repeated_flag`,
 * `unclosed_quote`. A dash-word that is not a known flag stays text when written with an em or en dash
 * (`a cat —beautiful`): prose uses those; only `--` is surely meant as a flag.
 */
export function parseFlags<const S extends FlagsSpec>(text: string, spec: S): FlagParse<S> {
  const flags: Record<string, string | number | boolean> = {};
  const pieces: string[] = [];
  let kept = 0; // start of the text not yet copied to pieces
  FLAG.lastIndex = 0;
  for (let m = FLAG.exec(text); m !== null; m = FLAG.exec(text)) {
    const dashes = m[1] ?? '--';
    const typed = m[2] ?? '';
    const name = typed.toLowerCase();
    const shown = `--${typed.slice(0, MAX_QUOTED)}`;
    const flagSpec = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (flagSpec === undefined) {
      if (dashes !== '--') continue;
      const suggestion = closestFlag(name, Object.keys(spec));
      fail('unknown_flag', `unknown flag ${shown}${suggestion ? `; did you mean --${suggestion}?` : ''}`, {
        flag: shown,
        ...(suggestion !== undefined && { suggestion: `--${suggestion}` }),
        known: Object.keys(spec).map((k) => `--${k}`),
      });
    }
    const canonical = `--${name}`;
    if (Object.hasOwn(flags, name)) {
      fail('repeated_flag', `${canonical} is given more than once`, { flag: canonical });
    }
    const afterName = m.index + m[0].length;
    let raw: string | undefined;
    let end = afterName;
    if (text[afterName] === '=') {
      ({ value: raw, end } = readValue(text, afterName + 1, canonical));
      if (raw === '') fail('missing_value', `${canonical} needs a value`, missing(canonical, flagSpec));
    } else if (flagSpec.type !== 'boolean') {
      // A boolean never takes the next word: in `--hd a cat` the cat is the prompt.
      let start = afterName;
      while (start < text.length && /\s/.test(text[start] ?? '')) start++;
      if (start >= text.length || STARTS_FLAG.test(text.slice(start, start + 3))) {
        fail('missing_value', `${canonical} needs a value`, missing(canonical, flagSpec));
      }
      ({ value: raw, end } = readValue(text, start, canonical));
      if (raw === '') fail('missing_value', `${canonical} needs a value`, missing(canonical, flagSpec));
    }
    flags[name] = convert(canonical, flagSpec, raw);
    pieces.push(text.slice(kept, m.index));
    kept = end;
    FLAG.lastIndex = end;
  }
  pieces.push(text.slice(kept));
  const rest = pieces
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .join(' ');
  return { rest, flags: flags as ParsedFlags<S> };
}

function missing(flag: string, spec: FlagSpec): Record<string, unknown> {
  return { flag, expected: expectedForm(spec) };
}

/** A quoted value up to its closing quote, else the run of non-space characters. */
function readValue(text: string, start: number, flag: string): { value: string; end: number } {
  const open = text[start] ?? '';
  const close = QUOTES[open];
  if (close !== undefined) {
    const at = text.indexOf(close, start + 1);
    if (at < 0) fail('unclosed_quote', `the value of ${flag} opens a quote that never closes`, { flag });
    return { value: text.slice(start + 1, at).trim(), end: at + 1 };
  }
  let end = start;
  while (end < text.length && !/\s/.test(text[end] ?? '')) end++;
  return { value: text.slice(start, end), end };
}

const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);
const INTEGER = /^[-+]?\d+$/;
const SIZE = /^(\d+)(?:[x×*](\d+))?$/i;

function convert(flag: string, spec: FlagSpec, raw: string | undefined): string | number | boolean {
  const bad = (): never => {
    const expected = expectedForm(spec);
    return fail('bad_value', `${flag} takes ${expected}`, {
      flag,
      expected,
      value: (raw ?? '').slice(0, MAX_QUOTED),
    });
  };
  switch (spec.type) {
    case 'boolean': {
      if (raw === undefined) return true;
      const word = raw.toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      return bad();
    }
    case 'integer': {
      const value = raw !== undefined && INTEGER.test(raw) ? Number(raw) : Number.NaN;
      if (!Number.isSafeInteger(value) || value < spec.min || value > spec.max) return bad();
      return value;
    }
    case 'choice': {
      const word = (raw ?? '').toLowerCase();
      const value = spec.values.find((v) => v.toLowerCase() === word);
      return value ?? bad();
    }
    case 'size': {
      const m = SIZE.exec(raw ?? '');
      if (!m) return bad();
      const width = Number(m[1]);
      const height = m[2] === undefined ? width : Number(m[2]);
      const ok = (v: number) => v >= spec.min && v <= spec.max && v % spec.multipleOf === 0;
      if (!ok(width) || !ok(height)) return bad();
      return `${width}x${height}`;
    }
    case 'text': {
      const value = raw ?? '';
      if (value.length > spec.maxLength) return bad();
      return value;
    }
  }
}

/** What a flag's value must look like, in words (it ends a sentence: `--seed takes ...`). */
export function expectedForm(spec: FlagSpec): string {
  switch (spec.type) {
    case 'boolean':
      return 'true or false';
    case 'integer':
      return `a whole number from ${spec.min} to ${spec.max}`;
    case 'choice':
      return `one of ${spec.values.join(', ')}`;
    case 'size':
      return `WIDTHxHEIGHT (or one number for a square), each from ${spec.min} to ${spec.max} and a multiple of ${spec.multipleOf}`;
    case 'text':
      return `text of at most ${spec.maxLength} characters`;
  }
}

/** The known flag a typo most likely meant: edit distance 2 at most (1 for short names), or a prefix. */
function closestFlag(typed: string, known: readonly string[]): string | undefined {
  let best: { name: string; score: number } | undefined;
  for (const name of known) {
    const distance = editDistance(typed, name);
    const limit = name.length <= 3 ? 1 : 2;
    const prefix = typed.length >= 2 && name.startsWith(typed);
    if (distance > limit && !prefix) continue;
    const score = prefix ? Math.min(distance, 0.5) : distance;
    if (best === undefined || score < best.score) best = { name, score };
  }
  return best?.name;
}

/** Levenshtein distance with adjacent transpositions (`--sede` for `--seed` is one slip, not two). */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  const at = (i: number, j: number) => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}

function formOf(spec: FlagSpec): string {
  switch (spec.type) {
    case 'boolean':
      return '';
    case 'integer':
      return ' N';
    case 'choice':
      return ` ${spec.values.join('|')}`;
    case 'size':
      return ' WxH';
    case 'text':
      return ' "TEXT"';
  }
}

function noteOf(spec: FlagSpec): string | undefined {
  const range =
    spec.type === 'integer'
      ? `${spec.min} to ${spec.max}`
      : spec.type === 'size'
        ? `or one number; ${spec.min} to ${spec.max}, multiples of ${spec.multipleOf}`
        : undefined;
  const parts = [range, spec.help].filter((p): p is string => p !== undefined);
  return parts.length === 0 ? undefined : parts.join('; ');
}

/**
 * One sentence listing the flags of a spec, for help texts and command descriptions:
 * ``Flags: `--preset draft|normal|better` (speed against quality), `--seed N` (0 to 4294967295; ...).``
 */
export function flagsHelp(spec: FlagsSpec): string {
  const items = Object.entries(spec).map(([name, s]) => {
    const note = noteOf(s);
    return `\`--${name}${formOf(s)}\`${note ? ` (${note})` : ''}`;
  });
  if (items.length === 0) return 'No flags.';
  const list = items.length === 1 ? items[0] : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
  return `Flags: ${list}.`;
}

/** The /imagine flags as imagineJobSchema fields, ready to spread into the job data. */
export function imagineOptions(flags: ParsedFlags<typeof imagineFlags>): {
  preset?: Preset;
  seed?: number;
  steps?: number;
  size?: { width: number; height: number };
  drawer?: Drawer;
  candidates?: number;
} {
  const size = flags.size?.split('x').map(Number);
  return {
    ...(flags.preset !== undefined && { preset: flags.preset }),
    ...(flags.seed !== undefined && { seed: flags.seed }),
    ...(flags.steps !== undefined && { steps: flags.steps }),
    ...(size !== undefined && { size: { width: size[0] ?? 0, height: size[1] ?? 0 } }),
    ...(flags.drawer !== undefined && { drawer: flags.drawer }),
    ...(flags.candidates !== undefined && { candidates: flags.candidates }),
  };
}
