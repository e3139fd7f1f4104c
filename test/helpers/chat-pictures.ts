// Pictures of what chat users see, for the README: the messages the bot really sent to the fake
// Discord and the fake Slack (their stored payloads and image bytes), drawn as HTML in the look of
// each client and photographed with headless Chromium. Only the parts of the payloads the bot
// uses are drawn: Components V2 containers, galleries, text displays and button rows for Discord;
// section, image, context and actions blocks with mrkdwn for Slack. Hand-written because no
// library renders either platform's payloads outside its own client.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { type Browser, chromium } from 'playwright-core';

// npm test finds it (scripts/setup.mjs findChromium) and passes it on.
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromiumAvailable = existsSync(CHROMIUM);
// CI installs chromium (.ci/run): there a missing browser is a failure, not a skip.
if (!chromiumAvailable && (process.env.CI === 'true' || process.env.CI === '1'))
  throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);

/** A message as drawn: who sent it, a caption above it, and its images by URL or file id. */
export interface Drawn<M> {
  readonly caption: string;
  readonly message: M;
  /** Image sources (data: URIs) by the key the payload names them with. */
  readonly images: ReadonlyMap<string, string>;
}

export const dataUri = (bytes: Uint8Array, type = 'image/png'): string =>
  `data:${type};base64,${Buffer.from(bytes).toString('base64')}`;

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

// ---------------------------------------------------------------------------------------------
// Discord

interface DiscordComponent {
  type: number;
  components?: DiscordComponent[];
  content?: string;
  items?: { media: { url: string }; description?: string }[];
  label?: string;
  style?: number;
  disabled?: boolean;
  accent_color?: number | null;
  accessory?: DiscordComponent;
  media?: { url: string };
  divider?: boolean;
}

export interface DiscordMessageLike {
  content: string;
  components?: unknown[];
  attachments: { filename: string; url: string }[];
  timestamp: string;
  edited_timestamp?: string | null;
  interaction_metadata?: { user: { username: string } };
}

/** A `<t:SECONDS:R>` timestamp as Discord's client words it (moment's relative time). */
function relativeTime(atMs: number, nowMs: number): string {
  const s = Math.round(Math.abs(atMs - nowMs) / 1000);
  const words =
    s < 45
      ? 'a few seconds'
      : s < 90
        ? 'a minute'
        : s < 45 * 60
          ? `${Math.round(s / 60)} minutes`
          : s < 90 * 60
            ? 'an hour'
            : `${Math.round(s / 3600)} hours`;
  return atMs >= nowMs ? `in ${words}` : `${words} ago`;
}

/**
 * Discord's markdown as the bot writes it: bold, italics, code, subtext lines, quotes, and
 * relative timestamps (read at `nowMs`, when the message was last edited).
 */
function discordMarkdown(text: string, nowMs: number): string {
  return text
    .split('\n')
    .map((line) => {
      const sub = /^-# (.*)$/.exec(line);
      const quote = /^> (.*)$/.exec(line);
      const inline = (s: string) =>
        esc(s)
          .replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>')
          .replace(/\*(.+?)\*/g, '<em>$1</em>')
          .replace(/`([^`]+)`/g, '<code>$1</code>')
          .replace(/&lt;t:(\d+):R&gt;/g, (_, t: string) => relativeTime(Number(t) * 1000, nowMs));
      if (sub) return `<div class="sub">${inline(sub[1]!)}</div>`;
      if (quote) return `<div class="quote">${inline(quote[1]!)}</div>`;
      return `<div>${inline(line) || '&nbsp;'}</div>`;
    })
    .join('');
}

const DISCORD_BUTTON = ['', 'primary', 'secondary', 'success', 'danger', 'secondary'];

function discordComponent(c: DiscordComponent, src: (url: string) => string, nowMs: number): string {
  const inner = (list: DiscordComponent[] | undefined) =>
    (list ?? []).map((x) => discordComponent(x, src, nowMs)).join('');
  switch (c.type) {
    case 1:
      return `<div class="row">${inner(c.components)}</div>`;
    case 2:
      return `<button class="${DISCORD_BUTTON[c.style ?? 2]}${c.disabled ? ' disabled' : ''}">${esc(c.label ?? '')}</button>`;
    case 9:
      return `<div class="section"><div>${inner(c.components)}</div>${inner(c.accessory ? [c.accessory] : [])}</div>`;
    case 10:
      return `<div class="text">${discordMarkdown(c.content ?? '', nowMs)}</div>`;
    case 11:
      return `<img class="thumb" src="${src(c.media?.url ?? '')}">`;
    case 12:
      return `<div class="gallery">${(c.items ?? []).map((i) => `<img src="${src(i.media.url)}" alt="${esc(i.description ?? '')}">`).join('')}</div>`;
    case 14:
      return `<hr class="${c.divider === false ? 'space' : ''}">`;
    case 17: {
      const accent =
        c.accent_color == null
          ? ''
          : `border-left:4px solid #${c.accent_color.toString(16).padStart(6, '0')};`;
      return `<div class="container" style="${accent}">${inner(c.components)}</div>`;
    }
    default:
      return '';
  }
}

const DISCORD_CSS = `
body{margin:0;background:#313338;color:#dbdee1;font:16px/1.375 "Noto Sans","DejaVu Sans",sans-serif}
.pane{padding:20px 24px;width:560px;display:inline-block;vertical-align:top}
.caption{color:#949ba4;font-size:12px;text-transform:uppercase;letter-spacing:.04em;margin-bottom:14px}
.used{color:#949ba4;font-size:14px;margin-left:56px;margin-bottom:4px}.used b{color:#c9cdfb;font-weight:500}
.msg{display:flex;gap:16px}.avatar{width:40px;height:40px;border-radius:50%;background:#5865f2;color:#fff;
display:flex;align-items:center;justify-content:center;font-weight:700;flex:none}
.name{color:#f2f3f5;font-weight:600}.app{background:#5865f2;color:#fff;font-size:10px;border-radius:3px;
padding:1px 4px;margin-left:4px;vertical-align:2px}.time{color:#949ba4;font-size:12px;margin-left:6px}
.content{margin:2px 0 6px}.container{background:#2b2d31;border:1px solid #3f4147;border-radius:8px;
padding:12px;max-width:440px;margin-top:4px}.gallery img{max-width:100%;width:400px;border-radius:8px;
display:block;image-rendering:auto}.text{margin:8px 0 0;font-size:15px}.sub{color:#949ba4;font-size:13px}
.quote{border-left:4px solid #4e5058;padding-left:10px}code{background:#1e1f22;border-radius:3px;padding:0 3px}
.row{display:flex;flex-wrap:wrap;gap:8px;margin-top:8px}button{border:0;border-radius:8px;height:32px;
padding:0 14px;color:#fff;font:500 14px "Noto Sans","DejaVu Sans",sans-serif}.primary{background:#5865f2}
.secondary{background:#4e5058}.success{background:#248046}.danger{background:#da373c}.disabled{opacity:.5}
.section{display:flex;justify-content:space-between;gap:12px}.thumb{width:80px;border-radius:8px}
hr{border:0;border-top:1px solid #3f4147;margin:10px 0}hr.space{border:0}`;

/** A page drawing Discord messages side by side, each as the member who ran the command sees it. */
export function discordPage(panes: readonly Drawn<DiscordMessageLike>[], command: string): string {
  const body = panes
    .map(({ caption, message, images }) => {
      const src = (url: string): string => {
        const name = url.startsWith('attachment://') ? url.slice('attachment://'.length) : undefined;
        const key = name === undefined ? url : message.attachments.find((a) => a.filename === name)?.url;
        return images.get(key ?? '') ?? '';
      };
      const user = message.interaction_metadata?.user.username ?? 'someone';
      const components = (message.components ?? []) as DiscordComponent[];
      const nowMs = Date.parse(message.edited_timestamp ?? message.timestamp);
      return `<div class="pane"><div class="caption">${esc(caption)}</div>
<div class="used"><b>@${esc(user)}</b> used <b>/${esc(command)}</b></div>
<div class="msg"><div class="avatar">v</div><div><div><span class="name">vqclip</span><span class="app">APP</span>
<span class="time">Today at 12:00</span></div>
${message.content ? `<div class="content">${discordMarkdown(message.content, nowMs)}</div>` : ''}
${components.map((c) => discordComponent(c, src, nowMs)).join('')}</div></div></div>`;
    })
    .join('');
  return `<!doctype html><meta charset="utf-8"><style>${DISCORD_CSS}</style><body>${body}</body>`;
}

// ---------------------------------------------------------------------------------------------
// Slack

interface SlackBlock {
  type: string;
  text?: { type: string; text: string };
  elements?: { type: string; text?: string | { text: string }; style?: string }[];
  slack_file?: { id?: string; url?: string };
  image_url?: string;
  alt_text?: string;
  title?: { text: string };
}

export interface SlackMessageLike {
  text?: string;
  blocks?: unknown[];
}

/** Slack's mrkdwn as the bot writes it: bold, italics, code, user mentions and links. */
function slackMrkdwn(text: string, users: ReadonlyMap<string, string>): string {
  return esc(text)
    .replace(
      /&lt;@([A-Z0-9]+)&gt;/g,
      (_, id: string) => `<span class="mention">@${esc(users.get(id) ?? id)}</span>`,
    )
    .replace(/&lt;(https?:[^|&]+)\|([^&]+)&gt;/g, '<a>$2</a>')
    .replace(/(^|[\s(])\*([^*\n]+)\*/g, '$1<strong>$2</strong>')
    .replace(/(^|[\s(])_([^_\n]+)_/g, '$1<em>$2</em>')
    .replace(/`([^`]+)`/g, '<code>$1</code>')
    .replace(/\n/g, '<br>');
}

function slackBlock(b: SlackBlock, src: (key: string) => string, users: ReadonlyMap<string, string>): string {
  switch (b.type) {
    case 'section':
      return `<div class="section">${slackMrkdwn(b.text?.text ?? '', users)}</div>`;
    case 'image': {
      const key = b.slack_file?.id ?? b.slack_file?.url ?? b.image_url ?? '';
      const title = b.title ? `<div class="title">${esc(b.title.text)}</div>` : '';
      return `${title}<img class="image" src="${src(key)}" alt="${esc(b.alt_text ?? '')}">`;
    }
    case 'context':
      return `<div class="context">${(b.elements ?? []).map((e) => slackMrkdwn(typeof e.text === 'string' ? e.text : (e.text?.text ?? ''), users)).join(' ')}</div>`;
    case 'actions':
      return `<div class="actions">${(b.elements ?? [])
        .filter((e) => e.type === 'button')
        .map(
          (e) =>
            `<button class="${e.style ?? ''}">${esc(typeof e.text === 'string' ? e.text : (e.text?.text ?? ''))}</button>`,
        )
        .join('')}</div>`;
    case 'divider':
      return '<hr>';
    default:
      return '';
  }
}

const SLACK_CSS = `
body{margin:0;background:#fff;color:#1d1c1d;font:15px/1.46668 "Noto Sans","DejaVu Sans",sans-serif}
.pane{padding:20px 24px;width:580px;display:inline-block;vertical-align:top}
.caption{color:#616061;font-size:12px;text-transform:uppercase;letter-spacing:.04em;margin-bottom:14px}
.msg{display:flex;gap:8px}.avatar{width:36px;height:36px;border-radius:6px;background:#4a154b;color:#fff;
display:flex;align-items:center;justify-content:center;font-weight:700;flex:none}
.name{font-weight:900}.app{background:#e8e8e8;color:#616061;font-size:10px;font-weight:700;border-radius:2px;
padding:1px 3px;margin-left:4px;vertical-align:2px}.time{color:#616061;font-size:12px;margin-left:6px}
.section{margin:2px 0 4px}.image{display:block;width:360px;max-width:100%;border-radius:8px;margin:6px 0;
border:1px solid #ddd}.title{color:#616061;font-size:13px;margin-top:4px}.context{color:#616061;font-size:12px}
.mention{color:#1264a3;background:#e8f5fa;border-radius:3px;padding:0 2px}
code{color:#e01e5a;background:#f8f8f8;border:1px solid #ddd;border-radius:3px;padding:0 3px;font-size:12px}
.actions{display:flex;flex-wrap:wrap;gap:8px;margin-top:6px}button{background:#fff;border:1px solid #bbb;
border-radius:4px;height:28px;padding:0 12px;font:700 13px "Noto Sans","DejaVu Sans",sans-serif;color:#1d1c1d}
button.primary{background:#007a5a;border-color:#007a5a;color:#fff}button.danger{color:#e01e5a}
hr{border:0;border-top:1px solid #ddd}`;

/** A page drawing Slack messages side by side in the channel view. */
export function slackPage(
  panes: readonly Drawn<SlackMessageLike>[],
  users: ReadonlyMap<string, string> = new Map(),
): string {
  const body = panes
    .map(({ caption, message, images }) => {
      const src = (key: string) => images.get(key) ?? '';
      const blocks = (message.blocks ?? []) as SlackBlock[];
      const content = blocks.length
        ? blocks.map((b) => slackBlock(b, src, users)).join('')
        : `<div class="section">${slackMrkdwn(message.text ?? '', users)}</div>`;
      return `<div class="pane"><div class="caption">${esc(caption)}</div>
<div class="msg"><div class="avatar">v</div><div><div><span class="name">vqclip</span><span class="app">APP</span>
<span class="time">12:00</span></div>${content}</div></div></div>`;
    })
    .join('');
  return `<!doctype html><meta charset="utf-8"><style>${SLACK_CSS}</style><body>${body}</body>`;
}

// ---------------------------------------------------------------------------------------------

/** What the photographed page shows: its text, button labels and images as decoded. */
export interface Photographed {
  readonly png: Buffer;
  readonly text: string;
  readonly buttons: string[][];
  readonly images: { naturalWidth: number; naturalHeight: number }[];
}

// The DOM as far as the callbacks below (run in the page) use it; tsconfig has no DOM lib.
interface El {
  textContent: string;
  querySelectorAll(s: string): El[];
  naturalWidth: number;
  naturalHeight: number;
  complete: boolean;
}
declare const document: El & { body: El };

/** Loads the page in headless Chromium and photographs it whole. */
export async function photograph(html: string, width: number): Promise<Photographed> {
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width, height: 200 }, deviceScaleFactor: 1 });
    // Everything is inline (data: URIs): a request anywhere else is a mistake of the page.
    await page.route(/^(?!data:)/, (route) => route.abort());
    await page.setContent(html);
    await page.waitForFunction(() => [...document.querySelectorAll('img')].every((i) => i.complete));
    const seen = await page.evaluate(() => ({
      text: document.body.textContent,
      buttons: [...document.querySelectorAll('.pane')].map((p) =>
        [...p.querySelectorAll('button')].map((b) => b.textContent),
      ),
      images: [...document.querySelectorAll('img')].map((i) => ({
        naturalWidth: i.naturalWidth,
        naturalHeight: i.naturalHeight,
      })),
    }));
    return { png: await page.screenshot({ fullPage: true }), ...seen };
  } finally {
    await browser.close();
  }
}

/**
 * Writes a README picture when it is missing or when asked for (UPDATE_SCREENSHOTS=1): every run
 * paints different timings, and tests should not dirty the tree.
 */
export async function savePicture(path: string, png: Buffer): Promise<void> {
  if (!existsSync(path) || process.env.UPDATE_SCREENSHOTS === '1') await writeFile(path, png);
}
