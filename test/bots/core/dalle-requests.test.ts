// The DALL-E drawer on the bot side: `--drawer dalle --candidates N` (and the same options from
// Discord or the playground) become an imagine job, options of the other drawer are refused in
// words, and progress and results read in tokens and candidates.
import { describe, expect, it } from 'vitest';
import { renderError, renderImagineProgress, renderImagineResult } from '../../../src/bots/core/render.js';
import { imagineFromText, imagineRequest } from '../../../src/bots/core/requests.js';

const origin = { platform: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' } as const;
const seed = () => 5;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return renderError(error as Parameters<typeof renderError>[0]);
  }
  throw new Error('expected a refusal');
}

describe('DALL-E requests', () => {
  it('takes --drawer dalle with a candidate count', () => {
    expect(imagineFromText('a red fox --drawer dalle --candidates 3', origin, {}, {}, seed)).toEqual({
      prompt: 'a red fox',
      seed: 5,
      drawer: 'dalle',
      candidates: 3,
      origin,
    });
    // Discord's and the playground's fields; the default drawer is not written into the job.
    expect(
      imagineRequest({ prompt: 'a fox', drawer: 'DALLE', candidates: '2' }, origin, {}, seed),
    ).toMatchObject({
      drawer: 'dalle',
      candidates: 2,
    });
    expect(
      imagineRequest({ prompt: 'a fox', drawer: 'vqgan-clip' }, origin, {}, seed).drawer,
    ).toBeUndefined();
  });

  it('refuses candidates out of range and options of the other drawer, in words', () => {
    expect(refusal(() => imagineFromText('a fox --drawer dalle --candidates 40', origin))).toBe(
      '`--candidates` takes a whole number from 1 to 16.',
    );
    expect(
      refusal(() => imagineRequest({ prompt: 'a fox', drawer: 'dalle', candidates: 0 }, origin)),
    ).toMatch(/candidates.*1 to 16/);
    expect(refusal(() => imagineFromText('a fox --drawer dalle --steps 30 --size 128', origin))).toMatch(
      /steps: works only with the vqgan-clip drawer.*size: works only with the vqgan-clip drawer/,
    );
    expect(refusal(() => imagineFromText('a fox --candidates 3', origin))).toMatch(
      /candidates: works only with the dalle drawer/,
    );
    expect(refusal(() => imagineFromText('a fox --drawer dall-e', origin))).toBe(
      '`--drawer` takes one of vqgan-clip, dalle.',
    );
    expect(refusal(() => imagineRequest({ prompt: 'a fox', drawer: 'midjourney' }, origin))).toMatch(
      /drawer.*vqgan-clip, dalle/,
    );
  });
});

describe('DALL-E captions', () => {
  it('progress counts tokens with their rate', () => {
    expect(
      renderImagineProgress({ step: 40, steps: 256, loss: 0, etaSeconds: 70, tokensPerSecond: 12.5 }),
    ).toBe('Token 40/256 · 12.5 tokens/s · about 1 min left');
    expect(renderImagineProgress({ step: 256, steps: 256, loss: 0, etaSeconds: 0, tokensPerSecond: 3 })).toBe(
      'Token 256/256 · 3.0 tokens/s',
    );
  });

  it('the result names the drawer, the candidates and a cut prompt', () => {
    const base = {
      seed: 3,
      steps: 0,
      params: { width: 256, height: 256, cutouts: 8, lr: 0.1, preset: 'normal' as const },
      lossFirst: 1,
      lossLast: 1,
      timings: { total: 40_100 },
      drawer: 'dalle' as const,
    };
    expect(renderImagineResult({ ...base, candidates: 4, clipScore: 0.3124 })).toBe(
      'Seed 3 · DALL-E, best of 4 by CLIP (0.312) · 256×256 · 40.1 s',
    );
    expect(renderImagineResult({ ...base, candidates: 1, promptTruncated: true })).toBe(
      'Seed 3 · DALL-E · 256×256 · 40.1 s. The prompt was longer than DALL-E reads, so it saw only its beginning.',
    );
  });
});
