// Folding near-duplicates, the relative cut-off in logits and the low-confidence line, on
// constructed embeddings whose cosines are known.
import { describe, expect, it } from 'vitest';
import {
  DefaultRankingOptions,
  foldNearDuplicates,
  rankCandidates,
  rankingOptions,
} from '../../../src/worker/search/rank.js';

/** A unit vector in the plane of e0 and e1 at `degrees` from e0 (cosines between two are cos(angle)). */
function at(degrees: number): Float32Array {
  const r = (degrees * Math.PI) / 180;
  return Float32Array.from([Math.cos(r), Math.sin(r), 0, 0]);
}

const hit = (id: string, score: number, embedding: Float32Array) => ({ id, score, embedding });
const cosDeg = (d: number) => Math.cos((d * Math.PI) / 180);

describe('foldNearDuplicates', () => {
  it('folds each candidate into the best kept hit it resembles, best first whatever the input order', () => {
    // a and b 10 degrees apart (cosine 0.985), c 30 from a: c stays.
    const a = hit('a', 0.9, at(0));
    const b = hit('b', 0.8, at(10));
    const c = hit('c', 0.7, at(30));
    const folded = foldNearDuplicates([c, b, a], 0.94);
    expect(folded.map((h) => [h.id, h.duplicates])).toEqual([
      ['a', 1],
      ['c', 0],
    ]);
  });

  it('does not fold along a chain: a ~ b and b ~ c, but c far from a, leaves c a hit', () => {
    // 15 degrees: cosine 0.966 >= 0.94; 30 degrees: 0.866 < 0.94.
    const folded = foldNearDuplicates(
      [hit('a', 0.9, at(0)), hit('b', 0.85, at(15)), hit('c', 0.8, at(30))],
      0.94,
    );
    expect(folded.map((h) => [h.id, h.duplicates])).toEqual([
      ['a', 1],
      ['c', 0],
    ]);
    // Just under and just over the pair's cosine (float32 embeddings: to 1e-6).
    const edge = foldNearDuplicates([hit('a', 0.9, at(0)), hit('b', 0.8, at(20))], cosDeg(20) - 1e-6);
    expect(edge).toHaveLength(1);
    expect(foldNearDuplicates([hit('a', 0.9, at(0)), hit('b', 0.8, at(20))], cosDeg(20) + 1e-6)).toHaveLength(
      2,
    );
  });

  it('measures cosine on unnormalised embeddings, and folds nothing above 1', () => {
    const a = hit('a', 0.9, Float32Array.from([3, 0, 0, 0]));
    const b = hit('b', 0.8, Float32Array.from([0.5, 0.01, 0, 0]));
    expect(foldNearDuplicates([a, b], 0.94)).toHaveLength(1);
    expect(foldNearDuplicates([a, b], 1.5)).toHaveLength(2);
  });
});

describe('rankCandidates', () => {
  const o = rankingOptions();
  // Orthogonal directions: nothing folds, only the scores matter.
  const spread = (scores: number[]) =>
    scores.map((score, i) =>
      hit(
        `h${i}`,
        score,
        Float32Array.from({ length: 8 }, (_, j) => (j === i ? 1 : 0)),
      ),
    );

  it('drops hits more than the margin in logits below the best: 0.06 of cosine at logit scale 100', () => {
    const ranked = rankCandidates(
      spread([0.3, 0.26, 0.241, 0.239, 0.1]),
      { kind: 'text', k: 10, logitScale: 100 },
      o,
    );
    expect(ranked.hits.map((h) => h.score)).toEqual([0.3, 0.26, 0.241]);
    expect(ranked.lowConfidence).toBe(false);
    // The same hits from a model with a cooler softmax (random weights: 14.3): 6 logits is 0.42 of cosine.
    const cool = rankCandidates(
      spread([0.3, 0.26, 0.241, 0.239, 0.1]),
      { kind: 'text', k: 10, logitScale: 14.3 },
      o,
    );
    expect(cool.hits).toHaveLength(5);
  });

  it('takes a wider margin for image queries, and keeps the top k after the cut', () => {
    const scores = [0.95, 0.8, 0.76, 0.74, 0.5];
    const image = rankCandidates(spread(scores), { kind: 'image', k: 10, logitScale: 100 }, o);
    expect(image.hits.map((h) => h.score)).toEqual([0.95, 0.8, 0.76]);
    const text = rankCandidates(spread(scores), { kind: 'text', k: 10, logitScale: 100 }, o);
    expect(text.hits.map((h) => h.score)).toEqual([0.95]);
    expect(rankCandidates(spread(scores), { kind: 'image', k: 2, logitScale: 100 }, o).hits).toHaveLength(2);
    const all = rankingOptions({ imageLogitMargin: Number.POSITIVE_INFINITY });
    expect(rankCandidates(spread(scores), { kind: 'image', k: 10, logitScale: 100 }, all).hits).toHaveLength(
      5,
    );
  });

  it('says lowConfidence when even the best is under the line, for its query kind', () => {
    expect(
      rankCandidates(spread([0.19, 0.18]), { kind: 'text', k: 5, logitScale: 100 }, o).lowConfidence,
    ).toBe(true);
    expect(rankCandidates(spread([0.21]), { kind: 'text', k: 5, logitScale: 100 }, o).lowConfidence).toBe(
      false,
    );
    expect(rankCandidates(spread([0.59]), { kind: 'image', k: 5, logitScale: 100 }, o).lowConfidence).toBe(
      true,
    );
    expect(rankCandidates(spread([0.61]), { kind: 'image', k: 5, logitScale: 100 }, o).lowConfidence).toBe(
      false,
    );
    // Weak hits are still returned: the flag qualifies them.
    expect(
      rankCandidates(spread([0.19, 0.18]), { kind: 'text', k: 5, logitScale: 100 }, o).hits,
    ).toHaveLength(2);
    expect(rankCandidates([], { kind: 'text', k: 5, logitScale: 100 }, o)).toEqual({
      hits: [],
      lowConfidence: false,
    });
  });

  it('folds before cutting, so a folded copy counts whatever its own score', () => {
    const ranked = rankCandidates(
      [hit('a', 0.3, at(0)), hit('copy', 0.1, at(5)), hit('b', 0.28, at(60))],
      { kind: 'text', k: 10, logitScale: 100 },
      o,
    );
    expect(ranked.hits.map((h) => [h.id, h.duplicates])).toEqual([
      ['a', 1],
      ['b', 0],
    ]);
  });
});

describe('rankingOptions', () => {
  it('fills the defaults and refuses bad values', () => {
    expect(rankingOptions()).toEqual(DefaultRankingOptions);
    expect(DefaultRankingOptions.duplicateCosine).toBe(0.94);
    expect(rankingOptions({ textLogitMargin: 2 }).textLogitMargin).toBe(2);
    for (const bad of [
      { duplicateCosine: 0 },
      { candidatesPerHit: 0 },
      { candidatesPerHit: 1.5 },
      { textLogitMargin: -1 },
      { imageLogitMargin: Number.NaN },
      { textLowConfidence: 2 },
    ]) {
      expect(() => rankingOptions(bad), JSON.stringify(bad)).toThrow(RangeError);
    }
    expect(() => rankCandidates([], { kind: 'text', k: 1, logitScale: 0 })).toThrow(RangeError);
  });
});
