// Property tests (fast-check) of what reads untrusted text and bytes: the prompt syntax, chat flags,
// the job schemas and the checkpoint readers. Whatever comes in, each either returns a value of the
// promised shape or throws a CodedError a user can be shown; nothing else escapes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imagineFlags, parseFlags, searchFlags } from '../../src/bots/core/flags.js';
import { renderError } from '../../src/bots/core/render.js';
import { imagineFromText } from '../../src/bots/core/requests.js';
import { CodedError } from '../../src/shared/errors.js';
import {
  checkJob,
  classifyJobSchema,
  deleteImageJobSchema,
  imagineJobSchema,
  jobLimits,
  searchJobSchema,
} from '../../src/shared/jobs.js';
import { formatPrompt, parsePrompt } from '../../src/shared/prompt.js';
import { unpickle } from '../../src/worker/models/pull/pickle.js';
import { ZipReader } from '../../src/worker/models/pull/zip.js';

const RUNS = { numRuns: 300 };

/** Calls fn; a throw must be a CodedError whose sentence renders. Returns the value or undefined. */
function codedOrValue<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CodedError);
    const sentence = renderError(error as CodedError);
    expect(sentence.length).toBeGreaterThan(0);
    expect(sentence).not.toMatch(/\n\s+at /); // never a stack trace
    return undefined;
  }
}

// Text with the characters the parsers care about, plus odd Unicode (RTL marks, joiners, emoji).
const tricky = fc.string({
  unit: fc.constantFrom(
    'a',
    'b',
    'z',
    ' ',
    ':',
    '|',
    '-',
    '.',
    '1',
    '0',
    '9',
    'e',
    '—',
    '–',
    '"',
    "'",
    '=',
    'x',
    '\u200f',
    '\u200d',
    '\u202e',
    '🙂',
    '猫',
    '\t',
    '\n',
    '--seed',
    '--size',
    '--preset',
    'draft',
  ),
  maxLength: 60,
});

describe('prompt syntax', () => {
  it('parses or refuses with a coded error; what it returns has text and finite weights', () => {
    fc.assert(
      fc.property(fc.oneof(tricky, fc.string({ maxLength: 80 })), (input) => {
        const prompts = codedOrValue(() => parsePrompt(input));
        if (!prompts) return;
        expect(prompts.length).toBeGreaterThan(0);
        expect(prompts.length).toBeLessThanOrEqual(8);
        for (const p of prompts) {
          expect(p.text.trim()).toBe(p.text);
          expect(p.text.length).toBeGreaterThan(0);
          expect(Number.isFinite(p.weight)).toBe(true);
        }
        expect(prompts.some((p) => p.weight > 0)).toBe(true);
      }),
      RUNS,
    );
  });

  it('reads back what formatPrompt writes', () => {
    const segment = fc.record({
      text: fc.stringMatching(/^[a-z][a-z :]{0,20}[a-z]$/).filter((t) => !t.includes('|')),
      weight: fc.oneof(
        fc.constant(1),
        fc.integer({ min: -100, max: 100 }),
        fc.double({ min: -100, max: 100, noNaN: true }),
      ),
    });
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), (segments) => {
        const prompts = segments.map((s) => ({
          text: s.text.trim().replace(/\s+/g, ' '),
          weight: s.weight === 0 ? 0 : s.weight,
        }));
        if (!prompts.some((p) => p.weight > 0) || prompts.some((p) => p.text === '')) return;
        expect(parsePrompt(formatPrompt(prompts))).toEqual(prompts);
      }),
      RUNS,
    );
  });
});

describe('chat flags', () => {
  it('parses or refuses with a coded error; parsed values are within their spec', () => {
    fc.assert(
      fc.property(tricky, (text) => {
        const parsed = codedOrValue(() => parseFlags(text, imagineFlags));
        if (!parsed) return;
        const { flags } = parsed;
        if (flags.seed !== undefined) expect(flags.seed).toBeGreaterThanOrEqual(0);
        if (flags.steps !== undefined) expect(flags.steps).toBeLessThanOrEqual(jobLimits.maxSteps);
        if (flags.size !== undefined) expect(flags.size).toMatch(/^\d+x\d+$/);
        expect(parsed.rest).toBe(parsed.rest.trim());
      }),
      RUNS,
    );
  });

  it('takes out exactly the flags it was given, whatever prompt surrounds them', () => {
    const prompt = fc.stringMatching(/^[a-z][a-z |:.0-9]{0,30}$/).filter((p) => !/(^|\s)-/.test(p));
    fc.assert(
      fc.property(
        prompt,
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 1, max: 50 }),
        (p, seed, k) => {
          const { rest, flags } = parseFlags(`${p} --seed ${seed}`, imagineFlags);
          expect(flags.seed).toBe(seed);
          expect(rest).toBe(p.trim());
          expect(parseFlags(`--k=${k} ${p}`, searchFlags).flags.k).toBe(k);
        },
      ),
      RUNS,
    );
  });

  it('a whole /imagine text becomes a valid job or a sentence', () => {
    const origin = { platform: 'slack', workspace: 'T', channel: 'C', user: 'U' } as const;
    fc.assert(
      fc.property(tricky, (text) => {
        const job = codedOrValue(() => imagineFromText(text, origin));
        if (job) expect(imagineJobSchema.safeParse(job).success).toBe(true);
      }),
      RUNS,
    );
  });
});

describe('job schemas', () => {
  it('refuse anything malformed with a coded error, never with something else', () => {
    const schemas = [imagineJobSchema, classifyJobSchema, searchJobSchema, deleteImageJobSchema];
    fc.assert(
      fc.property(fc.constantFrom(...schemas), fc.anything({ maxDepth: 3 }), (schema, data) => {
        codedOrValue(() => checkJob(schema, data));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            prompt: fc.oneof(fc.string({ maxLength: 1200 }), fc.integer()),
            seed: fc.oneof(fc.integer(), fc.double(), fc.string()),
            steps: fc.oneof(fc.integer({ min: -5, max: 2000 }), fc.constant(null)),
            size: fc.record({
              width: fc.integer({ min: 0, max: 2000 }),
              height: fc.integer({ min: 0, max: 2000 }),
            }),
            origin: fc.record({
              platform: fc.constantFrom('discord', 'slack', 'irc'),
              user: fc.string({ maxLength: 5 }),
            }),
          },
          { requiredKeys: [] },
        ),
        (data) => {
          const job = codedOrValue(() => checkJob(imagineJobSchema, data));
          if (job?.size) expect(job.size.width % 16).toBe(0);
        },
      ),
      RUNS,
    );
  });
});

describe('checkpoint readers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vqclip-prop-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('unpickle reads or refuses arbitrary bytes with a coded error', () => {
    // Bytes that start like a protocol-2+ pickle reach deeper into the reader than random ones.
    const pickleish = fc.uint8Array({ maxLength: 200 }).map((tail) => new Uint8Array([0x80, 0x02, ...tail]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), pickleish), (bytes) => {
        codedOrValue(() => unpickle(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it('ZipReader opens or refuses arbitrary files with a coded error', async () => {
    // End-of-central-directory signatures at the end make the reader look further.
    const zipish = fc
      .uint8Array({ maxLength: 300 })
      .map((head) => new Uint8Array([...head, 0x50, 0x4b, 0x05, 0x06, ...new Array(18).fill(0)]));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 300 }), zipish), async (bytes) => {
        const path = join(dir, `f${n++}.zip`);
        await writeFile(path, bytes);
        const zip = codedOrValue(() => ZipReader.open(path));
        (zip as { close?: () => void } | undefined)?.close?.();
      }),
      { numRuns: 200 },
    );
  });
});
