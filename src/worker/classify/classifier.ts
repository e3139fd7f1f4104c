// Zero-shot image classification with CLIP: image bytes -> preprocessing -> image tower (N images in
// one session run) -> cosine against label text embeddings (cached per label set) -> softmax ->
// top-k. Labels are the default vocabulary or the user's ("cat, dog, human").

import { join } from 'node:path';
import { abortable } from '../../shared/cancel.js';
import { BadInputError, CodedError } from '../../shared/errors.js';
import type { ImageLimits } from '../../shared/image/decode.js';
import { type ClipConfig, loadModelConfig } from '../models/config.js';
import type { WeightSource } from '../models/params.js';
import { ClipTokenizer } from '../models/tokenizer.js';
import { Weights } from '../models/weights.js';
import { ClipEncoders, type ClipEncodersOptions } from './clip-encoders.js';
import { embedLabelSet, type LabelEmbeddings, modelFingerprint } from './label-embeddings.js';
import { preprocessImages } from './preprocess.js';
import { CUSTOM_LABEL_TEMPLATES, DEFAULT_LABELS, DEFAULT_TEMPLATES, labelKey } from './vocabulary.js';
import { classifyEmbeddings, normalizeRows, type Prediction } from './zero-shot.js';

export type { Prediction } from './zero-shot.js';

export interface ClassifierOptions {
  /** Directory for cached label-set embeddings. @defaultValue undefined (memory only) */
  readonly cacheDir?: string;
  /** Predictions per image when the caller does not say. @defaultValue 5 */
  readonly topK?: number;
  /** Largest topK a caller may ask for. @defaultValue 20 */
  readonly maxTopK?: number;
  /** Most custom labels per request. @defaultValue 100 */
  readonly maxLabels?: number;
  /** Longest custom label, in characters. @defaultValue 100 */
  readonly maxLabelLength?: number;
  /** Most custom templates per request. @defaultValue 80 */
  readonly maxTemplates?: number;
  /** Longest custom template, in characters. @defaultValue 200 */
  readonly maxTemplateLength?: number;
  /** Label sets whose embeddings stay in memory. @defaultValue 16 */
  readonly maxCachedLabelSets?: number;
  /** @defaultValue DEFAULT_LABELS (ImageNet + everyday labels) */
  readonly defaultLabels?: readonly string[];
  /** @defaultValue DEFAULT_TEMPLATES (CLIP's 80) */
  readonly defaultTemplates?: readonly string[];
  /** Templates for custom labels when none are given. @defaultValue CUSTOM_LABEL_TEMPLATES (CLIP's 7 selected) */
  readonly customLabelTemplates?: readonly string[];
  /** Byte and pixel caps on input images. @defaultValue DefaultImageLimits */
  readonly imageLimits?: ImageLimits;
  /** Session batching and options. @defaultValue DefaultClipEncodersOptions */
  readonly encoders?: ClipEncodersOptions;
}

export const DefaultClassifierOptions = {
  topK: 5,
  maxTopK: 20,
  maxLabels: 100,
  maxLabelLength: 100,
  maxTemplates: 80,
  maxTemplateLength: 200,
  maxCachedLabelSets: 16,
} as const;

export interface ClassifyOptions {
  /** Custom labels: "cat, dog, human" or a list. @defaultValue the default vocabulary */
  readonly labels?: string | readonly string[];
  /** Templates with "{}" for the label; ["{}"] uses the labels verbatim as prompts. */
  readonly templates?: readonly string[];
  /** @defaultValue ClassifierOptions.topK */
  readonly topK?: number;
  readonly signal?: AbortSignal;
}

export interface Classification {
  /** Most probable first; probabilities are over the whole label set. */
  readonly predictions: readonly Prediction[];
}

/** The parts a Classifier needs; `Classifier.load` makes them from a model folder. */
export interface ClipModel {
  readonly config: ClipConfig;
  readonly weights: WeightSource;
  readonly tokenizer: ClipTokenizer;
  /** Identifies weights + config + tokenizer in cache keys (`modelFingerprint`). */
  readonly modelKey: string;
}

/** Splits "cat, dog,  human" (commas or new lines), trims, drops empties and repeats (case-insensitive). */
export function parseLabels(
  input: string | readonly string[],
  limits: { maxLabels: number; maxLabelLength: number } = DefaultClassifierOptions,
): string[] {
  const parts = typeof input === 'string' ? input.split(/[,\n]/) : [...input];
  const seen = new Set<string>();
  const labels: string[] = [];
  for (const part of parts) {
    const label = part.normalize('NFC').trim().replace(/\s+/g, ' ');
    if (label.length === 0) continue;
    if (label.length > limits.maxLabelLength) {
      throw new BadInputError(
        `the label "${label.slice(0, 40)}…" is longer than ${limits.maxLabelLength} characters`,
        {
          field: 'labels',
          maxLabelLength: limits.maxLabelLength,
        },
      );
    }
    const key = labelKey(label);
    if (seen.has(key)) continue;
    seen.add(key);
    labels.push(label);
  }
  if (labels.length < 2) {
    // One label always wins with 100%: there is nothing to choose between.
    throw new BadInputError(
      'give at least two different labels, separated by commas (e.g. "cat, dog, human")',
      {
        field: 'labels',
        count: labels.length,
      },
    );
  }
  if (labels.length > limits.maxLabels) {
    throw new BadInputError(`give at most ${limits.maxLabels} labels (got ${labels.length})`, {
      field: 'labels',
      count: labels.length,
      maxLabels: limits.maxLabels,
    });
  }
  return labels;
}

/** Checks templates: each has a "{}" for the label; trimmed, repeats dropped. */
export function parseTemplates(
  input: readonly string[],
  limits: { maxTemplates: number; maxTemplateLength: number } = DefaultClassifierOptions,
): string[] {
  const templates = [...new Set(input.map((t) => t.trim()).filter((t) => t.length > 0))];
  if (templates.length === 0) {
    throw new BadInputError('give at least one template, with {} where the label goes', {
      field: 'templates',
    });
  }
  if (templates.length > limits.maxTemplates) {
    throw new BadInputError(`give at most ${limits.maxTemplates} templates (got ${templates.length})`, {
      field: 'templates',
      maxTemplates: limits.maxTemplates,
    });
  }
  for (const t of templates) {
    if (!t.includes('{}')) {
      throw new BadInputError(`the template "${t.slice(0, 60)}" has no {} for the label`, {
        field: 'templates',
      });
    }
    if (t.length > limits.maxTemplateLength) {
      throw new BadInputError(`a template is longer than ${limits.maxTemplateLength} characters`, {
        field: 'templates',
      });
    }
  }
  return templates;
}

export class Classifier {
  readonly encoders: ClipEncoders;
  private readonly o: Required<Omit<ClassifierOptions, 'cacheDir' | 'imageLimits' | 'encoders'>> &
    Pick<ClassifierOptions, 'cacheDir' | 'imageLimits'>;
  /** Label sets in memory by key, in use order (a Map iterates in insertion order). */
  private readonly labelSets = new Map<string, Promise<LabelEmbeddings>>();
  private readonly onClose: (() => void) | undefined;

  constructor(
    readonly model: ClipModel,
    options: ClassifierOptions = {},
    /** Called by `close()`, e.g. to close a weights file the classifier opened. */
    onClose?: () => void,
  ) {
    this.o = {
      ...DefaultClassifierOptions,
      defaultLabels: DEFAULT_LABELS,
      defaultTemplates: DEFAULT_TEMPLATES,
      customLabelTemplates: CUSTOM_LABEL_TEMPLATES,
      ...stripUndefined(options),
    };
    this.encoders = new ClipEncoders(model.config, model.weights, model.tokenizer, options.encoders);
    this.onClose = onClose;
  }

  /** Loads a Hugging Face-layout CLIP folder: config.json, model.safetensors, tokenizer.json. */
  static async load(dir: string, options: ClassifierOptions = {}): Promise<Classifier> {
    const model = await loadModelConfig(dir);
    if (model.kind !== 'clip') throw new Error(`${dir} holds a ${model.kind} model, not CLIP`);
    const files = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => join(dir, f));
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    const modelKey = await modelFingerprint(files);
    const weights = Weights.fromFile(join(dir, 'model.safetensors'));
    return new Classifier({ config: model.config, weights, tokenizer, modelKey }, options, () =>
      weights.close(),
    );
  }

  /** Classifies one image (`Classification`) or several (`Classification[]`, one session run per batch). */
  classify(image: Uint8Array, options?: ClassifyOptions): Promise<Classification>;
  classify(images: readonly Uint8Array[], options?: ClassifyOptions): Promise<Classification[]>;
  async classify(
    input: Uint8Array | readonly Uint8Array[],
    options: ClassifyOptions = {},
  ): Promise<Classification | Classification[]> {
    const single = !Array.isArray(input);
    const images = single ? [input as Uint8Array] : (input as readonly Uint8Array[]);
    const { labels, templates } = this.labelSet(options);
    const topK = this.topKFor(options.topK, labels.length);
    if (images.length === 0) return [];
    // Text (often cached) and image work are independent: start both.
    const labelSet = this.labelEmbeddings(labels, templates, options.signal);
    labelSet.catch(() => {}); // awaited below; avoid an unhandled rejection if images fail first
    const imageEmbeds = await this.imageEmbeddings(images, options.signal);
    const set = await labelSet;
    const results = classifyEmbeddings(
      imageEmbeds,
      set.embeds,
      labels,
      this.encoders.dim,
      this.encoders.logitScale,
      topK,
    ).map((predictions) => ({ predictions }));
    return single ? results[0]! : results;
  }

  /** Unit image embeddings [N, dim], e.g. for the search index. */
  async embedImages(images: readonly Uint8Array[], signal?: AbortSignal): Promise<Float32Array> {
    return normalizeRows(await this.imageEmbeddings(images, signal), this.encoders.dim);
  }

  /** Unit text embeddings [N, dim] of prompts as given (no templates), e.g. for search queries. */
  async embedTexts(prompts: readonly string[], signal?: AbortSignal): Promise<Float32Array> {
    return normalizeRows(await this.encoders.encodeTexts(prompts, signal), this.encoders.dim);
  }

  /**
   * Embeddings of a label set (from memory, the disk cache, or the text tower). Concurrent calls
   * for the same set share one computation.
   */
  labelEmbeddings(
    labels: readonly string[],
    templates: readonly string[],
    signal?: AbortSignal,
  ): Promise<LabelEmbeddings> {
    const memKey = JSON.stringify([labels, templates]);
    let p = this.labelSets.get(memKey);
    if (p) {
      this.labelSets.delete(memKey); // re-insert: most recently used last
    } else {
      const options = {
        modelKey: this.model.modelKey,
        ...(this.o.cacheDir !== undefined ? { cacheDir: this.o.cacheDir } : {}),
      };
      // No signal here: the computation is shared (and cached), so one caller's cancel must not
      // fail the others; each caller stops waiting on its own signal instead.
      const created = embedLabelSet(this.encoders, labels, templates, options);
      created.catch(() => {
        if (this.labelSets.get(memKey) === created) this.labelSets.delete(memKey);
      });
      p = created;
    }
    this.labelSets.set(memKey, p);
    while (this.labelSets.size > this.o.maxCachedLabelSets) {
      this.labelSets.delete(this.labelSets.keys().next().value as string);
    }
    return abortable(p, signal);
  }

  /** Computes (or loads) the default vocabulary's embeddings now, so the first request is fast. */
  async warmup(): Promise<LabelEmbeddings> {
    return this.labelEmbeddings(this.o.defaultLabels, this.o.defaultTemplates);
  }

  async close(): Promise<void> {
    await this.encoders.release();
    this.onClose?.();
  }

  /**
   * The label set a request asks for: its labels (validated, deduplicated) with its templates or the
   * custom-label templates, else the default vocabulary (`defaultLabels`, `defaultTemplates`). The
   * one place that choice is made: classify() and the classify job both use it.
   */
  labelSet(options: {
    readonly labels?: ClassifyOptions['labels'] | undefined;
    readonly templates?: ClassifyOptions['templates'] | undefined;
  }): {
    labels: readonly string[];
    templates: readonly string[];
  } {
    const custom = options.labels !== undefined;
    const labels = custom ? parseLabels(options.labels!, this.o) : this.o.defaultLabels;
    let templates: readonly string[];
    if (options.templates !== undefined) templates = parseTemplates(options.templates, this.o);
    else templates = custom ? this.o.customLabelTemplates : this.o.defaultTemplates;
    return { labels, templates };
  }

  private topKFor(requested: number | undefined, labels: number): number {
    const k = requested ?? this.o.topK;
    if (!Number.isInteger(k) || k < 1 || k > this.o.maxTopK) {
      throw new BadInputError(`topK must be a whole number from 1 to ${this.o.maxTopK}`, { field: 'topK' });
    }
    return Math.min(k, labels);
  }

  private async imageEmbeddings(images: readonly Uint8Array[], signal?: AbortSignal): Promise<Float32Array> {
    signal?.throwIfAborted();
    const pixels = await preprocessImages(images, {
      size: this.encoders.imageSize,
      ...(this.o.imageLimits ? { limits: this.o.imageLimits } : {}),
    });
    signal?.throwIfAborted();
    try {
      return await this.encoders.encodeImages(pixels, images.length);
    } catch (err) {
      if (err instanceof CodedError) throw err;
      throw new CodedError('internal', 'the image encoder failed', { cause: err });
    }
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
