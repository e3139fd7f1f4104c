// Slack message permalinks, both ways: the links search results point to (built from the workspace
// URL auth.test reports, so GovSlack and the test fake work unchanged), and the link a person pastes
// after /whatis (read back to a channel and ts; the host is not trusted, only the ids are used).

export interface MessageRef {
  channel: string;
  ts: string;
  /** Set for a reply in a thread (the `thread_ts` query parameter). */
  threadTs?: string;
}

/** `https://team.slack.com/archives/C0123/p1712345678123456` (+ `?thread_ts=…&cid=…` for replies). */
export function permalinkFor(workspaceUrl: string, ref: MessageRef): string {
  const base = workspaceUrl.endsWith('/') ? workspaceUrl : `${workspaceUrl}/`;
  const link = `${base}archives/${ref.channel}/p${ref.ts.replace('.', '')}`;
  return ref.threadTs !== undefined && ref.threadTs !== ref.ts
    ? `${link}?thread_ts=${ref.threadTs}&cid=${ref.channel}`
    : link;
}

// Slack sends links in command text as typed, or wrapped as `<url>` / `<url|label>` when the
// command escapes them; the p-number is the ts without its dot (10 + 6 digits).
const PERMALINK =
  /<?(https?:\/\/[^\s<>|]+?\/archives\/([A-Z0-9]{2,30})\/p(\d{10})(\d{6})(\?[^\s<>|]*)?)(?:\|[^>]*)?>?/;

/** The first permalink in `text`, and the text without it (what is left are labels or flags). */
export function findPermalink(text: string): { ref: MessageRef; rest: string } | undefined {
  const m = PERMALINK.exec(text);
  if (!m) return undefined;
  const [whole, , channel = '', seconds = '', micros = '', query] = m;
  const ref: MessageRef = { channel, ts: `${seconds}.${micros}` };
  const threadTs = query === undefined ? null : new URLSearchParams(query.slice(1)).get('thread_ts');
  if (threadTs !== null && /^\d{10}\.\d{6}$/.test(threadTs) && threadTs !== ref.ts) ref.threadTs = threadTs;
  const rest = `${text.slice(0, m.index)} ${text.slice(m.index + whole.length)}`.replace(/\s+/g, ' ').trim();
  return { ref, rest };
}
