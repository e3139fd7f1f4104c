// The shipped vocabulary: sizes, uniqueness, well-formed templates, and ImageNet's class order.
import { describe, expect, it } from 'vitest';
import {
  CUSTOM_LABEL_TEMPLATES,
  DEFAULT_LABELS,
  DEFAULT_TEMPLATES,
  EVERYDAY_LABELS,
  IMAGENET_CLASSES,
  IMAGENET_TEMPLATES,
  labelKey,
  SELECTED_TEMPLATES,
  uniqueLabels,
} from '../../../src/worker/classify/vocabulary.js';

const duplicates = (xs: readonly string[]) => {
  const seen = new Map<string, string>();
  const out: string[] = [];
  for (const x of xs) {
    const k = labelKey(x);
    if (seen.has(k)) out.push(`${seen.get(k)} / ${x}`);
    seen.set(k, x);
  }
  return out;
};

describe('default vocabulary', () => {
  it('has the 1000 ImageNet classes, unique, in class-index order', () => {
    expect(IMAGENET_CLASSES).toHaveLength(1000);
    expect(duplicates(IMAGENET_CLASSES)).toEqual([]);
    // Anchors from the ImageNet-1k class index.
    const anchors: Record<number, string> = {
      0: 'tench',
      1: 'goldfish',
      104: 'wallaby',
      151: 'Chihuahua',
      207: 'Golden Retriever',
      281: 'tabby cat',
      340: 'zebra',
      388: 'giant panda',
      409: 'analog clock',
      504: 'coffee mug',
      657: 'missile',
      744: 'projectile',
      779: 'school bus',
      817: 'sports car',
      954: 'banana',
      980: 'volcano',
      999: 'toilet paper',
    };
    for (const [i, name] of Object.entries(anchors)) expect(IMAGENET_CLASSES[Number(i)]).toBe(name);
  });

  it('adds everyday labels: at least 1000 labels, no duplicates, clean text', () => {
    expect(DEFAULT_LABELS.length).toBeGreaterThanOrEqual(1000);
    expect(DEFAULT_LABELS.slice(0, 1000)).toEqual(IMAGENET_CLASSES);
    expect(DEFAULT_LABELS).toContain('person');
    expect(DEFAULT_LABELS).toContain('screenshot');
    expect(duplicates(DEFAULT_LABELS)).toEqual([]);
    expect(duplicates(EVERYDAY_LABELS)).toEqual([]);
    for (const l of DEFAULT_LABELS) {
      expect(l).toBe(l.trim());
      expect(l).not.toMatch(/\s{2}|[,{}\n]/);
    }
  });

  it("ships CLIP's 80 templates and its 7 selected ones, each with exactly one {}", () => {
    expect(IMAGENET_TEMPLATES).toHaveLength(80);
    expect(new Set(IMAGENET_TEMPLATES).size).toBe(80);
    expect(DEFAULT_TEMPLATES).toBe(IMAGENET_TEMPLATES);
    expect(IMAGENET_TEMPLATES[0]).toBe('a bad photo of a {}.');
    expect(IMAGENET_TEMPLATES).toContain('a photo of a {}.');
    expect(SELECTED_TEMPLATES).toHaveLength(7);
    expect(CUSTOM_LABEL_TEMPLATES).toBe(SELECTED_TEMPLATES);
    for (const t of [...IMAGENET_TEMPLATES, ...SELECTED_TEMPLATES]) expect(t.split('{}')).toHaveLength(2);
    // The selected ones come from the 80.
    for (const t of SELECTED_TEMPLATES) expect(IMAGENET_TEMPLATES).toContain(t);
  });

  it('uniqueLabels keeps the first spelling and ignores case and spacing', () => {
    expect(uniqueLabels(['Cat', ' cat ', 'dog', 'DOG  ', 'hot  dog', 'hot dog', ''])).toEqual([
      'Cat',
      'dog',
      'hot dog',
    ]);
  });
});
