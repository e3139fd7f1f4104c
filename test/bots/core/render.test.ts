import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatDuration,
  formatPercent,
  httpStatusFor,
  probabilityBar,
  renderError,
  renderImagineProgress,
  renderImagineResult,
  renderLabels,
  renderStatus,
} from '../../../src/bots/core/render.js';
import {
  BadInputError,
  CancelledError,
  CodedError,
  type ErrorCode,
  errorCodes,
  ImageTooLargeError,
  PromptTooLongError,
  QuotaExceededError,
} from '../../../src/shared/errors.js';
import { checkJob, imagineJobSchema } from '../../../src/shared/jobs.js';
import { parsePrompt } from '../../../src/shared/prompt.js';

describe('formatDuration', () => {
  it('says seconds, minutes and hours the way people do', () => {
    expect(formatDuration(0)).toBe('1 s');
    expect(formatDuration(44.6)).toBe('45 s');
    expect(formatDuration(59.4)).toBe('59 s');
    expect(formatDuration(90)).toBe('2 min');
    expect(formatDuration(3600)).toBe('1 h');
    expect(formatDuration(3900)).toBe('1 h 5 min');
    expect(formatDuration(Number.NaN)).toBe('a moment');
    expect(formatDuration(-3)).toBe('a moment');
  });
});

describe('formatBytes / formatPercent / probabilityBar', () => {
  it('formats with binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(25 * 1024 * 1024)).toBe('25 MiB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3 GiB');
  });
  it('formats probabilities and keeps tiny non-zero ones visible', () => {
    expect(formatPercent(0.8237)).toBe('82.4%');
    expect(formatPercent(0.0001)).toBe('<0.1%');
    expect(formatPercent(0)).toBe('0.0%');
  });
  it('draws bars proportional to the probability, clamped', () => {
    expect(probabilityBar(0.82)).toBe('████████░░');
    expect(probabilityBar(0)).toBe('░░░░░░░░░░');
    expect(probabilityBar(1.7)).toBe('██████████');
    expect(probabilityBar(Number.NaN, 4)).toBe('░░░░');
  });
});

describe('renderError', () => {
  it('has a sentence for every code, none of which leaks the raw message of internal errors', () => {
    const seen = new Set<string>();
    for (const code of errorCodes) {
      const text = renderError(new CodedError(code, `secret stack detail for ${code}`));
      expect(text.length).toBeGreaterThan(5);
      if (code !== 'bad_input') expect(text).not.toContain('secret stack detail');
      seen.add(text);
    }
    // Distinct codes read differently (a copy-paste slip would make two identical).
    expect(seen.size).toBe(errorCodes.length);
  });

  it('words each reason a job is not found: gone, not finished, a button of another version', () => {
    const notFound = (reason?: string) =>
      renderError(new CodedError('not_found', 'x', reason === undefined ? {} : { details: { reason } }));
    expect(notFound()).toBe('That job does not exist any more (results are kept for a day).');
    expect(notFound('not_finished')).toBe(
      'That job has not finished yet: this works once its image is done.',
    );
    expect(notFound('unknown_button')).toBe('This button is from an older version of the bot.');
    // Another workspace's job reads as gone: it says nothing of other workspaces.
    expect(notFound('other_workspace')).toBe(notFound());
  });

  it('quotes prompt length and limit', () => {
    expect(renderError(new PromptTooLongError(1234, 1000))).toBe(
      'Your prompt has 1234 characters; the limit is 1000. Please shorten it.',
    );
  });

  it('turns a schema failure into the problem paths', () => {
    let error: unknown;
    try {
      checkJob(imagineJobSchema, {
        prompt: 'a cat',
        steps: 0,
        extra: 1,
        origin: { platform: 'web', user: 'u' },
      });
    } catch (e) {
      error = e;
    }
    const text = renderError(error as CodedError);
    expect(text).toMatch(/^That request is not valid: /);
    expect(text).toContain('steps');
    expect(text).toContain('extra');
  });

  it('caps quoted issues and counts the rest', () => {
    const issues = Array.from({ length: 6 }, (_, i) => ({ path: `f${i}`, message: 'bad' }));
    const text = renderError(new BadInputError('x', { issues, more: 4 }));
    expect(text).toBe('That request is not valid: f0: bad; f1: bad; f2: bad (and 7 more).');
  });

  it('explains prompt syntax problems from the prompt parser', () => {
    let error: unknown;
    try {
      parsePrompt('a cat:1.5x');
    } catch (e) {
      error = e;
    }
    expect(renderError(error as CodedError)).toMatch(/weight in the prompt is not a number/);
  });

  it('says when to retry an hourly quota and what the concurrent limit is', () => {
    expect(renderError(new QuotaExceededError({ reason: 'hourly', limit: 30, retryAfterSeconds: 600 }))).toBe(
      'You have reached your limit of 30 jobs per hour. Try again in 10 min.',
    );
    expect(renderError(new QuotaExceededError({ reason: 'concurrent', limit: 1 }))).toBe(
      'You already have 1 job running. Try again when one of them finishes.',
    );
  });

  it('gives pixel and byte limits of images', () => {
    expect(renderError(new ImageTooLargeError({ pixels: 400_000_000, maxPixels: 67_108_864 }))).toBe(
      'That image has 400 MP; the limit is 67 MP. Please send a smaller one.',
    );
    expect(renderError(new ImageTooLargeError({ bytes: 30 * 1024 * 1024, maxBytes: 25 * 1024 * 1024 }))).toBe(
      'That image is 30 MiB; the limit is 25 MiB. Please send a smaller one.',
    );
  });

  it('reads the wire form and falls back to internal for unknown codes', () => {
    expect(renderError({ code: 'cancelled', message: 'x', details: {} })).toBe('Cancelled.');
    const unknown = { code: 'brand_new' as ErrorCode, message: 'x', details: {} };
    expect(renderError(unknown)).toBe(renderError(new CodedError('internal', 'y')));
  });
});

describe('httpStatusFor', () => {
  it('maps user mistakes to 4xx and service trouble to 5xx', () => {
    expect(httpStatusFor('bad_input')).toBe(400);
    expect(httpStatusFor('image_too_large')).toBe(413);
    expect(httpStatusFor('quota_exceeded')).toBe(429);
    expect(httpStatusFor('not_found')).toBe(404);
    expect(httpStatusFor('unavailable')).toBe(503);
    expect(httpStatusFor('internal')).toBe(500);
  });
});

describe('progress', () => {
  it('renders step, loss and ETA', () => {
    expect(renderImagineProgress({ step: 40, steps: 200, loss: 0.91234, etaSeconds: 130 })).toBe(
      'Step 40/200 · loss 0.912 · about 2 min left',
    );
    expect(renderImagineProgress({ step: 200, steps: 200, loss: 0.8, etaSeconds: 0 })).toBe(
      'Step 200/200 · loss 0.800',
    );
  });

  it('renders queue positions, retries and terminal states', () => {
    expect(renderStatus({ state: 'waiting', position: 0 })).toBe('Queued: next in line');
    expect(renderStatus({ state: 'waiting', position: 1, etaSeconds: 30 })).toBe(
      'Queued: 1 job ahead, about 30 s',
    );
    expect(renderStatus({ state: 'waiting', position: 3, etaSeconds: 125 })).toBe(
      'Queued: 3 jobs ahead, about 2 min',
    );
    expect(renderStatus({ state: 'retrying', attemptsMade: 1 })).toBe(
      'Something went wrong; retrying (attempt 2)',
    );
    expect(renderStatus({ state: 'active', attemptsMade: 0 })).toBe('Starting…');
    expect(
      renderStatus({
        state: 'active',
        attemptsMade: 0,
        progress: { step: 5, steps: 10, loss: 1, etaSeconds: 3 },
      }),
    ).toBe('Step 5/10 · loss 1.000 · about 3 s left');
    expect(renderStatus({ state: 'failed', error: new CancelledError() })).toBe('Cancelled.');
  });
});

describe('renderImagineResult', () => {
  it('captions a final image with seed, steps, size, losses and time', () => {
    const result = {
      seed: 3,
      steps: 30,
      params: { width: 128, height: 96, cutouts: 8, lr: 0.1, preset: 'draft' as const },
      lossFirst: 0.5333,
      lossLast: 0.4671,
      timings: { total: 9512 },
    };
    expect(renderImagineResult(result)).toBe('Seed 3 · 30 steps · 128×96 · loss 0.533 → 0.467 · 9.5 s');
    expect(renderImagineResult({ ...result, steps: 1, timings: {} })).toBe(
      'Seed 3 · 1 step · 128×96 · loss 0.533 → 0.467',
    );
  });
});

describe('renderLabels', () => {
  it('aligns labels and draws bars, best first as given', () => {
    const text = renderLabels([
      { label: 'cat', prob: 0.8 },
      { label: 'a dog', prob: 0.15 },
    ]);
    expect(text.split('\n')).toEqual(['cat    ████████░░  80.0%', 'a dog  ██░░░░░░░░  15.0%']);
    expect(renderLabels([])).toBe('No labels.');
  });
});
