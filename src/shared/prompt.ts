// The weighted prompt syntax of /imagine, shared by adapters (to reject bad input before queueing)
// and the worker: `a watercolor teacher:1 | blurry:-0.5`. Segments are separated by `|`; a segment
// may end in `:weight`; negative weights push the image away from that text. Pure, no I/O.
import { BadInputError } from './errors.js';

export interface WeightedPrompt {
  readonly text: string;
  readonly weight: number;
}

export interface PromptSyntaxOptions {
  /** Most segments one prompt may have. @defaultValue 8 */
  readonly maxPrompts?: number;
  /** Largest |weight|. @defaultValue 100 */
  readonly maxWeight?: number;
}

export const DefaultPromptSyntaxOptions = {
  maxPrompts: 8,
  maxWeight: 100,
} as const satisfies Required<PromptSyntaxOptions>;

/** Why a prompt was refused; travels as `details.reason` of the BadInputError. */
export type PromptProblem =
  | 'empty'
  | 'bad_weight'
  | 'missing_text'
  | 'weight_out_of_range'
  | 'too_many'
  | 'no_positive_weight';

const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;
// After the last colon, something that starts like a number is meant as a weight: "cat:1.5x" is a
// typo to report, while "photo: a cat" keeps its colon as text.
const LOOKS_NUMERIC = /^[-+.\d]/;

// Zero-width spaces and joiners, bidi marks and other format characters show nothing, and JS's trim()
// keeps them: a segment made only of those (and spaces) is empty, not a text CLIP would read as nothing.
const VISIBLE = /[^\s\p{Z}\p{Cc}\p{Cf}]/u;

/** Whether text has anything a person can see (not only spaces, zero-width or bidi characters). */
export function hasVisibleText(text: string): boolean {
  return VISIBLE.test(text);
}

function fail(reason: PromptProblem, message: string, segment?: string): never {
  throw new BadInputError(message, { reason, ...(segment !== undefined && { segment }) });
}

/**
 * Parses `text:weight | text | ...` into weighted prompts (weight 1 where none is given). Throws a
 * BadInputError (details.reason one of PromptProblem) for an empty prompt, a weight that does not
 * parse, a weight without text, too many segments, or no positive weight at all (a prompt made only
 * of things to avoid gives the optimiser nothing to move toward).
 */
export function parsePrompt(input: string, options: PromptSyntaxOptions = {}): WeightedPrompt[] {
  const o = { ...DefaultPromptSyntaxOptions, ...options };
  const prompts: WeightedPrompt[] = [];
  for (const raw of input.split('|')) {
    const segment = raw.trim();
    if (!hasVisibleText(segment)) continue; // "a | | b" and a trailing "|" are harmless
    let text = segment;
    let weight = 1;
    const colon = segment.lastIndexOf(':');
    if (colon >= 0) {
      const tail = segment.slice(colon + 1).trim();
      if (tail === '') fail('bad_weight', `"${segment}" ends in ':' without a weight`, segment);
      if (LOOKS_NUMERIC.test(tail)) {
        if (!NUMBER.test(tail)) fail('bad_weight', `"${tail}" in "${segment}" is not a number`, segment);
        weight = Number(tail);
        text = segment.slice(0, colon).trim();
      }
    }
    if (!hasVisibleText(text)) fail('missing_text', `"${segment}" has a weight but no text`, segment);
    if (!Number.isFinite(weight) || Math.abs(weight) > o.maxWeight) {
      fail(
        'weight_out_of_range',
        `the weight of "${text}" must be between -${o.maxWeight} and ${o.maxWeight}`,
        segment,
      );
    }
    prompts.push({ text, weight });
  }
  if (prompts.length === 0) fail('empty', 'the prompt is empty');
  if (prompts.length > o.maxPrompts) {
    fail(
      'too_many',
      `the prompt has ${prompts.length} parts separated by '|'; at most ${o.maxPrompts} are allowed`,
    );
  }
  if (!prompts.some((p) => p.weight > 0)) {
    fail(
      'no_positive_weight',
      'the prompt needs at least one part with a positive weight (only things to avoid were given)',
    );
  }
  return prompts;
}

/** The canonical text form (`text:weight | ...`), e.g. for history and Re-roll. */
export function formatPrompt(prompts: readonly WeightedPrompt[]): string {
  // A text with a colon always gets its weight written, so "x:3" (text) does not read back as weight 3.
  return prompts
    .map((p) => (p.weight === 1 && !p.text.includes(':') ? p.text : `${p.text}:${p.weight}`))
    .join(' | ');
}
