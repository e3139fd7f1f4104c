// The CLIP zero-shot safety check of an image: its unit embedding against text prompts for unsafe
// categories (nudity, gore, violence, ...) and for ordinary safe content, a softmax over every
// prompt, and the probability mass on the unsafe ones as the score. Scoring is pure
// (`scoreSafety`); `SafetyChecker` embeds the prompts once (cached like label sets) and scores.

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { abortable } from '../../shared/cancel.js';
import { BadInputError } from '../../shared/errors.js';
import type { Safety } from '../../shared/jobs.js';
import type { LabelEmbeddings } from './label-embeddings.js';
import { softmax } from './zero-shot.js';

/** Unsafe categories with their prompts, and the prompts of safe, ordinary images. */
export interface SafetyPrompts {
  readonly categories: Readonly<Record<string, readonly string[]>>;
  readonly safe: readonly string[];
}

/**
 * In the manner of clip-retrieval's violence filter (prompt embeddings compared with the image's)
 * and LAION's CLIP-based NSFW work, several prompts per unsafe category. The safe side is broad on
 * purpose and outnumbers the unsafe prompts: an ordinary image (food, a screenshot, a pet) must find
 * a safe prompt near it, or the softmax hands its mass to whichever unsafe prompt is least far. With
 * 24 safe against 18 unsafe prompts, an image the model cannot tell apart (random weights) scores
 * about 0.43, under the default threshold.
 */
export const DEFAULT_SAFETY_PROMPTS = {
  categories: {
    nudity: [
      'a photo of a naked person',
      'explicit nudity',
      'a pornographic image',
      'sexually explicit content',
      'a nude body with exposed genitals',
      'a topless person',
    ],
    gore: [
      'a photo of gore and blood',
      'a mutilated body',
      'a bloody open wound',
      'a dead body, a corpse',
      'a graphic injury with exposed flesh',
      'a severed limb',
    ],
    violence: [
      'people fighting violently',
      'a person being attacked with a weapon',
      'a person pointing a gun at someone',
      'a violent assault',
      'a shooting or a stabbing',
      'a riot with people beating each other',
    ],
  },
  safe: [
    'a photo of a person',
    'a portrait of a clothed person',
    'a group of people smiling',
    'people playing sports',
    'a photo of an animal',
    'a pet cat or dog',
    'a landscape',
    'a city street',
    'a building',
    'food on a plate',
    'a drawing',
    'a painting',
    'abstract art',
    'a colorful pattern',
    'a screenshot',
    'a document with text',
    'a meme',
    'a diagram or a chart',
    'a car',
    'plants and flowers',
    'an everyday object',
    'a blurry photo',
    'a movie poster',
    'a video game screenshot',
  ],
} as const satisfies SafetyPrompts;

const PROMPT_CHARS = 200;
const MAX_PROMPTS = 500;

const promptList = z.array(z.string().trim().min(1).max(PROMPT_CHARS)).min(1);

/** The JSON of SAFETY_PROMPTS_FILE: `{ "categories": { "nudity": [...], ... }, "safe": [...] }`. */
export const safetyPromptsSchema = z
  .strictObject({
    categories: z
      .record(z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'a category is letters, digits, _ or -'), promptList)
      .refine((c) => Object.keys(c).length > 0, 'give at least one unsafe category'),
    safe: promptList,
  })
  .superRefine((p, ctx) => {
    const all = [...Object.values(p.categories).flat(), ...p.safe];
    if (all.length > MAX_PROMPTS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_PROMPTS} prompts` });
    // One prompt on both sides would split its own probability between safe and unsafe.
    const seen = new Set<string>();
    for (const prompt of all) {
      const key = prompt.toLowerCase();
      if (seen.has(key)) ctx.addIssue({ code: 'custom', message: `the prompt "${prompt}" appears twice` });
      seen.add(key);
    }
  });

/** Validates prompts from JSON; `bad_input` naming the first few problems. */
export function parseSafetyPrompts(json: unknown): SafetyPrompts {
  const parsed = safetyPromptsSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  throw new BadInputError(`invalid safety prompts: ${issues.join('; ')}`, { issues });
}

/** Reads and validates a SAFETY_PROMPTS_FILE. */
export async function readSafetyPromptsFile(path: string): Promise<SafetyPrompts> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new BadInputError(`cannot read the safety prompts file ${path}: ${(error as Error).message}`, {
      path,
    });
  }
  try {
    return parseSafetyPrompts(json);
  } catch (error) {
    throw new BadInputError(`${path}: ${(error as Error).message}`, { path });
  }
}

/** The prompts as one list, each row's owner: its category's index, or -1 for a safe prompt. */
export interface SafetyPromptRows {
  readonly texts: readonly string[];
  readonly owners: readonly number[];
  readonly categories: readonly string[];
}

export function safetyPromptRows(prompts: SafetyPrompts): SafetyPromptRows {
  const categories = Object.keys(prompts.categories);
  const texts: string[] = [];
  const owners: number[] = [];
  categories.forEach((name, c) => {
    for (const text of prompts.categories[name]!) {
      texts.push(text);
      owners.push(c);
    }
  });
  for (const text of prompts.safe) {
    texts.push(text);
    owners.push(-1);
  }
  return { texts, owners, categories };
}

/** Prompt rows with their unit text embeddings [rows, dim]. */
export interface SafetyPromptEmbeddings extends SafetyPromptRows {
  readonly dim: number;
  readonly embeds: Float32Array;
}

export interface SafetyScoring {
  /** exp(logit_scale) of the CLIP model: 100 for the released ones. */
  readonly logitScale: number;
  /** Flagged when the unsafe mass is above this. */
  readonly threshold: number;
}

/**
 * The safety of one image embedding (normalised here): softmax over every prompt of
 * logitScale * cosine, `score` the mass on unsafe prompts, `category` the unsafe category with the
 * most mass (reported whether or not it is flagged), `flagged` when the score is above the threshold.
 */
export function scoreSafety(
  imageEmbedding: ArrayLike<number>,
  prompts: SafetyPromptEmbeddings,
  scoring: SafetyScoring,
): Safety {
  const { dim, embeds, owners, categories } = prompts;
  if (imageEmbedding.length !== dim) {
    throw new RangeError(`an image embedding of ${imageEmbedding.length} values for prompts of ${dim}`);
  }
  if (embeds.length !== owners.length * dim) {
    throw new RangeError(`${embeds.length / dim} prompt embeddings for ${owners.length} prompts`);
  }
  let ss = 0;
  for (let k = 0; k < dim; k++) ss += imageEmbedding[k]! * imageEmbedding[k]!;
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  const logits = new Float64Array(owners.length);
  for (let p = 0; p < owners.length; p++) {
    let dot = 0;
    for (let k = 0; k < dim; k++) dot += imageEmbedding[k]! * embeds[p * dim + k]!;
    logits[p] = scoring.logitScale * dot * inv;
  }
  const probs = softmax(logits);
  const mass = new Float64Array(categories.length);
  let score = 0;
  probs.forEach((prob, p) => {
    const owner = owners[p]!;
    if (owner < 0) return;
    mass[owner]! += prob;
    score += prob;
  });
  let best = 0;
  for (let c = 1; c < mass.length; c++) if (mass[c]! > mass[best]!) best = c;
  score = Math.min(1, Math.max(0, score));
  return {
    flagged: score > scoring.threshold,
    score,
    ...(categories.length === 0 ? {} : { category: categories[best]! }),
  };
}

/** What embeds the prompts: the Classifier (label-set embeddings, cached in memory and on disk). */
export interface SafetyPromptSource {
  readonly encoders: { readonly dim: number; readonly logitScale: number };
  labelEmbeddings(
    labels: readonly string[],
    templates: readonly string[],
    signal?: AbortSignal,
  ): Promise<LabelEmbeddings>;
}

export interface SafetyCheckerOptions {
  /** @defaultValue DEFAULT_SAFETY_PROMPTS */
  readonly prompts?: SafetyPrompts;
  /** Flagged above this unsafe probability mass (SAFETY_THRESHOLD). @defaultValue 0.5 */
  readonly threshold?: number;
  /** The softmax temperature's inverse. @defaultValue the model's exp(logit_scale) */
  readonly logitScale?: number;
}

export const DefaultSafetyCheckerOptions = {
  prompts: DEFAULT_SAFETY_PROMPTS,
  threshold: 0.5,
} as const satisfies SafetyCheckerOptions;

/** The prompt template that makes every prompt its own "label": the prompts are used verbatim. */
const VERBATIM = ['{}'] as const;

export class SafetyChecker {
  readonly threshold: number;
  readonly logitScale: number;
  readonly rows: SafetyPromptRows;
  readonly #source: SafetyPromptSource;
  #embeddings: Promise<SafetyPromptEmbeddings> | undefined;

  constructor(source: SafetyPromptSource, options: SafetyCheckerOptions = {}) {
    const o = { ...DefaultSafetyCheckerOptions, ...options };
    if (!(o.threshold >= 0 && o.threshold <= 1))
      throw new RangeError(`threshold must be in [0, 1], got ${o.threshold}`);
    this.logitScale = o.logitScale ?? source.encoders.logitScale;
    if (!(this.logitScale > 0 && Number.isFinite(this.logitScale)))
      throw new RangeError(`logitScale must be positive, got ${this.logitScale}`);
    this.threshold = o.threshold;
    this.rows = safetyPromptRows(parseSafetyPrompts(o.prompts));
    this.#source = source;
  }

  /**
   * The prompts' embeddings, computed once per checker (and cached on disk with the label sets, so
   * a restart reads them back). Concurrent callers share one computation; a failed one is retried.
   */
  promptEmbeddings(signal?: AbortSignal): Promise<SafetyPromptEmbeddings> {
    if (!this.#embeddings) {
      const created = this.#source.labelEmbeddings(this.rows.texts, VERBATIM).then((set) => ({
        ...this.rows,
        dim: set.dim,
        embeds: set.embeds,
      }));
      created.catch(() => {
        if (this.#embeddings === created) this.#embeddings = undefined;
      });
      this.#embeddings = created;
    }
    return abortable(this.#embeddings, signal);
  }

  /** The safety of one image, from its CLIP embedding. */
  async check(imageEmbedding: ArrayLike<number>, signal?: AbortSignal): Promise<Safety> {
    const prompts = await this.promptEmbeddings(signal);
    return scoreSafety(imageEmbedding, prompts, { logitScale: this.logitScale, threshold: this.threshold });
  }
}
