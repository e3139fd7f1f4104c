// The default label set of /whatis: the 1000 ImageNet classes (CLIP's clean names) plus everyday
// labels ImageNet lacks, with CLIP's 80-template prompt ensemble. Label text embeddings for it are
// computed once per model and cached (label-embeddings.ts).
import { EVERYDAY_LABELS } from './data/everyday-labels.js';
import { IMAGENET_CLASSES } from './data/imagenet-classes.js';
import { IMAGENET_TEMPLATES, SELECTED_TEMPLATES } from './data/templates.js';

export { EVERYDAY_LABELS, IMAGENET_CLASSES, IMAGENET_TEMPLATES, SELECTED_TEMPLATES };

/** The key labels are compared by: case, spacing and Unicode form do not make a new label. */
export function labelKey(label: string): string {
  return label.normalize('NFC').trim().replace(/\s+/g, ' ').toLowerCase();
}

/** Labels in first-seen order without repeats (by `labelKey`). */
export function uniqueLabels(labels: Iterable<string>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const label of labels) {
    const key = labelKey(label);
    if (key.length === 0 || seen.has(key)) continue;
    seen.add(key);
    out.push(label.trim().replace(/\s+/g, ' '));
  }
  return out;
}

/** ImageNet first (index order), then the everyday labels that are not already there. */
export const DEFAULT_LABELS: readonly string[] = Object.freeze(
  uniqueLabels([...IMAGENET_CLASSES, ...EVERYDAY_LABELS]),
);

/** Templates for the default vocabulary: the full 80-template ensemble. */
export const DEFAULT_TEMPLATES: readonly string[] = IMAGENET_TEMPLATES;

/**
 * Templates for labels a user types: the 7 selected templates, so a first request with new labels
 * costs 7 text encodings per label instead of 80 (about 7x faster on CPU, most of the accuracy).
 */
export const CUSTOM_LABEL_TEMPLATES: readonly string[] = SELECTED_TEMPLATES;
