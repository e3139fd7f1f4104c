import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { type CodedError, parseSerializedError } from '../../src/shared/errors.js';
import {
  checkJob,
  classifyJobSchema,
  embedImageJobSchema,
  imagineJobSchema,
  imagineProgressSchema,
  parseJob,
  searchJobSchema,
} from '../../src/shared/jobs.js';

const origin = { platform: 'discord', workspace: 'g1', channel: 'c1', user: 'u1' } as const;

function codedFrom(fn: () => unknown): CodedError {
  try {
    fn();
  } catch (e) {
    return e as CodedError;
  }
  throw new Error('expected a throw');
}

describe('job schemas', () => {
  it('accept a full imagine job and trim the prompt', () => {
    const job = checkJob(imagineJobSchema, {
      prompt: '  a watercolor teacher:1 | blurry:-0.5 ',
      seed: 7,
      steps: 50,
      size: { width: 256, height: 128 },
      cutouts: 16,
      lr: 0.1,
      preset: 'better',
      initImage: 'vqclip:blob:abc',
      imagePrompts: ['vqclip:blob:def'],
      origin,
    });
    expect(job.prompt).toBe('a watercolor teacher:1 | blurry:-0.5');
    expect(job.size).toEqual({ width: 256, height: 128 });
  });

  it('reject unknown fields, also nested ones', () => {
    const top = codedFrom(() => checkJob(imagineJobSchema, { prompt: 'x', origin, evil: 1 }));
    expect(top.code).toBe('bad_input');
    expect(top.details.issues).toEqual([{ path: '(root)', message: expect.stringContaining('evil') }]);
    const nested = codedFrom(() =>
      checkJob(imagineJobSchema, { prompt: 'x', origin: { ...origin, token: 'secret' } }),
    );
    expect(nested.details.issues).toEqual([{ path: 'origin', message: expect.stringContaining('token') }]);
    expect(() =>
      checkJob(searchJobSchema, { query: 'q', platform: 'slack', workspace: 'w', channel: 'c', k: 5, x: 0 }),
    ).toThrow(/invalid job data/);
  });

  it('reject out-of-range values with the path of each', () => {
    const e = codedFrom(() =>
      checkJob(imagineJobSchema, {
        prompt: 'x',
        origin,
        steps: 0,
        size: { width: 100, height: 2048 },
        seed: -1,
        cutouts: 1.5,
        preset: 'best',
      }),
    );
    const paths = (e.details.issues as { path: string }[]).map((i) => i.path).sort();
    expect(paths).toEqual(['cutouts', 'preset', 'seed', 'size.height', 'size.width', 'steps']);
    expect(e.message).toContain('size.width: must be a multiple of 16');
    const labels = codedFrom(() =>
      checkJob(classifyJobSchema, { image: 'k', labels: Array(201).fill('cat') }),
    );
    expect(labels.details.issues).toEqual([{ path: 'labels', message: expect.stringContaining('200') }]);
    const templates = codedFrom(() => checkJob(classifyJobSchema, { image: 'k', templates: ['a photo'] }));
    expect(templates.message).toContain("must contain '{}'");
    expect(() =>
      checkJob(searchJobSchema, { query: 'q', platform: 'slack', workspace: 'w', channel: 'c', k: 51 }),
    ).toThrow();
    expect(() =>
      checkJob(embedImageJobSchema, {
        image: 'k',
        platform: 'irc',
        workspace: 'w',
        channel: 'c',
        message: 'm',
        file: 'f',
      }),
    ).toThrow(/platform/);
    expect(() => checkJob(imagineProgressSchema, { step: 1, steps: 0, loss: 1, etaSeconds: 1 })).toThrow();
  });

  it('reject blob keys that could address other Redis keys by pattern', () => {
    expect(() => checkJob(classifyJobSchema, { image: 'vqclip:blob:*' })).toThrow(/not a blob key/);
    expect(() => checkJob(classifyJobSchema, { image: 'a b' })).toThrow(/not a blob key/);
  });

  it('report a too long prompt with its own code', () => {
    const e = codedFrom(() => checkJob(imagineJobSchema, { prompt: 'a'.repeat(10_000), origin }));
    expect(e.code).toBe('prompt_too_long');
    expect(e.details).toEqual({ length: 10_000, max: 1000 });
  });

  it('summarise at most ten issues', () => {
    const e = codedFrom(() => checkJob(classifyJobSchema, { image: 'k', labels: Array(30).fill('') }));
    expect((e.details.issues as unknown[]).length).toBe(10);
    expect(e.details.more).toBe(20);
  });

  it('parseJob throws UnrecoverableError carrying the coded error', () => {
    let thrown: unknown;
    try {
      parseJob(searchJobSchema, { query: '', platform: 'web', workspace: 'w', channel: 'c', k: 1 });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(UnrecoverableError);
    const reason = parseSerializedError((thrown as Error).message);
    expect(reason.code).toBe('bad_input');
    expect(reason.details.issues).toEqual([{ path: 'query', message: expect.any(String) }]);
    expect((thrown as Error).cause).toMatchObject({ code: 'bad_input' });
    expect(
      parseJob(searchJobSchema, { query: 'q', platform: 'web', workspace: 'w', channel: 'c', k: 1 }).k,
    ).toBe(1);
  });
});
