// Every user-supplied string placed in a reply (prompt segments, labels, file names) goes through
// escapeFor first, so a prompt cannot ping @everyone, forge a link, break the markup around it, reorder
// the reply with bidi controls or write to an operator's terminal. The reply's own markup is the caller's.
import type { Platform } from '../../shared/jobs.js';

const ZWSP = '\u200b';
const SOFT_HYPHEN = '\u00ad';

// Terminal escape sequences, removed whole so no `[31m` is left behind: CSI (ESC [ ... final), OSC
// (ESC ] ... BEL or ST, or to the end when unterminated), DCS/SOS/PM/APC strings (ESC P|X|^|_ ... ST),
// two-character escapes, and the 8-bit CSI/OSC forms.
const ANSI = new RegExp(
  [
    '\\x1b\\[[0-?]*[ -/]*[@-~]?',
    '\\x1b\\][^\\x07\\x1b\\x9c]*(?:\\x07|\\x1b\\\\|\\x9c)?',
    '\\x1b[PX^_][^\\x1b\\x9c]*(?:\\x1b\\\\|\\x9c)?',
    '\\x1b[ -~]?',
    '\\x9b[0-?]*[ -/]*[@-~]?',
    '\\x9d[^\\x07\\x1b\\x9c]*(?:\\x07|\\x1b\\\\|\\x9c)?',
  ].join('|'),
  'g',
);
// C0 controls but tab and newline, DEL, C1 controls: NUL truncates C strings and Postgres text, the
// rest moves cursors or means nothing a reader can see.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
// Explicit bidi embeddings, overrides and isolates: an RLO in a label would turn the rest of the reply
// around (`Seed 3` reading `3 deeS`). The marks (LRM, RLM, ALM) affect only their neighbours and stay,
// as right-to-left text needs them.
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;
// A surrogate without its partner is not Unicode text: APIs answer 400 or store U+FFFD anyway.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * What every platform gets: terminal escapes, control characters (tab and newline stay; CR and CRLF
 * become newlines), bidi embedding/override/isolate controls and lone surrogates taken out or replaced.
 * It is all `escapeFor(..., 'cli')` does; the other platforms escape their markup on top.
 */
export function stripControls(text: string): string {
  return text
    .replace(ANSI, '')
    .replace(/\r\n?/g, '\n')
    .replace(CONTROLS, '')
    .replace(BIDI_CONTROLS, '')
    .replace(LONE_SURROGATE, '\ufffd');
}

/**
 * Discord markdown: a backslash before every character markdown gives a meaning to (Discord shows
 * `\*` as `*`); `1. ` and `+ ` list markers at a line start; and a zero-width space after `<` and in
 * `@everyone`/`@here`, so `<@id>`, `<@&id>`, `<#id>`, `</cmd:id>`, `<t:...>` and `<:emoji:id>` read as
 * typed and ping nobody. The adapter also sends `allowed_mentions: { parse: [] }`; this makes the text
 * read right. Escaped text must not go inside code spans or blocks, where backslashes show.
 */
function escapeDiscord(text: string): string {
  return text
    .replace(/[\\*_~`|>#\-[\]()]/g, '\\$&')
    .replace(/^(\s*\d+)\.(?=\s|$)/gm, '$1\\.')
    .replace(/^(\s*)\+(?=\s|$)/gm, '$1\\+')
    .replace(/<(?=\S)/g, `<${ZWSP}`)
    .replace(/@(?=everyone|here)/gi, `@${ZWSP}`);
}

// Slack mrkdwn has no escape character, and a zero-width space around a marker turns formatting on
// mid-word rather than off; a look-alike character is the one thing it never formats (jsx-slack's
// <Escape> does the same for these). Copying the text back gives the look-alikes, not the originals.
const SLACK_LOOKALIKES: Readonly<Record<string, string>> = {
  '*': '\u2217', // ASTERISK OPERATOR
  '\uff0a': '\ufe61', // fullwidth asterisk -> SMALL ASTERISK
  _: '\u02cd', // MODIFIER LETTER LOW MACRON
  '\uff3f': '\u2e0f', // fullwidth low line -> PARAGRAPHOS
  '~': '\u223c', // TILDE OPERATOR
  '`': '\u02cb', // MODIFIER LETTER GRAVE ACCENT
  '\uff40': '\u02cb', // fullwidth grave accent
};

/**
 * Slack: the three entities Slack's formatting docs ask for (`&amp;`, `&lt;`, `&gt;`: that alone makes
 * `<!channel>`, `<!here>`, `<@U123>` and `<url|label>` plain text), look-alikes for the mrkdwn markers
 * `* _ ~ \``, a soft hyphen before a line-leading `>` (a quote), and a zero-width space in plain
 * `@channel`, `@here` and `@everyone`. Emoji shortcodes (`:white_check_mark:`) keep their underscores.
 */
function escapeSlack(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/:[a-z0-9_+'-]+:|[*_~`\uff0a\uff3f\uff40]/g, (m) => SLACK_LOOKALIKES[m] ?? m)
    .replace(/^(\s*)(&gt;|\uff1e)/gm, `$1${SOFT_HYPHEN}$2`)
    .replace(/@(?=channel|here|everyone)/gi, `@${ZWSP}`);
}

const HTML_ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** HTML text and attribute values (quoted either way). */
function escapeWeb(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ENTITIES[c] ?? c);
}

/**
 * `text` made safe to place in a reply on `platform`: `discord` (markdown escaped, mentions
 * neutralised), `slack` (entities, mrkdwn markers, mentions), `web` (HTML), `cli` (terminal escapes and
 * controls only). All of them first strip what stripControls strips.
 */
export function escapeFor(platform: Platform, text: string): string {
  const clean = stripControls(text);
  switch (platform) {
    case 'discord':
      return escapeDiscord(clean);
    case 'slack':
      return escapeSlack(clean);
    case 'web':
      return escapeWeb(clean);
    case 'cli':
      return clean;
  }
}

// What escapeFor produces that must stay whole: a backslash and the character it escapes (only those
// escapeDiscord escapes: elsewhere a backslash is plain text, and in Slack's `\&amp;` the entity is the
// unit), an entity, a zero-width space and the `<`/`@` it follows, a soft hyphen and the `>` it guards.
const UNITS = /\\[\\*_~`|>#\-[\]().+]|&(?:amp|lt|gt|quot|#39);|[<@]\u200b|\u00ad(?:&gt;|\uff1e)/gu;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Shortens escaped text to at most `max` UTF-16 code units (the unit of JavaScript's `length`, never
 * fewer than the platforms count), ending in `ellipsis` when anything was cut. Cuts only between
 * graphemes (an emoji with its skin tone or ZWJ family, a letter with its accents, a flag) and never
 * inside an escape escapeFor made, so `\*` never becomes a dangling `\` and `&amp;` never `&am`.
 */
export function truncateFor(text: string, max: number, ellipsis = '\u2026'): string {
  if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`max must be a whole number, got ${max}`);
  if (text.length <= max) return text;
  const budget = max - ellipsis.length;
  if (budget <= 0) return ellipsis.slice(0, max);
  const inside = new Uint8Array(text.length + 1);
  for (const m of text.matchAll(UNITS)) {
    for (let i = m.index + 1; i < m.index + m[0].length; i++) inside[i] = 1;
  }
  let cut = 0;
  for (const { index } of graphemes.segment(text)) {
    if (index > budget) break;
    if (!inside[index]) cut = index;
  }
  return `${text.slice(0, cut).trimEnd()}${ellipsis}`;
}

/**
 * A file name safe as an upload's name (Discord's `attachment://name`, Slack's filename): the last path
 * part, ASCII letters, digits, `.`, `_` and `-` only, no leading dot, at most `maxLength` characters
 * with the extension kept; `fallback` when nothing is left.
 */
export function safeFileName(name: string, fallback = 'image', maxLength = 100): string {
  const base = stripControls(name).split(/[/\\]/).at(-1) ?? '';
  const ascii = base
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^[._]+/, '');
  if (ascii === '' || /^[._-]*$/.test(ascii)) return fallback;
  if (ascii.length <= maxLength) return ascii;
  const dot = ascii.lastIndexOf('.');
  const ext = dot > 0 && ascii.length - dot <= 10 ? ascii.slice(dot) : '';
  return ascii.slice(0, maxLength - ext.length) + ext;
}
