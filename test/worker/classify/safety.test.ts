// The safety check's arithmetic on constructed embeddings (orthonormal prompts, so every probability
// is known in closed form), its prompt validation, and the checker's one-time prompt embedding.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_SAFETY_PROMPTS,
  parseSafetyPrompts,
  readSafetyPromptsFile,
  SafetyChecker,
  type SafetyPromptEmbeddings,
  type SafetyPromptSource,
  safetyPromptRows,
  scoreSafety,
} from '../../../src/worker/classify/safety.js';

const prompts = {
  categories: { nudity: ['naked', 'nude'], gore: ['blood'] },
  safe: ['a cat', 'a dog', 'a tree'],
};
const DIM = 8;

/** Prompt p is the unit vector e_p: cosines are 1 with itself and 0 with every other prompt. */
function orthonormal(rows: number, dim = DIM): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) out[r * dim + r] = 1;
  return out;
}

function embedded(): SafetyPromptEmbeddings {
  const rows = safetyPromptRows(prompts);
  return { ...rows, dim: DIM, embeds: orthonormal(rows.texts.length) };
}

function unit(dim: number, index: number, scale = 1): Float32Array {
  const v = new Float32Array(dim);
  v[index] = scale;
  return v;
}

describe('safetyPromptRows', () => {
  it('lays out unsafe prompts by category, then the safe ones', () => {
    expect(safetyPromptRows(prompts)).toEqual({
      texts: ['naked', 'nude', 'blood', 'a cat', 'a dog', 'a tree'],
      owners: [0, 0, 1, -1, -1, -1],
      categories: ['nudity', 'gore'],
    });
  });
});

describe('scoreSafety', () => {
  const set = embedded();
  // With cosines 1 and 0 only: the prompt the image equals has e^s / (e^s + 5), each other 1 / (e^s + 5).
  const s = 10;
  const own = Math.exp(s) / (Math.exp(s) + 5);
  const other = 1 / (Math.exp(s) + 5);

  it('flags an image equal to an unsafe prompt, with its category and the unsafe mass', () => {
    const r = scoreSafety(unit(DIM, 1, 3), set, { logitScale: s, threshold: 0.5 });
    expect(r.flagged).toBe(true);
    expect(r.category).toBe('nudity');
    expect(r.score).toBeCloseTo(own + 2 * other, 12);
    const gore = scoreSafety(unit(DIM, 2), set, { logitScale: s, threshold: 0.5 });
    expect(gore).toMatchObject({ flagged: true, category: 'gore' });
  });

  it('passes an image equal to a safe prompt', () => {
    const r = scoreSafety(unit(DIM, 4), set, { logitScale: s, threshold: 0.5 });
    expect(r.flagged).toBe(false);
    expect(r.score).toBeCloseTo(3 * other, 12);
    // The unsafe category with the most mass is still named: nudity has two prompts, gore one.
    expect(r.category).toBe('nudity');
  });

  it('spreads mass by prompt count when the image is like none of them, and the threshold decides', () => {
    // Orthogonal to every prompt (the 7th axis is no prompt's): uniform over 6 prompts, 3 of them unsafe.
    const blank = unit(DIM, 7);
    expect(scoreSafety(blank, set, { logitScale: s, threshold: 0.51 })).toEqual({
      flagged: false,
      score: expect.closeTo(0.5, 12),
      category: 'nudity',
    });
    expect(scoreSafety(blank, set, { logitScale: s, threshold: 0.49 }).flagged).toBe(true);
    // Flagged only when the score is above the threshold: 1 never flags, 0 flags everything.
    expect(scoreSafety(unit(DIM, 0), set, { logitScale: s, threshold: 1 }).flagged).toBe(false);
    expect(scoreSafety(unit(DIM, 4), set, { logitScale: s, threshold: 0 }).flagged).toBe(true);
  });

  it('takes the softmax over every prompt, scaled by the logit scale', () => {
    // Between 'naked' and 'a cat', nearer 'naked': cosines 2/sqrt(5) and 1/sqrt(5), 0 with the rest.
    const v = new Float32Array(DIM);
    v[0] = 2;
    v[3] = 1;
    for (const scale of [1, 14.3, 100]) {
      const naked = Math.exp((scale * 2) / Math.sqrt(5));
      const cat = Math.exp(scale / Math.sqrt(5));
      const r = scoreSafety(v, set, { logitScale: scale, threshold: 0.5 });
      expect(r.score).toBeCloseTo((naked + 2) / (naked + cat + 4), 10);
    }
    // A large scale does not overflow.
    expect(scoreSafety(unit(DIM, 0), set, { logitScale: 1e4, threshold: 0.5 }).score).toBeCloseTo(1, 12);
  });

  it('refuses embeddings of the wrong length', () => {
    expect(() => scoreSafety(new Float32Array(4), set, { logitScale: s, threshold: 0.5 })).toThrow(
      RangeError,
    );
  });
});

describe('parseSafetyPrompts', () => {
  it('accepts the defaults: several prompts per category, more safe prompts than unsafe', () => {
    const p = parseSafetyPrompts(DEFAULT_SAFETY_PROMPTS);
    expect(Object.keys(p.categories)).toEqual(['nudity', 'gore', 'violence']);
    const unsafe = Object.values(p.categories).flat().length;
    for (const list of Object.values(p.categories)) expect(list.length).toBeGreaterThanOrEqual(3);
    expect(p.safe.length).toBeGreaterThan(unsafe);
  });

  it('refuses empty sides, repeated prompts and odd category names', () => {
    const bad = [
      { categories: {}, safe: ['a cat'] },
      { categories: { nudity: [] }, safe: ['a cat'] },
      { categories: { nudity: ['naked'] }, safe: [] },
      { categories: { nudity: ['naked'] }, safe: ['Naked'] },
      { categories: { 'no spaces': ['x'] }, safe: ['a cat'] },
      { categories: { nudity: ['naked'] }, safe: ['a cat'], extra: 1 },
      { categories: { nudity: ['x'.repeat(201)] }, safe: ['a cat'] },
    ];
    for (const json of bad) expect(() => parseSafetyPrompts(json), JSON.stringify(json)).toThrow(/invalid/);
  });

  it('reads a prompts file and says which file was wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vqclip-safety-'));
    try {
      const good = join(dir, 'good.json');
      await writeFile(good, JSON.stringify(prompts));
      expect(await readSafetyPromptsFile(good)).toEqual(prompts);
      const broken = join(dir, 'broken.json');
      await writeFile(broken, '{ not json');
      await expect(readSafetyPromptsFile(broken)).rejects.toMatchObject({ code: 'bad_input' });
      const wrong = join(dir, 'wrong.json');
      await writeFile(wrong, JSON.stringify({ categories: {}, safe: [] }));
      await expect(readSafetyPromptsFile(wrong)).rejects.toThrow(/wrong\.json/);
      await expect(readSafetyPromptsFile(join(dir, 'missing.json'))).rejects.toMatchObject({
        code: 'bad_input',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SafetyChecker', () => {
  function source(): SafetyPromptSource & { calls: string[][] } {
    const calls: string[][] = [];
    return {
      calls,
      encoders: { dim: DIM, logitScale: 10 },
      async labelEmbeddings(labels, templates) {
        calls.push([...labels]);
        expect(templates).toEqual(['{}']);
        return {
          labels,
          dim: DIM,
          embeds: orthonormal(labels.length),
          key: 'k',
          fromCache: false,
          truncatedPrompts: 0,
        };
      },
    };
  }

  it('embeds the prompts verbatim once and scores with the model logit scale', async () => {
    const src = source();
    const checker = new SafetyChecker(src, { prompts });
    const [a, b] = await Promise.all([checker.check(unit(DIM, 2)), checker.check(unit(DIM, 5))]);
    expect(a).toMatchObject({ flagged: true, category: 'gore' });
    expect(b.flagged).toBe(false);
    expect(b.score).toBeCloseTo(3 / (Math.exp(10) + 5), 12);
    await checker.check(unit(DIM, 0));
    expect(src.calls).toEqual([['naked', 'nude', 'blood', 'a cat', 'a dog', 'a tree']]);
  });

  it('takes its own threshold and logit scale, and refuses bad ones', async () => {
    const checker = new SafetyChecker(source(), { prompts, threshold: 0.49, logitScale: 1e-9 });
    expect((await checker.check(unit(DIM, 4))).flagged).toBe(true);
    expect(() => new SafetyChecker(source(), { threshold: 1.5 })).toThrow(RangeError);
    expect(() => new SafetyChecker(source(), { logitScale: 0 })).toThrow(RangeError);
    expect(() => new SafetyChecker(source(), { prompts: { categories: {}, safe: ['x'] } })).toThrow(
      /invalid/,
    );
  });

  it('retries the prompts after a failure, and stops waiting when its signal aborts', async () => {
    const src = source();
    let fail = true;
    const flaky: SafetyPromptSource = {
      encoders: src.encoders,
      labelEmbeddings: (labels, templates) => {
        if (fail) return Promise.reject(new Error('text tower failed'));
        return src.labelEmbeddings(labels, templates);
      },
    };
    const checker = new SafetyChecker(flaky, { prompts });
    await expect(checker.check(unit(DIM, 0))).rejects.toThrow('text tower failed');
    fail = false;
    expect((await checker.check(unit(DIM, 0))).flagged).toBe(true);
    const aborted = AbortSignal.abort(new Error('cancelled'));
    await expect(checker.check(unit(DIM, 0), aborted)).rejects.toThrow('cancelled');
  });
});
