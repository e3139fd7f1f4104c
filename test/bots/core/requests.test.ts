import { describe, expect, it } from 'vitest';
import { actionId, followUpJob, parseActionId } from '../../../src/bots/core/actions.js';
import { renderError } from '../../../src/bots/core/render.js';
import {
  imagineFromText,
  imagineRequest,
  parseLabels,
  parseSize,
  searchFromText,
  searchRequest,
  whatisFromText,
  whatisRequest,
} from '../../../src/bots/core/requests.js';
import { asCodedError } from '../../../src/shared/errors.js';
import type { ImagineJob, ImagineResult } from '../../../src/shared/jobs.js';

const origin = { platform: 'slack', workspace: 'T1', channel: 'C1', user: 'U1' } as const;

function sentence(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return renderError(asCodedError(error));
  }
  throw new Error('did not throw');
}

describe('imagineRequest', () => {
  it('builds a job from loose values and draws a seed when none is given', () => {
    const job = imagineRequest(
      { prompt: ' a watercolor teacher | blurry:-0.5 ', preset: 'Draft', steps: '50', size: '256x192' },
      origin,
      {},
      () => 1234,
    );
    expect(job).toEqual({
      prompt: 'a watercolor teacher | blurry:-0.5',
      preset: 'draft',
      steps: 50,
      size: { width: 256, height: 192 },
      seed: 1234,
      origin,
    });
    expect(imagineRequest({ prompt: 'x', seed: 0 }, origin).seed).toBe(0);
    expect(imagineRequest({ prompt: 'x', size: 128 }, origin).size).toEqual({ width: 128, height: 128 });
    expect(imagineRequest({ prompt: 'x' }, origin, { preset: 'better' }).preset).toBe('better');
    expect(imagineRequest({ prompt: 'x', preset: 'draft' }, origin, { preset: 'better' }).preset).toBe(
      'draft',
    );
    const seeds = new Set(Array.from({ length: 20 }, () => imagineRequest({ prompt: 'x' }, origin).seed));
    expect(seeds.size).toBeGreaterThan(15);
  });

  it('refuses bad options with one clear sentence each', () => {
    expect(sentence(() => imagineRequest({ prompt: 'x', steps: 5000 }, origin))).toMatch(
      /steps: must be a whole number from 1 to 1000/,
    );
    expect(sentence(() => imagineRequest({ prompt: 'x', steps: '2.5' }, origin))).toMatch(/steps/);
    expect(sentence(() => imagineRequest({ prompt: 'x', preset: 'ultra' }, origin))).toMatch(
      /preset: must be one of draft, normal, better/,
    );
    expect(sentence(() => imagineRequest({ prompt: 'x', size: '100' }, origin))).toMatch(/multiple of 16/);
    expect(sentence(() => imagineRequest({ prompt: 'x', size: 'big' }, origin))).toMatch(/WIDTHxHEIGHT/);
    expect(sentence(() => imagineRequest({ prompt: 'x', seed: -1 }, origin))).toMatch(/seed/);
    expect(sentence(() => imagineRequest({ prompt: 'a'.repeat(1001) }, origin))).toMatch(
      /1001 characters; the limit is 1000/,
    );
    expect(sentence(() => imagineRequest({ prompt: 'cat:1.5x' }, origin))).toMatch(
      /weight in the prompt is not a number/,
    );
    expect(sentence(() => imagineRequest({ prompt: 'blurry:-1' }, origin))).toMatch(/positive weight/);
    expect(sentence(() => imagineRequest({ prompt: '   ' }, origin))).toMatch(/not valid|empty/);
  });

  it('parses sizes', () => {
    expect(parseSize('256×128')).toEqual({ width: 256, height: 128 });
    expect(parseSize({ width: 64 })).toEqual({ width: 64, height: 64 });
    expect(parseSize(undefined)).toBeUndefined();
  });
});

describe('requests from chat text with flags', () => {
  it('takes the flags out of the prompt and keeps the prompt syntax', () => {
    const job = imagineFromText(
      'a watercolor teacher:1 | blurry:-0.5 --preset draft —seed 3 --steps=50 --size 256',
      origin,
    );
    expect(job).toEqual({
      prompt: 'a watercolor teacher:1 | blurry:-0.5',
      preset: 'draft',
      seed: 3,
      steps: 50,
      size: { width: 256, height: 256 },
      origin,
    });
    expect(sentence(() => imagineFromText('a cat --colour red', origin))).toMatch(/colour/);
    expect(sentence(() => imagineFromText('a cat --seed 3', origin, { seed: 4 }))).toMatch(/seed/);
    expect(whatisFromText('cat, dog --k 3', 'p:blob:x', origin)).toMatchObject({
      labels: ['cat', 'dog'],
      topK: 3,
    });
    const scope = { platform: 'slack', workspace: 'T1', channel: 'C1' } as const;
    expect(searchFromText('a red bicycle --k 4', scope, origin)).toMatchObject({
      query: 'a red bicycle',
      k: 4,
    });
  });
});

describe('whatisRequest and searchRequest', () => {
  it('splits labels, drops repeats, defaults topK to 5', () => {
    expect(parseLabels(' cat,  dog ,, Cat, human being ')).toEqual(['cat', 'dog', 'human being']);
    expect(whatisRequest({ image: 'p:blob:x', labels: 'cat, dog' }, origin)).toEqual({
      image: 'p:blob:x',
      labels: ['cat', 'dog'],
      topK: 5,
      origin,
    });
    expect(whatisRequest({ image: 'p:blob:x', labels: '' }, origin)).not.toHaveProperty('labels');
    expect(sentence(() => parseLabels(Array.from({ length: 201 }, (_, i) => `l${i}`)))).toMatch(/not valid/);
  });

  it('searches by words or by image, never neither', () => {
    const scope = { platform: 'slack', workspace: 'T1', channel: 'C1' } as const;
    expect(searchRequest({ query: ' a red bicycle ' }, scope, origin)).toEqual({
      query: 'a red bicycle',
      ...scope,
      k: 10,
      origin,
    });
    expect(searchRequest({ image: 'p:blob:y', k: '4' }, scope, origin)).toMatchObject({
      image: 'p:blob:y',
      k: 4,
    });
    expect(() => searchRequest({ query: '  ' }, scope, origin)).toThrow(/words or an image/);
  });
});

describe('actions', () => {
  const parentId = 'imagine:0b7e3f4a-8c1d-4e2f-9a6b-5c4d3e2f1a0b' as const;
  const data: ImagineJob = {
    prompt: 'a lighthouse',
    seed: 5,
    steps: 30,
    preset: 'draft',
    initImage: 'p:blob:init',
    origin,
  };
  const result: ImagineResult = {
    finalBlob: 'p:blob:final',
    latentBlob: 'p:blob:state',
    seed: 5,
    steps: 30,
    params: { width: 128, height: 128, cutouts: 8, lr: 0.1, preset: 'draft' },
    lossFirst: 1,
    lossLast: 0.5,
    timings: {},
  };
  const clicker = { ...origin, user: 'U2' };

  it('round-trips button ids within Discord’s 100 characters and rejects others', () => {
    const id = actionId('variations', parentId);
    expect(id.length).toBeLessThanOrEqual(100);
    expect(parseActionId(id)).toEqual({ action: 'variations', jobId: parentId });
    expect(parseActionId(`vq1:explode:${parentId}`)).toBeUndefined();
    expect(parseActionId('vq1:reroll:classify:abc')).toBeUndefined();
    expect(parseActionId('something else')).toBeUndefined();
  });

  it('builds Re-roll, Variations, Continue and Remix from the parent', async () => {
    const all = async () => true;
    const reroll = await followUpJob({ data, result }, 'reroll', clicker, parentId, all, {}, () => 99);
    expect(reroll).toEqual({
      prompt: 'a lighthouse',
      preset: 'draft',
      steps: 30,
      initImage: 'p:blob:init',
      seed: 99,
      origin: clicker,
    });
    const variations = await followUpJob(
      { data, result },
      'variations',
      clicker,
      parentId,
      all,
      {},
      () => 98,
    );
    expect(variations).toMatchObject({
      seed: 98,
      from: { state: 'p:blob:state', mode: 'variation', job: parentId },
    });
    expect(variations).not.toHaveProperty('initImage');
    const cont = await followUpJob({ data, result }, 'continue', clicker, parentId, all);
    expect(cont).toMatchObject({ seed: 5, steps: 50, from: { mode: 'continue' } });
    const remix = await followUpJob({ data, result }, 'remix', clicker, parentId, all, {
      prompt: 'a lighthouse at night',
    });
    expect(remix).toMatchObject({ prompt: 'a lighthouse at night', from: { mode: 'variation' } });
  });

  it('says in words when the saved state has expired or the image is not finished', async () => {
    const none = async () => false;
    const expired = await followUpJob({ data, result }, 'variations', clicker, parentId, none).catch(
      (e) => e,
    );
    expect(renderError(expired)).toMatch(/expired/);
    const rerolled = await followUpJob({ data, result }, 'reroll', clicker, parentId, none);
    expect(rerolled).not.toHaveProperty('initImage');
    const unfinished = await followUpJob({ data }, 'continue', clicker, parentId, async () => true).catch(
      (e) => e,
    );
    expect(unfinished).toMatchObject({ code: 'not_found' });
  });
});
