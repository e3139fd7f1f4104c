import { describe, expect, it } from 'vitest';
import { escapeFor, safeFileName, stripControls, truncateFor } from '../../../src/bots/core/escape.js';
import { mulberry32 } from '../../helpers/random.js';

const ZWSP = '\u200b';
const RLO = '\u202e';

// Characters that make trouble somewhere, for the randomised checks below.
const NASTY = [
  ...'*_~`|>#-[]()\\<>&"\'@!:.+=/ \n\t0123456789abcXYZ',
  '@everyone',
  '@here',
  '<@123>',
  '<@&456>',
  '<#789>',
  '<!channel>',
  '```',
  '&amp;',
  '😀',
  '👩‍👩‍👧',
  '👍🏽',
  '🇫🇷',
  'é',
  'e\u0301',
  'שלום',
  RLO,
  '\u2066',
  '\u0000',
  '\u001b[31m',
  '\r\n',
  '\u0085',
  '\ud800',
  '＊',
  '＿',
  '＞',
  ':white_check_mark:',
];

function randomText(rand: () => number, parts: number): string {
  let s = '';
  for (let i = 0; i < parts; i++) s += NASTY[Math.floor(rand() * NASTY.length)];
  return s;
}

function samples(count: number, seed = 7): string[] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => randomText(rand, 1 + Math.floor(rand() * 40)));
}

const DISCORD_MARKDOWN = new Set([...'\\*_~`|>#-[]()']);

/** What Discord shows for our output: a backslash before punctuation hides itself; ZWSPs are invisible. */
function discordShows(escaped: string): string {
  return escaped.replace(/\\([^0-9A-Za-z\s])/g, '$1').replaceAll(ZWSP, '');
}

/** The markdown characters of `escaped` that no backslash escapes (there must be none). */
function unescapedDiscordMarkdown(escaped: string): string[] {
  const found: string[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const c = escaped[i] ?? '';
    if (c === '\\') i++;
    else if (DISCORD_MARKDOWN.has(c)) found.push(c);
  }
  return found;
}

// The start of any Discord mention, custom emoji, slash-command link or timestamp (the closing `>` is
// escaped as well, but the zero-width space alone must be enough).
const MENTION = /<\\?[@#:/]|<a:|<t:|@everyone|@here/i;

describe('stripControls', () => {
  it('removes NUL and other control characters but keeps tabs and newlines', () => {
    expect(stripControls('a\u0000b\u0007c\td\ne\u007ff\u0085g')).toBe('abc\td\nefg');
    expect(stripControls('line one\r\nline two\rthree')).toBe('line one\nline two\nthree');
  });

  it('removes terminal escape sequences whole', () => {
    expect(stripControls('\u001b[31mred\u001b[0m plain')).toBe('red plain');
    expect(stripControls('\u001b[2J\u001b[1;1Hcleared')).toBe('cleared');
    expect(stripControls('\u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007')).toBe('click');
    expect(stripControls('\u001b]0;new title\u001b\\after')).toBe('after');
    expect(stripControls('\u009b31mC1 red')).toBe('C1 red');
    expect(stripControls('\u001bPq#0;2;0;0;0\u001b\\sixel')).toBe('sixel');
    expect(stripControls('\u001bcreset')).toBe('reset');
    expect(stripControls('dangling \u001b[')).toBe('dangling ');
  });

  it('removes bidi overrides, embeddings and isolates, and keeps right-to-left text and its marks', () => {
    expect(stripControls(`label ${RLO}gpj.exe`)).toBe('label gpj.exe');
    expect(stripControls('a\u202ab\u202bc\u202cd\u202de\u2066f\u2067g\u2068h\u2069')).toBe('abcdefgh');
    expect(stripControls('שלום\u200f world')).toBe('שלום\u200f world');
  });

  it('replaces lone surrogates and keeps emoji whole', () => {
    expect(stripControls('a\ud800b\udc00c')).toBe('a\ufffdb\ufffdc');
    expect(stripControls('😀👩‍👩‍👧👍🏽🇫🇷')).toBe('😀👩‍👩‍👧👍🏽🇫🇷');
  });
});

describe("escapeFor('discord')", () => {
  const d = (s: string) => escapeFor('discord', s);

  it('escapes markdown', () => {
    expect(d('**bold** _it_ ~~gone~~ ||spoiler||')).toBe(
      '\\*\\*bold\\*\\* \\_it\\_ \\~\\~gone\\~\\~ \\|\\|spoiler\\|\\|',
    );
    expect(d('```js\nrm -rf /\n```')).toBe('\\`\\`\\`js\nrm \\-rf /\n\\`\\`\\`');
    expect(d('[click me](https://evil.example)')).toBe('\\[click me\\]\\(https://evil.example\\)');
    expect(d('a\\*b')).toBe('a\\\\\\*b');
  });

  it('escapes line-leading headings, quotes and list markers', () => {
    expect(d('# Big\n## Bigger\n-# small\n> quoted\n>>> all quoted')).toBe(
      '\\# Big\n\\#\\# Bigger\n\\-\\# small\n\\> quoted\n\\>\\>\\> all quoted',
    );
    expect(d('1. first\n  2. second\n- dash\n* star\n+ plus')).toBe(
      '1\\. first\n  2\\. second\n\\- dash\n\\* star\n\\+ plus',
    );
    expect(d('version 1.5 and 3 + 4')).toBe('version 1.5 and 3 + 4');
  });

  it('neutralises every kind of mention with a zero-width space', () => {
    expect(d('@everyone @here @Everyone')).toBe(`@${ZWSP}everyone @${ZWSP}here @${ZWSP}Everyone`);
    expect(d('<@123> <@!123> <@&456> <#789>')).toBe(
      `<${ZWSP}@123\\> <${ZWSP}@!123\\> <${ZWSP}@&456\\> <${ZWSP}\\#789\\>`,
    );
    expect(d('</imagine:1> <t:1700000000:R> <:blob:1> <a:blob:2>')).not.toMatch(/<[^\u200b\s]/);
    expect(d('a < b')).toBe('a < b');
  });

  it('keeps emoji, accents and right-to-left text as they are', () => {
    expect(d('😀 👩‍👩‍👧 🇫🇷 café שלום')).toBe('😀 👩‍👩‍👧 🇫🇷 café שלום');
  });

  it('for any input: nothing unescaped, no mention, and Discord shows the input', () => {
    for (const s of samples(500)) {
      const out = d(s);
      expect(unescapedDiscordMarkdown(out), JSON.stringify(s)).toEqual([]);
      expect(out, JSON.stringify(s)).not.toMatch(MENTION);
      expect(discordShows(out), JSON.stringify(s)).toBe(stripControls(s));
    }
  });
});

describe("escapeFor('slack')", () => {
  const s = (t: string) => escapeFor('slack', t);

  it('escapes the three entities, which turns links and mentions into text', () => {
    expect(s('a & b < c > d')).toBe('a &amp; b &lt; c &gt; d');
    expect(s('<!channel> <!here> <@U123> <#C1|general> <https://evil.example|click>')).toBe(
      '&lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;#C1|general&gt; &lt;https://evil.example|click&gt;',
    );
    expect(s('&lt;')).toBe('&amp;lt;');
  });

  it('replaces mrkdwn markers with look-alikes Slack never formats', () => {
    expect(s('*bold* _it_ ~gone~ `code` ```block```')).toBe(
      '\u2217bold\u2217 \u02cdit\u02cd \u223cgone\u223c \u02cbcode\u02cb \u02cb\u02cb\u02cbblock\u02cb\u02cb\u02cb',
    );
    expect(s('＊wide＊ ＿wide＿')).toBe('\ufe61wide\ufe61 \u2e0fwide\u2e0f');
  });

  it('keeps emoji shortcodes working', () => {
    expect(s(':white_check_mark: done_now')).toBe(':white_check_mark: done\u02cdnow');
  });

  it('guards a line-leading quote marker', () => {
    expect(s('> quoted\nnot > quoted\n＞ wide')).toBe('\u00ad&gt; quoted\nnot &gt; quoted\n\u00ad＞ wide');
  });

  it('neutralises plain-text @channel, @here and @everyone', () => {
    expect(s('@channel @here @everyone')).toBe(`@${ZWSP}channel @${ZWSP}here @${ZWSP}everyone`);
  });

  it('for any input: no raw < or >, every & starts an entity, no marker outside shortcodes', () => {
    for (const t of samples(500, 11)) {
      const out = s(t);
      expect(out, JSON.stringify(t)).not.toMatch(/[<>]/);
      expect(out.replace(/&(amp|lt|gt);/g, ''), JSON.stringify(t)).not.toContain('&');
      expect(out.replace(/:[a-z0-9_+'-]+:/g, ''), JSON.stringify(t)).not.toMatch(/[*_~`＊＿｀]/);
      expect(out, JSON.stringify(t)).not.toMatch(/@(channel|here|everyone)/i);
    }
  });
});

describe("escapeFor('web')", () => {
  const decode = (html: string) =>
    html.replace(
      /&(amp|lt|gt|quot|#39);/g,
      (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e] ?? '',
    );

  it('escapes HTML text and attribute values', () => {
    expect(escapeFor('web', '<script>alert("x")</script>')).toBe(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;',
    );
    expect(escapeFor('web', `' onerror='alert(1)`)).toBe('&#39; onerror=&#39;alert(1)');
    expect(escapeFor('web', 'fish & chips **not markdown**')).toBe('fish &amp; chips **not markdown**');
  });

  it('for any input: no raw HTML syntax, and decoding gives the input back', () => {
    for (const t of samples(300, 13)) {
      const out = escapeFor('web', t);
      expect(out).not.toMatch(/[<>"']/);
      expect(decode(out)).toBe(stripControls(t));
    }
  });
});

describe("escapeFor('cli')", () => {
  it('strips terminal escapes and controls and leaves markup alone', () => {
    expect(escapeFor('cli', '\u001b[31m**red**\u001b[0m <@1> \u0000')).toBe('**red** <@1> ');
  });
});

describe('truncateFor', () => {
  it('leaves text that fits alone and ends cut text with an ellipsis', () => {
    expect(truncateFor('short', 5)).toBe('short');
    expect(truncateFor('a longer text', 8)).toBe('a longe…');
    expect(truncateFor('a longer text', 8, '...')).toBe('a lon...');
    expect(truncateFor('word    and more', 9)).toBe('word…');
    expect(truncateFor('abc', 0)).toBe('');
    expect(() => truncateFor('abc', -1)).toThrow(RangeError);
  });

  it('never cuts a surrogate pair, a ZWJ sequence, a skin tone, a flag or a combining accent', () => {
    expect(truncateFor('😀😀😀', 4)).toBe('😀…');
    expect(truncateFor('ab👩‍👩‍👧cd', 6)).toBe('ab…');
    expect(truncateFor('ab👍🏽cd', 5)).toBe('ab…');
    expect(truncateFor('ab🇫🇷cd', 5)).toBe('ab…');
    expect(truncateFor('abe\u0301cd', 4)).toBe('ab…');
  });

  it('never cuts inside an escape escapeFor made', () => {
    expect(truncateFor(escapeFor('discord', 'ab*cd'), 4)).toBe('ab…');
    expect(truncateFor(escapeFor('discord', 'ab<@1>'), 4)).toBe('ab…');
    expect(truncateFor(escapeFor('slack', 'ab&cd'), 6)).toBe('ab…');
    expect(truncateFor(escapeFor('slack', 'ab\\&cd'), 8)).toBe('ab\\…');
    expect(truncateFor(escapeFor('web', "ab'cd"), 7)).toBe('ab…');
    expect(truncateFor(escapeFor('slack', '> quote me'), 5)).toBe('…');
  });

  it('for any escaped input and length: fits, is a clean prefix, and leaves no broken escape', () => {
    const rand = mulberry32(5);
    for (const t of samples(300, 17)) {
      for (const platform of ['discord', 'slack', 'web'] as const) {
        const escaped = escapeFor(platform, t);
        const max = Math.floor(rand() * (escaped.length + 2));
        const out = truncateFor(escaped, max);
        const where = JSON.stringify({ t, platform, max });
        expect(out.length, where).toBeLessThanOrEqual(max);
        if (out === escaped) continue;
        const kept = out.slice(0, -1);
        expect(escaped.startsWith(kept), where).toBe(true);
        expect(kept, where).not.toMatch(/[\ud800-\udbff]$/);
        if (platform !== 'discord') expect(kept, where).not.toMatch(/&[a-z#0-9]*$/);
        if (platform === 'discord') expect(unescapedDiscordMarkdown(kept), where).toEqual([]);
        if (platform === 'discord') expect(kept.replace(/\\\\/g, ''), where).not.toMatch(/\\$/);
      }
    }
  });
});

describe('safeFileName', () => {
  it('keeps ordinary names', () => {
    expect(safeFileName('cat.png')).toBe('cat.png');
    expect(safeFileName('IMG_2024-01-01.jpeg')).toBe('IMG_2024-01-01.jpeg');
  });

  it('drops paths, controls, markup and non-ASCII', () => {
    expect(safeFileName('../../etc/passwd')).toBe('passwd');
    expect(safeFileName('C:\\Users\\me\\cat.png')).toBe('cat.png');
    expect(safeFileName('café <b>@everyone<b>.png')).toBe('cafe_b_everyone_b_.png');
    expect(safeFileName(`photo${RLO}gnp.exe`)).toBe('photognp.exe');
    expect(safeFileName('a\u0000b.png')).toBe('ab.png');
    expect(safeFileName('.env')).toBe('env');
  });

  it('falls back when nothing is left, and keeps the extension when shortening', () => {
    expect(safeFileName('')).toBe('image');
    expect(safeFileName('😀😀.', 'upload')).toBe('upload');
    expect(safeFileName(`${'x'.repeat(300)}.webp`)).toBe(`${'x'.repeat(95)}.webp`);
  });
});
