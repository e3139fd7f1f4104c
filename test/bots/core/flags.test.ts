import { describe, expect, it } from 'vitest';
import {
  expectedForm,
  type FlagsSpec,
  flagsHelp,
  imagineFlags,
  imagineOptions,
  parseFlags,
  searchFlags,
  whatisFlags,
} from '../../../src/bots/core/flags.js';
import { renderError } from '../../../src/bots/core/render.js';
import { BadInputError } from '../../../src/shared/errors.js';
import { checkJob, imagineJobSchema } from '../../../src/shared/jobs.js';
import { parsePrompt } from '../../../src/shared/prompt.js';

/** The BadInputError that `run` throws (fails the test when it throws nothing or something else). */
function refusal(run: () => unknown): BadInputError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BadInputError);
    return error as BadInputError;
  }
  throw new Error('expected a BadInputError, nothing was thrown');
}

const origin = { platform: 'slack', user: 'U1' } as const;

describe('parseFlags with the /imagine spec', () => {
  it('takes Slack-style flags off the end of the prompt', () => {
    const { rest, flags } = parseFlags(
      'a watercolor teacher --preset draft --seed 3 --steps 50 --size 256',
      imagineFlags,
    );
    expect(rest).toBe('a watercolor teacher');
    expect(flags).toEqual({ preset: 'draft', seed: 3, steps: 50, size: '256x256' });
  });

  it('accepts --flag=value, width x height, and flags anywhere in the text', () => {
    const { rest, flags } = parseFlags('--size=256x192 a cat --seed=0 on a mat', imagineFlags);
    expect(rest).toBe('a cat on a mat');
    expect(flags).toEqual({ size: '256x192', seed: 0 });
    expect(parseFlags('x --size 128×64', imagineFlags).flags.size).toBe('128x64');
    expect(parseFlags('x --size 128X64', imagineFlags).flags.size).toBe('128x64');
  });

  it('accepts the em and en dashes that Slack and macOS make of --', () => {
    expect(parseFlags('a cat —seed 7 –steps 20', imagineFlags)).toEqual({
      rest: 'a cat',
      flags: { seed: 7, steps: 20 },
    });
  });

  it('leaves dash-words that are not flags in prose written with an em dash', () => {
    expect(parseFlags('a cat —beautiful and calm', imagineFlags)).toEqual({
      rest: 'a cat —beautiful and calm',
      flags: {},
    });
  });

  it('matches flag names and choices regardless of case', () => {
    expect(parseFlags('x --Preset Better --SEED 9', imagineFlags).flags).toEqual({
      preset: 'better',
      seed: 9,
    });
  });

  it('passes the weighted prompt syntax through untouched', () => {
    const prompt = 'photo: a cat:1.5 | blurry:-0.5 |  a - b -0.5 -x --0.5 well-known a--b';
    const { rest, flags } = parseFlags(`${prompt} --seed 1`, imagineFlags);
    expect(rest).toBe(prompt);
    expect(flags).toEqual({ seed: 1 });
    expect(parsePrompt(rest).map((p) => p.weight)).toEqual([1.5, -0.5, 1]);
  });

  it('keeps the prompt as it is when there are no flags (inner spacing, newlines)', () => {
    const prompt = 'a cat\non  a mat | dog:2';
    expect(parseFlags(prompt, imagineFlags)).toEqual({ rest: prompt, flags: {} });
    expect(parseFlags('  --seed 5  ', imagineFlags)).toEqual({ rest: '', flags: { seed: 5 } });
  });

  it('takes quoted values, straight or curly', () => {
    const spec = { style: { type: 'text', maxLength: 50 } } as const satisfies FlagsSpec;
    expect(parseFlags('a cat --style "oil on canvas" at dusk', spec)).toEqual({
      rest: 'a cat at dusk',
      flags: { style: 'oil on canvas' },
    });
    expect(parseFlags('a cat --style “oil on canvas”', spec).flags.style).toBe('oil on canvas');
    expect(parseFlags("a cat --style='pen and ink'", spec).flags.style).toBe('pen and ink');
    expect(parseFlags('x --seed "42"', imagineFlags).flags.seed).toBe(42);
  });

  it('reads boolean flags without eating the next word', () => {
    const spec = { hd: { type: 'boolean' }, seed: imagineFlags.seed } as const satisfies FlagsSpec;
    expect(parseFlags('--hd a cat', spec)).toEqual({ rest: 'a cat', flags: { hd: true } });
    expect(parseFlags('a cat --hd=false', spec).flags).toEqual({ hd: false });
    expect(parseFlags('a cat --hd=YES --seed 2', spec).flags).toEqual({ hd: true, seed: 2 });
    expect(refusal(() => parseFlags('a cat --hd=maybe', spec)).details).toMatchObject({
      reason: 'bad_value',
      flag: '--hd',
      expected: 'true or false',
    });
  });

  it('accepts the edges of each range', () => {
    expect(parseFlags('x --seed 4294967295', imagineFlags).flags.seed).toBe(2 ** 32 - 1);
    expect(parseFlags('x --steps 1', imagineFlags).flags.steps).toBe(1);
    expect(parseFlags('x --steps 1000', imagineFlags).flags.steps).toBe(1000);
    expect(parseFlags('x --size 64x1024', imagineFlags).flags.size).toBe('64x1024');
  });
});

describe('parseFlags refusals', () => {
  it('names an unknown flag and suggests a close one', () => {
    const e = refusal(() => parseFlags('a cat --sed 3', imagineFlags));
    expect(e.details).toMatchObject({
      reason: 'unknown_flag',
      flag: '--sed',
      suggestion: '--seed',
      known: ['--preset', '--seed', '--steps', '--size', '--drawer', '--candidates'],
    });
    expect(refusal(() => parseFlags('x --stpes 3', imagineFlags)).details.suggestion).toBe('--steps');
    expect(refusal(() => parseFlags('x --pre draft', imagineFlags)).details.suggestion).toBe('--preset');
    expect(refusal(() => parseFlags('x --sizes 64', imagineFlags)).details.suggestion).toBe('--size');
    expect(refusal(() => parseFlags('x --j 3', whatisFlags)).details.suggestion).toBe('--k');
  });

  it('suggests nothing when no flag is close', () => {
    const e = refusal(() => parseFlags('a cat --style ink', imagineFlags));
    expect(e.details.reason).toBe('unknown_flag');
    expect(e.details).not.toHaveProperty('suggestion');
  });

  it('keeps a pasted novel out of the flag name it quotes', () => {
    const e = refusal(() => parseFlags(`x --${'a'.repeat(500)}`, imagineFlags));
    expect(String(e.details.flag).length).toBeLessThanOrEqual(42);
  });

  it('refuses a flag without its value', () => {
    for (const text of [
      'a cat --seed',
      'a cat --seed   ',
      'a cat --seed --steps 3',
      'x --seed= y',
      'x —seed —steps 3',
    ]) {
      const e = refusal(() => parseFlags(text, imagineFlags));
      expect(e.details, text).toMatchObject({
        reason: 'missing_value',
        flag: '--seed',
        expected: 'a whole number from 0 to 4294967295',
      });
    }
  });

  it('refuses values out of range or of the wrong form, saying the form', () => {
    const cases: [string, string][] = [
      ['x --seed -1', '--seed'],
      ['x --seed 4294967296', '--seed'],
      ['x --seed 3.5', '--seed'],
      ['x --seed 1e3', '--seed'],
      ['x --seed 99999999999999999999', '--seed'],
      ['x --steps 0', '--steps'],
      ['x --steps 1001', '--steps'],
      ['x --preset fast', '--preset'],
      ['x --size 100', '--size'],
      ['x --size 2048', '--size'],
      ['x --size 256x', '--size'],
      ['x --size 256x192x3', '--size'],
      ['x --size big', '--size'],
    ];
    for (const [text, flag] of cases) {
      const e = refusal(() => parseFlags(text, imagineFlags));
      expect(e.details, text).toMatchObject({ reason: 'bad_value', flag });
      expect(e.details.expected, text).toBe(
        expectedForm(imagineFlags[flag.slice(2) as keyof typeof imagineFlags]),
      );
    }
  });

  it('refuses a flag given twice, whatever the spelling', () => {
    for (const text of ['--seed 1 x --seed 2', '--seed 1 x —SEED 1', '--seed=1 --seed=1']) {
      expect(refusal(() => parseFlags(text, imagineFlags)).details, text).toMatchObject({
        reason: 'repeated_flag',
        flag: '--seed',
      });
    }
  });

  it('refuses a quote that never closes', () => {
    const spec = { style: { type: 'text', maxLength: 50 } } as const satisfies FlagsSpec;
    expect(refusal(() => parseFlags('a cat --style "oil on', spec)).details).toMatchObject({
      reason: 'unclosed_quote',
      flag: '--style',
    });
    expect(refusal(() => parseFlags(`a cat --style "${'x'.repeat(51)}"`, spec)).details.reason).toBe(
      'bad_value',
    );
  });

  it('does not treat inherited object keys as flags', () => {
    expect(refusal(() => parseFlags('x --constructor 1', imagineFlags)).details.reason).toBe('unknown_flag');
    expect(refusal(() => parseFlags('x --hasOwnProperty 1', imagineFlags)).details.reason).toBe(
      'unknown_flag',
    );
    // A flag starts with a letter, so this one is prompt text.
    expect(parseFlags('x --__proto__ 1', imagineFlags)).toEqual({ rest: 'x --__proto__ 1', flags: {} });
  });
});

describe('the whatis and search specs', () => {
  it('take --k within the job limits', () => {
    expect(parseFlags('cat, dog --k 3', whatisFlags)).toEqual({ rest: 'cat, dog', flags: { k: 3 } });
    expect(parseFlags('a red bicycle --k=50', searchFlags).flags.k).toBe(50);
    expect(refusal(() => parseFlags('a red bicycle --k 51', searchFlags)).details.reason).toBe('bad_value');
    expect(refusal(() => parseFlags('a red bicycle --seed 1', searchFlags)).details.reason).toBe(
      'unknown_flag',
    );
  });
});

describe('imagineOptions', () => {
  it('turns the flags into job fields the job schema accepts', () => {
    const { rest, flags } = parseFlags(
      'a cat --preset better --seed 7 --steps 20 --size 256x192',
      imagineFlags,
    );
    const options = imagineOptions(flags);
    expect(options).toEqual({ preset: 'better', seed: 7, steps: 20, size: { width: 256, height: 192 } });
    expect(checkJob(imagineJobSchema, { prompt: rest, ...options, origin })).toMatchObject(options);
    expect(imagineOptions({})).toEqual({});
  });
});

describe('flagsHelp', () => {
  it('lists every flag with its form in one sentence', () => {
    expect(flagsHelp(imagineFlags)).toBe(
      'Flags: `--preset draft|normal|better` (speed against quality), ' +
        '`--seed N` (0 to 4294967295; the same seed paints the same picture), `--steps N` (1 to 1000), ' +
        '`--size WxH` (or one number; 64 to 1024, multiples of 16), ' +
        '`--drawer vqgan-clip|dalle` (vqgan-clip paints by optimising, dalle writes image tokens) and ' +
        '`--candidates N` (1 to 16; dalle: samples, CLIP keeps the best).',
    );
    expect(flagsHelp(whatisFlags)).toBe('Flags: `--k N` (1 to 50; how many labels).');
    expect(flagsHelp({})).toBe('No flags.');
  });
});

describe('the sentences users see for flag problems', () => {
  const sentence = (text: string, spec: FlagsSpec = imagineFlags) =>
    renderError(refusal(() => parseFlags(text, spec)));

  it('has one for each problem', () => {
    expect(sentence('x --sed 3')).toBe('There is no `--sed` flag. Did you mean `--seed`?');
    expect(sentence('x --style ink')).toBe(
      'There is no `--style` flag. The flags here are `--preset`, `--seed`, `--steps`, `--size`, `--drawer`, `--candidates`.',
    );
    expect(sentence('x --seed')).toBe('`--seed` needs a value: a whole number from 0 to 4294967295.');
    expect(sentence('x --preset fast')).toBe('`--preset` takes one of draft, normal, better.');
    expect(sentence('x --size 100')).toBe(
      '`--size` takes WIDTHxHEIGHT (or one number for a square), each from 64 to 1024 and a multiple of 16.',
    );
    expect(sentence('x --seed 1 --seed 2')).toBe('`--seed` is given more than once; keep one.');
    expect(sentence('x --style "ink', { style: { type: 'text', maxLength: 9 } })).toBe(
      'The value of `--style` opens a quote that never closes.',
    );
  });

  it('quotes no markup that did not come from flags.ts', () => {
    const forged = new BadInputError('bad', {
      reason: 'bad_value',
      flag: '@everyone `x`',
      expected: 'a number',
    });
    expect(renderError(forged)).toBe('A flag takes a number.');
  });

  it('leaves the prompt sentences as they were', () => {
    expect(renderError(refusal(() => parsePrompt('')))).toBe('The prompt is empty.');
  });
});
