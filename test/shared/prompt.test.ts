import { describe, expect, it } from 'vitest';
import { BadInputError } from '../../src/shared/errors.js';
import { formatPrompt, parsePrompt } from '../../src/shared/prompt.js';

function problem(input: string): string | undefined {
  try {
    parsePrompt(input);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(BadInputError);
    return (err as BadInputError).details.reason as string;
  }
}

describe('parsePrompt', () => {
  it('reads plain text as weight 1', () => {
    expect(parsePrompt('  a watercolor teacher ')).toEqual([{ text: 'a watercolor teacher', weight: 1 }]);
  });

  it('reads weighted parts separated by |', () => {
    expect(parsePrompt('a watercolor teacher:1 | blurry:-0.5|sharp :2e-1')).toEqual([
      { text: 'a watercolor teacher', weight: 1 },
      { text: 'blurry', weight: -0.5 },
      { text: 'sharp', weight: 0.2 },
    ]);
  });

  it('keeps a colon that is not followed by a number as text', () => {
    expect(parsePrompt('photo: a cat at 5pm')).toEqual([{ text: 'photo: a cat at 5pm', weight: 1 }]);
    expect(parsePrompt('style: ink:1.5')).toEqual([{ text: 'style: ink', weight: 1.5 }]);
  });

  it('skips empty parts', () => {
    expect(parsePrompt('cat | | dog |')).toEqual([
      { text: 'cat', weight: 1 },
      { text: 'dog', weight: 1 },
    ]);
  });

  it('refuses bad prompts with a reason', () => {
    expect(problem('')).toBe('empty');
    expect(problem(' | |')).toBe('empty');
    expect(problem('cat:1.2.3')).toBe('bad_weight');
    expect(problem('cat:-')).toBe('bad_weight');
    expect(problem('cat:1x')).toBe('bad_weight');
    expect(problem('cat:')).toBe('bad_weight');
    expect(problem(':2')).toBe('missing_text');
    expect(problem('cat:1e999')).toBe('weight_out_of_range');
    expect(problem('cat:500')).toBe('weight_out_of_range');
    expect(problem('blurry:-1 | dark:-0.5')).toBe('no_positive_weight');
    expect(problem('cat:0')).toBe('no_positive_weight');
    expect(problem(Array.from({ length: 9 }, (_, i) => `p${i}`).join('|'))).toBe('too_many');
  });

  it('formats back to text that parses to the same prompts', () => {
    const prompts = parsePrompt('a cat | x:3:1 | blurry:-0.5');
    expect(prompts[1]).toEqual({ text: 'x:3', weight: 1 });
    expect(parsePrompt(formatPrompt(prompts))).toEqual(prompts);
  });
});
