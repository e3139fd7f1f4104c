// The words users see: one sentence per error code, progress lines for a running /imagine, and
// label bars for /whatis. Pure (plain data in, strings out) so every adapter (Discord, Slack, the
// playground, the CLI) says the same thing and tests need no I/O. Stack traces never come here.
import type { CodedError, ErrorCode, ErrorDetails, SerializedError } from '../../shared/errors.js';
import type { ImagineProgress, ImagineResult } from '../../shared/jobs.js';
import type { JobStatus } from './job-client.js';

/** What render functions accept as an error: a CodedError or its wire form. */
export type RenderableError = Pick<CodedError, 'code' | 'message' | 'details'> | SerializedError;

/** `45 s`, `3 min`, `1 h 5 min`: rounded the way people say it, never `0 s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return 'a moment';
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}

/** `512 B`, `1.5 KiB`, `25 MiB` (binary units: limits are set in powers of two). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return `${bytes} B`;
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = bytes / 1024;
  let unit = 0;
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit++;
  }
  const text = v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
  return `${text} ${units[unit]}`;
}

/** `12.3 MP` for pixel counts. */
function formatPixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(pixels >= 1e7 ? 0 : 1)} MP`;
}

const num = (details: ErrorDetails, key: string): number | undefined => {
  const v = details[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

const str = (details: ErrorDetails, key: string): string | undefined => {
  const v = details[key];
  return typeof v === 'string' ? v : undefined;
};

/** At most this many validation problems are quoted: a reply is not a log. */
const MAX_QUOTED_ISSUES = 3;

function describeIssues(details: ErrorDetails): string | undefined {
  const issues = details.issues;
  if (!Array.isArray(issues) || issues.length === 0) return undefined;
  const quoted = issues
    .slice(0, MAX_QUOTED_ISSUES)
    .map((i: unknown) => {
      const { path, message } = (i ?? {}) as { path?: unknown; message?: unknown };
      if (typeof message !== 'string') return undefined;
      return typeof path === 'string' && path !== '(root)' ? `${path}: ${message}` : message;
    })
    .filter((s): s is string => s !== undefined);
  if (quoted.length === 0) return undefined;
  const more = issues.length - quoted.length + (num(details, 'more') ?? 0);
  return quoted.join('; ') + (more > 0 ? ` (and ${more} more)` : '');
}

// Prompt problems come from src/shared/prompt.ts as details.reason.
const promptProblems: Record<string, string> = {
  empty: 'The prompt is empty.',
  bad_weight: 'A weight in the prompt is not a number (write `text:1.5`).',
  missing_text: 'A part of the prompt has a weight but no text.',
  weight_out_of_range: 'A weight in the prompt is too large.',
  too_many: 'The prompt has too many `|`-separated parts.',
  no_positive_weight: 'At least one part of the prompt needs a positive weight.',
};

// Chat flag problems come from src/bots/core/flags.ts as details.reason. Only flag-shaped names are
// quoted (flags.ts makes them so; details from elsewhere could hold markup).
const FLAG_NAME = /^--[\w-]{1,40}$/;
const quoteFlag = (v: unknown): string | undefined =>
  typeof v === 'string' && FLAG_NAME.test(v) ? `\`${v}\`` : undefined;
const flagName = (d: ErrorDetails, key: string): string | undefined => quoteFlag(d[key]);
const flagProblems: Record<string, (d: ErrorDetails) => string> = {
  unknown_flag: (d) => {
    const suggestion = flagName(d, 'suggestion');
    const known = Array.isArray(d.known) ? d.known.map(quoteFlag).filter((k) => k !== undefined) : [];
    const hint = suggestion
      ? ` Did you mean ${suggestion}?`
      : known.length > 0
        ? ` The flags here are ${known.join(', ')}.`
        : '';
    return `There is no ${flagName(d, 'flag') ?? 'such'} flag.${hint}`;
  },
  missing_value: (d) => {
    const expected = str(d, 'expected');
    return `${flagName(d, 'flag') ?? 'A flag'} needs a value${expected ? `: ${expected}` : ''}.`;
  },
  bad_value: (d) => {
    const expected = str(d, 'expected');
    const flag = flagName(d, 'flag') ?? 'A flag';
    return expected ? `${flag} takes ${expected}.` : `${flag} has a value it cannot take.`;
  },
  repeated_flag: (d) => `${flagName(d, 'flag') ?? 'A flag'} is given more than once; keep one.`,
  unclosed_quote: (d) => `The value of ${flagName(d, 'flag') ?? 'a flag'} opens a quote that never closes.`,
};

const sentences: { readonly [C in ErrorCode]: (details: ErrorDetails, message: string) => string } = {
  bad_input: (d, message) => {
    const reason = str(d, 'reason');
    const flagProblem =
      reason !== undefined && Object.hasOwn(flagProblems, reason) ? flagProblems[reason] : undefined;
    if (flagProblem) return flagProblem(d);
    if (reason !== undefined && promptProblems[reason]) {
      const segment = str(d, 'segment');
      return `${promptProblems[reason]}${segment ? ` (at "${truncate(segment, 60)}")` : ''}`;
    }
    const issues = describeIssues(d);
    if (issues) return `That request is not valid: ${issues}.`;
    // Messages of bad_input are written for users (see errors.ts); only the fallback is generic.
    return message ? `That request is not valid: ${truncate(message, 200)}.` : 'That request is not valid.';
  },
  prompt_too_long: (d) => {
    const length = num(d, 'length');
    const max = num(d, 'max');
    return length !== undefined && max !== undefined
      ? `Your prompt has ${length} characters; the limit is ${max}. Please shorten it.`
      : 'Your prompt is too long. Please shorten it.';
  },
  not_an_image: () => 'That file is not an image I can read. Try a PNG, JPEG, WebP or GIF.',
  image_too_large: (d) => {
    const bytes = num(d, 'bytes');
    const maxBytes = num(d, 'maxBytes');
    const pixels = num(d, 'pixels');
    const maxPixels = num(d, 'maxPixels');
    if (pixels !== undefined && maxPixels !== undefined) {
      return `That image has ${formatPixels(pixels)}; the limit is ${formatPixels(maxPixels)}. Please send a smaller one.`;
    }
    if (bytes !== undefined && maxBytes !== undefined) {
      return `That image is ${formatBytes(bytes)}; the limit is ${formatBytes(maxBytes)}. Please send a smaller one.`;
    }
    if (maxBytes !== undefined)
      return `That image is larger than ${formatBytes(maxBytes)}. Please send a smaller one.`;
    return 'That image is too large. Please send a smaller one.';
  },
  blob_too_large: (d) => {
    const maxBytes = num(d, 'maxBytes');
    return maxBytes !== undefined
      ? `That file is larger than the limit of ${formatBytes(maxBytes)}.`
      : 'That file is too large.';
  },
  blob_missing: () => 'The image for this request has expired. Please upload it again.',
  quota_exceeded: (d) => {
    const limit = num(d, 'limit');
    const retry = num(d, 'retryAfterSeconds');
    if (str(d, 'reason') === 'hourly') {
      const what = limit === undefined ? 'your hourly limit' : `your limit of ${limit} jobs per hour`;
      return `You have reached ${what}. Try again in ${formatDuration(retry ?? 60)}.`;
    }
    const what = limit === undefined ? 'as many jobs as allowed' : `${limit} ${limit === 1 ? 'job' : 'jobs'}`;
    return `You already have ${what} running. Try again when one of them finishes.`;
  },
  cancelled: () => 'Cancelled.',
  timeout: () => 'This is taking longer than expected. Please try again later.',
  not_found: (d) =>
    str(d, 'reason') === 'unknown_button'
      ? 'This button is from an older version of the bot.'
      : str(d, 'reason') === 'not_finished'
        ? 'That job has not finished yet: this works once its image is done.'
        : 'That job does not exist any more (results are kept for a day).',
  unavailable: (d) =>
    str(d, 'reason') === 'busy'
      ? 'I am busy right now and cannot take new requests. Please try again in a minute.'
      : str(d, 'service') === 'database'
        ? 'The image index is not reachable right now. Please try again in a minute.'
        : 'The image service is not reachable right now. Please try again in a minute.',
  model_missing: () => 'The models are not installed on the worker yet. An operator needs to add them.',
  embedding_dimension_mismatch: () =>
    'The image index was built with a different model. An operator needs to rebuild it.',
  config_invalid: () => 'The service is misconfigured. An operator needs to fix its settings.',
  host_not_allowed: (d) => {
    const platform = str(d, 'platform');
    const where = platform ? ` uploaded to ${platformName(platform)}` : ' uploaded to this chat';
    return `I can only read images${where}; links to other sites are not fetched. Please attach the image.`;
  },
  download_failed: (d) =>
    str(d, 'reason') === 'timeout'
      ? 'Downloading that image took too long. Please try again.'
      : 'I could not download that image. Please try again, or upload it again.',
  forbidden: (d) => {
    const reason = str(d, 'reason');
    if (reason === 'not_your_job')
      return 'Only the person who started this job (or a moderator) can do that.';
    if (reason === 'admin_only') return 'Only server or workspace admins can change these settings.';
    return 'You are not allowed to do that.';
  },
  missing_scope: (d) => {
    const scope = str(d, 'scope');
    return `The app is missing the ${scope ? `\`${scope}\` ` : ''}permission for this. An admin needs to reinstall or re-invite it.`;
  },
  no_image: (d) => {
    const where = str(d, 'where');
    if (where === 'channel')
      return 'I found no recent image in this channel. Post one, or attach it to the command.';
    if (where === 'message') return 'That message has no image I can read.';
    return 'This needs an image. Please attach one.';
  },
  internal: () => 'Something went wrong on our side. Please try again.',
};

/** The sentence a user sees for an error. Unknown codes (a newer worker) read as `internal`. */
export function renderError(error: RenderableError): string {
  const render = sentences[error.code] ?? sentences.internal;
  return render(error.details ?? {}, error.message ?? '');
}

/** Suggested HTTP status for an error code (the playground API; chat adapters ignore it). */
export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'bad_input':
    case 'prompt_too_long':
    case 'not_an_image':
    case 'host_not_allowed':
    case 'no_image':
      return 400;
    case 'forbidden':
      return 403;
    case 'download_failed':
      return 502;
    case 'image_too_large':
    case 'blob_too_large':
      return 413;
    case 'quota_exceeded':
      return 429;
    case 'not_found':
    case 'blob_missing':
      return 404;
    case 'cancelled':
      return 409;
    case 'timeout':
      return 504;
    case 'unavailable':
    case 'model_missing':
      return 503;
    default:
      return 500;
  }
}

/** `Step 40/200 · loss 0.912 · about 2 min left`; DALL-E: `Token 40/256 · 12.5 tokens/s · about 1 min left`. */
export function renderImagineProgress(progress: ImagineProgress): string {
  if (progress.tokensPerSecond !== undefined) {
    const parts = [
      `Token ${progress.step}/${progress.steps}`,
      `${progress.tokensPerSecond.toFixed(1)} tokens/s`,
    ];
    if (progress.step < progress.steps) parts.push(`about ${formatDuration(progress.etaSeconds)} left`);
    return parts.join(' · ');
  }
  const parts = [`Step ${progress.step}/${progress.steps}`];
  if (Number.isFinite(progress.loss)) parts.push(`loss ${formatLoss(progress.loss)}`);
  if (progress.step < progress.steps) parts.push(`about ${formatDuration(progress.etaSeconds)} left`);
  return parts.join(' · ');
}

/** Losses are spherical distances around 0.5-1.5: three decimals show progress without noise. */
export function formatLoss(loss: number): string {
  return Number.isFinite(loss) ? loss.toFixed(3) : String(loss);
}

/**
 * `Seed 3 · 30 steps · 128×128 · loss 0.533 → 0.467 · 9.5 s`: the caption of a final image; DALL-E's:
 * `Seed 3 · DALL-E, best of 4 by CLIP (0.312) · 256×256 · 40.1 s`, and a sentence when the prompt was cut.
 */
export function renderImagineResult(
  result: Pick<ImagineResult, 'seed' | 'steps' | 'params' | 'lossFirst' | 'lossLast' | 'timings'> &
    Partial<Pick<ImagineResult, 'drawer' | 'candidates' | 'clipScore' | 'promptTruncated'>>,
): string {
  if (result.drawer === 'dalle') {
    const n = result.candidates ?? 1;
    const score = result.clipScore === undefined ? '' : ` (${result.clipScore.toFixed(3)})`;
    const parts = [
      `Seed ${result.seed}`,
      n === 1 ? `DALL-E${score}` : `DALL-E, best of ${n} by CLIP${score}`,
      `${result.params.width}×${result.params.height}`,
    ];
    const total = result.timings.total;
    if (typeof total === 'number' && Number.isFinite(total)) parts.push(`${(total / 1000).toFixed(1)} s`);
    const caption = parts.join(' · ');
    return result.promptTruncated ? `${caption}. ${renderDallePromptCut()}` : caption;
  }
  const parts = [
    `Seed ${result.seed}`,
    `${result.steps} ${result.steps === 1 ? 'step' : 'steps'}`,
    `${result.params.width}×${result.params.height}`,
    `loss ${formatLoss(result.lossFirst)} → ${formatLoss(result.lossLast)}`,
  ];
  const total = result.timings.total;
  if (typeof total === 'number' && Number.isFinite(total)) parts.push(`${(total / 1000).toFixed(1)} s`);
  return parts.join(' · ');
}

/** One line for any non-terminal status (`Queued: 2 jobs ahead, about 1 min`), or the terminal one. */
export function renderStatus(status: JobStatus): string {
  switch (status.state) {
    case 'waiting': {
      const ahead =
        status.position === 0
          ? 'next in line'
          : `${status.position} ${status.position === 1 ? 'job' : 'jobs'} ahead`;
      const eta = status.etaSeconds === undefined ? '' : `, about ${formatDuration(status.etaSeconds)}`;
      return `Queued: ${ahead}${eta}`;
    }
    case 'retrying':
      return `Something went wrong; retrying (attempt ${status.attemptsMade + 1})`;
    case 'active': {
      const progress = status.progress as ImagineProgress | undefined;
      if (progress && typeof progress === 'object' && typeof progress.step === 'number') {
        return renderImagineProgress(progress);
      }
      return 'Starting…';
    }
    case 'completed':
      return 'Done.';
    case 'failed':
      return renderError(status.error);
  }
}

/** Ten-cell text bar for chat (`████████░░`); the playground draws real bars from the same numbers. */
export function probabilityBar(prob: number, cells = 10): string {
  const p = Number.isFinite(prob) ? Math.min(1, Math.max(0, prob)) : 0;
  const filled = Math.round(p * cells);
  return '█'.repeat(filled) + '░'.repeat(cells - filled);
}

/** `82.4%`, with `<0.1%` for what rounds to zero but is not. */
export function formatPercent(prob: number): string {
  if (!Number.isFinite(prob)) return '?';
  const pct = prob * 100;
  if (pct > 0 && pct < 0.05) return '<0.1%';
  return `${pct.toFixed(1)}%`;
}

/** The /whatis reply body: one line per label, best first as given. */
export function renderLabels(labels: readonly { label: string; prob: number }[]): string {
  if (labels.length === 0) return 'No labels.';
  const width = Math.min(40, Math.max(...labels.map((l) => l.label.length)));
  return labels
    .map((l) => `${truncate(l.label, 40).padEnd(width)}  ${probabilityBar(l.prob)}  ${formatPercent(l.prob)}`)
    .join('\n');
}

/** The note for a search that left out images embedded by another model; undefined when none were. */
export function renderStaleNote(staleImages: number | undefined): string | undefined {
  if (!staleImages) return undefined;
  return staleImages === 1
    ? '1 image was indexed with another model and is left out of searches.'
    : `${staleImages} images were indexed with another model and are left out of searches.`;
}

/** The line above search results: how many matched, and a plain word when even the best is weak. */
export function renderSearchSummary(result: { hits: readonly unknown[]; lowConfidence?: boolean }): string {
  if (result.hits.length === 0) return 'No matching images in this channel yet.';
  const count = `${result.hits.length} ${result.hits.length === 1 ? 'match' : 'matches'}, best first.`;
  return result.lowConfidence ? `${count} Low confidence: none of them matches well.` : count;
}

/** Search hits as text lines (`0.312  name`), for the CLI and plain-text replies. */
export function renderSearchHits(
  hits: readonly { score: number; name: string; duplicates?: number }[],
): string {
  return hits
    .map((h) => `${h.score.toFixed(3)}  ${h.name}${h.duplicates ? ` (+${h.duplicates} similar)` : ''}`)
    .join('\n');
}

function platformName(platform: string): string {
  return platform === 'discord' ? 'Discord' : platform === 'slack' ? 'Slack' : platform;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

// --- Local surfaces (the playground and the CLI) -------------------------------------------------

/** The rule for image sides, quoted wherever a size is asked for. */
export function renderSizeRule(
  limits: { minSide: number; maxSide: number } = { minSide: 64, maxSide: 1024 },
): string {
  return `must be ${limits.minSide} to ${limits.maxSide} pixels, a multiple of 16`;
}

/** Why a library channel name cannot be used: the rule that maps display names to channels. */
export function renderChannelRule(): string {
  return 'use 1 to 40 letters or digits, joined by spaces, - or _ ("Holiday Photos" is the channel holiday-photos)';
}

/** What a library channel with no images says. */
export function renderEmptyChannel(channel: string): string {
  return `No images in ${truncate(channel, 40)} yet: add some above.`;
}

/** How to read search scores (CLIP cosine similarities), shown beside the hits. */
export function renderScoreNote(randomWeights: boolean): string {
  const base =
    'Scores are the cosine similarity between your words and each image as CLIP sees them (-1 to 1, higher is closer); only their order matters.';
  return randomWeights ? `${base} With random weights they are noise.` : base;
}

/** One part of a prompt that CLIP reads only in part (its text tower sees 77 tokens, 75 of them text). */
export interface PromptCut {
  /** The part as written. */
  part: string;
  /** Its tokens. */
  tokens: number;
  /** The tokens CLIP reads. */
  used: number;
  /** What CLIP reads of it (lowercased, as CLIP sees it). */
  usedText: string;
}

/** The note for prompt parts longer than CLIP reads; undefined when nothing is cut. */
export function renderPromptCut(cuts: readonly PromptCut[]): string | undefined {
  if (cuts.length === 0) return undefined;
  return cuts
    .map((c) => {
      const tail = c.usedText.split(' ').slice(-4).join(' ');
      return `CLIP reads the first ${c.used} of the ${c.tokens} tokens of "${truncate(c.part, 40)}", up to "…${truncate(tail, 40)}"; the rest is not used.`;
    })
    .join(' ');
}

/** The note for a prompt longer than minDALL-E reads (64 tokens of its own vocabulary). */
export function renderDallePromptCut(): string {
  return 'The prompt was longer than DALL-E reads, so it saw only its beginning.';
}

/** The playground's short status lines that are not about one job's state. */
export const localTexts = {
  cancelling: 'Cancelling…',
  connectionLost: 'The server is not answering (stopped or restarting?). Waiting for it to come back…',
  reconnected: 'The server is back; following the job again.',
  workerStarting: 'The worker is still loading its models; jobs wait in the queue meanwhile.',
} as const;

/** A local file the CLI cannot use, with the real cause (the path and the system's words). */
export function renderFileProblem(path: string, problem: string): string {
  return `${path}: ${problem}`;
}
