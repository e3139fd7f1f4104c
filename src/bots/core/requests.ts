// Requests from loose input: what a person typed or clicked (Discord options, Slack text with
// `--flags`, the playground's form) becomes a validated imagine / classify / search job, with the same
// checks and the same sentences on every surface. Pure apart from the seed, which is drawn here when
// absent so that it can be shown before the job runs (and re-rolled).
import { randomInt } from 'node:crypto';
import { BadInputError } from '../../shared/errors.js';
import {
  type ChannelScope,
  type ClassifyJob,
  checkJob,
  classifyJobSchema,
  type Drawer,
  drawers,
  type ImagineJob,
  imagineJobSchema,
  jobLimits,
  type Origin,
  type Preset,
  presets,
  type SearchJob,
  searchJobSchema,
} from '../../shared/jobs.js';
import { hasVisibleText, parsePrompt } from '../../shared/prompt.js';
import { imagineFlags, imagineOptions, parseFlags, searchFlags, whatisFlags } from './flags.js';

/** Loose values as platforms deliver them: numbers may come as strings, absent ones as null. */
type Loose<T> = T | string | null | undefined;

export interface ImagineInput {
  prompt: string;
  preset?: Loose<string>;
  steps?: Loose<number>;
  /** One side (`256`: square), `WxH` (`256x192`), or `{ width, height }`. */
  size?: Loose<number> | { width?: Loose<number>; height?: Loose<number> };
  seed?: Loose<number>;
  cutouts?: Loose<number>;
  /** Blob keys of images already ingested. */
  initImage?: string | undefined;
  imagePrompts?: readonly string[] | undefined;
  from?: ImagineJob['from'] | undefined;
  /** `vqgan-clip` (the default) or `dalle`. */
  drawer?: Loose<string>;
  /** DALL-E only: samples decoded together, CLIP keeps the best. */
  candidates?: Loose<number>;
}

export interface RequestDefaults {
  /** A workspace's default preset, used when the person names none. */
  preset?: Preset | undefined;
}

/**
 * Builds an imagine job. Throws a CodedError (bad_input with details.reason and the option named, or
 * prompt_too_long) whose sentence render.ts knows: every adapter shows the same words.
 */
export function imagineRequest(
  input: ImagineInput,
  origin: Origin,
  defaults: RequestDefaults = {},
  drawSeed: () => number = () => randomInt(0, 2 ** 32 - 1),
): ImagineJob {
  // A prompt of only spaces or invisible characters: "The prompt is empty.", not the schema's words.
  if (!hasVisibleText(input.prompt)) parsePrompt(input.prompt);
  // Every problem at once: a person fixing one option should not meet the next only on a retry.
  const problems = new Problems();
  const preset = problems.check(() => optionalPreset(input.preset)) ?? defaults.preset;
  const steps = problems.check(() => optionalInt('steps', input.steps, 1, jobLimits.maxSteps));
  const cutouts = problems.check(() => optionalInt('cutouts', input.cutouts, 1, jobLimits.maxCutouts));
  const seed = problems.check(() => optionalInt('seed', input.seed, 0, 2 ** 32 - 1)) ?? drawSeed();
  const size = problems.check(() => parseSize(input.size));
  const drawer = problems.check(() => optionalDrawer(input.drawer));
  const candidates = problems.check(() =>
    optionalInt('candidates', input.candidates, 1, jobLimits.maxCandidates),
  );
  problems.check(() =>
    checkDrawerOptions(drawer ?? 'vqgan-clip', {
      steps,
      cutouts,
      size,
      candidates,
      initImage: input.initImage,
      imagePrompts: input.imagePrompts?.length ? input.imagePrompts : undefined,
      from: input.from,
    }),
  );
  const job = problems.checkJob(imagineJobSchema, {
    prompt: input.prompt,
    seed,
    ...(preset === undefined ? {} : { preset }),
    ...(steps === undefined ? {} : { steps }),
    ...(cutouts === undefined ? {} : { cutouts }),
    ...(size === undefined ? {} : { size }),
    ...(input.initImage === undefined ? {} : { initImage: input.initImage }),
    ...(input.imagePrompts === undefined || input.imagePrompts.length === 0
      ? {}
      : { imagePrompts: [...input.imagePrompts] }),
    ...(input.from === undefined ? {} : { from: input.from }),
    ...(drawer === undefined || drawer === 'vqgan-clip' ? {} : { drawer }),
    ...(candidates === undefined ? {} : { candidates }),
    origin,
  });
  problems.throwIfAny();
  if (!job) throw new BadInputError('That request is not valid.');
  // Syntax errors now, not after a wait in the queue.
  parsePrompt(job.prompt);
  return job;
}

/**
 * `/imagine a watercolor teacher --preset draft --seed 3` as Slack (or a Discord prompt string)
 * delivers it: the flags are taken out of the text (flags.ts), the rest is the prompt. Options given
 * apart (`extra`, e.g. Discord's own fields) win over nothing but are refused when both name one.
 */
export function imagineFromText(
  text: string,
  origin: Origin,
  extra: Omit<ImagineInput, 'prompt'> = {},
  defaults: RequestDefaults = {},
  drawSeed?: () => number,
): ImagineJob {
  const { rest, flags } = parseFlags(text, imagineFlags);
  const options = imagineOptions(flags);
  for (const name of Object.keys(options) as (keyof typeof options)[]) {
    const given = extra[name];
    if (given !== undefined && given !== null && given !== '') {
      throw new BadInputError(`${name} is given twice`, { reason: 'repeated_flag', flag: `--${name}` });
    }
  }
  return imagineRequest({ ...extra, ...options, prompt: rest }, origin, defaults, drawSeed);
}

/** `/whatis cat, dog --k 3`: labels and flags from one text. */
export function whatisFromText(text: string, image: string, origin: Origin): ClassifyJob {
  const { rest, flags } = parseFlags(text, whatisFlags);
  return whatisRequest({ image, labels: rest, topK: flags.k }, origin);
}

/** `/imagesearch a red bicycle --k 5`. */
export function searchFromText(text: string, scope: ChannelScope, origin: Origin): SearchJob {
  const { rest, flags } = parseFlags(text, searchFlags);
  return searchRequest({ query: rest, k: flags.k }, scope, origin);
}

export interface WhatisInput {
  /** Blob key of the ingested image. */
  image: string;
  /** `cat, dog, human` or a list; absent or empty: the default vocabulary. */
  labels?: string | readonly string[] | null | undefined;
  topK?: Loose<number>;
}

export function whatisRequest(input: WhatisInput, origin: Origin): ClassifyJob {
  const labels = parseLabels(input.labels);
  const topK = optionalInt('topK', input.topK, 1, jobLimits.maxTopK) ?? 5;
  return checkJob(classifyJobSchema, {
    image: input.image,
    topK,
    ...(labels.length === 0 ? {} : { labels }),
    origin,
  });
}

/** Comma-separated labels, trimmed, empty ones and repeats dropped (first spelling kept). */
export function parseLabels(labels: string | readonly string[] | null | undefined): string[] {
  if (labels === null || labels === undefined) return [];
  const list = typeof labels === 'string' ? labels.split(',') : labels;
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of list) {
    const label = raw.trim().replace(/\s+/g, ' ');
    if (label.length === 0 || seen.has(label.toLowerCase())) continue;
    seen.add(label.toLowerCase());
    out.push(label);
  }
  if (out.length > jobLimits.labels) {
    throw new BadInputError(`at most ${jobLimits.labels} labels`, {
      reason: 'too_many_labels',
      max: jobLimits.labels,
    });
  }
  const long = out.find((l) => l.length > jobLimits.labelChars);
  if (long !== undefined) {
    throw new BadInputError(`a label is longer than ${jobLimits.labelChars} characters`, {
      issues: [
        {
          path: 'labels',
          message: `"${long.slice(0, 30)}…" is longer than ${jobLimits.labelChars} characters`,
        },
      ],
    });
  }
  return out;
}

export interface SearchInput {
  query?: string | null | undefined;
  /** Blob key of an example image (search by image, Find similar). */
  image?: string | undefined;
  k?: Loose<number>;
  includeFlagged?: boolean | undefined;
}

export function searchRequest(input: SearchInput, scope: ChannelScope, origin: Origin): SearchJob {
  const query = input.query?.trim();
  const k = optionalInt('k', input.k, 1, jobLimits.maxSearchK) ?? 10;
  if ((query === undefined || query === '') && input.image === undefined) {
    throw new BadInputError('a search needs words or an image', { reason: 'empty_search' });
  }
  return checkJob(searchJobSchema, {
    ...(query ? { query } : {}),
    ...(input.image === undefined ? {} : { image: input.image }),
    ...scope,
    k,
    ...(input.includeFlagged ? { includeFlagged: true } : {}),
    origin,
  });
}

type Issue = { path: string; message: string };

/** Collects the issues of several checks into one BadInputError (prompt_too_long passes through). */
class Problems {
  readonly #issues: Issue[] = [];

  check<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (error) {
      this.#absorb(error);
      return undefined;
    }
  }

  checkJob<S extends Parameters<typeof checkJob>[0]>(
    schema: S,
    data: unknown,
  ): ReturnType<typeof checkJob<S>> | undefined {
    // Fields already refused above are left out of `data`, so the schema does not report them twice.
    return this.check(() => checkJob(schema, data));
  }

  throwIfAny(): void {
    if (this.#issues.length === 0) return;
    const text = this.#issues.map((i) => `${i.path}: ${i.message}`).join('; ');
    throw new BadInputError(`invalid request: ${text}`, { issues: this.#issues });
  }

  #absorb(error: unknown): void {
    const coded = error as { code?: string; details?: { issues?: unknown } };
    if (coded?.code !== 'bad_input' || !Array.isArray(coded.details?.issues)) throw error;
    this.#issues.push(...(coded.details.issues as Issue[]));
  }
}

function optionalPreset(value: Loose<string>): Preset | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const v = value.trim().toLowerCase();
  if ((presets as readonly string[]).includes(v)) return v as Preset;
  throw new BadInputError(`unknown preset ${value}`, {
    issues: [{ path: 'preset', message: `must be one of ${presets.join(', ')}` }],
  });
}

function optionalDrawer(value: Loose<string>): Drawer | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const v = value.trim().toLowerCase();
  if ((drawers as readonly string[]).includes(v)) return v as Drawer;
  throw new BadInputError(`unknown drawer ${value}`, {
    issues: [{ path: 'drawer', message: `must be one of ${drawers.join(', ')}` }],
  });
}

/**
 * Options of one drawer only: DALL-E writes a fixed-size image from the prompt alone (no steps,
 * cutouts, size, init or image prompts: Refine adds VQGAN+CLIP steps afterwards); candidates are
 * DALL-E's.
 */
function checkDrawerOptions(drawer: Drawer, given: Record<string, unknown>): void {
  const names =
    drawer === 'dalle' ? ['steps', 'cutouts', 'size', 'initImage', 'imagePrompts', 'from'] : ['candidates'];
  const other = drawer === 'dalle' ? 'vqgan-clip' : 'dalle';
  const issues = names
    .filter((n) => given[n] !== undefined)
    .map((n) => ({ path: n, message: `works only with the ${other} drawer` }));
  if (issues.length > 0) throw new BadInputError(`options of the ${other} drawer`, { issues });
}

function optionalInt(name: string, value: Loose<number>, min: number, max: number): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : Number(value.trim());
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new BadInputError(`${name} must be a whole number from ${min} to ${max}`, {
      issues: [{ path: name, message: `must be a whole number from ${min} to ${max}` }],
    });
  }
  return n;
}

/** `256`, `256x192`, `256×192`, or an object; sides are checked by the job schema (multiples of 16). */
export function parseSize(size: ImagineInput['size']): { width: number; height: number } | undefined {
  if (size === null || size === undefined || size === '') return undefined;
  if (typeof size === 'object') {
    const width = optionalInt('width', size.width, 1, 100_000);
    const height = optionalInt('height', size.height, 1, 100_000);
    if (width === undefined && height === undefined) return undefined;
    return { width: width ?? height!, height: height ?? width! };
  }
  if (typeof size === 'number') return { width: size, height: size };
  const m = /^\s*(\d{1,5})\s*(?:[x×*]\s*(\d{1,5}))?\s*$/i.exec(size);
  if (!m) {
    throw new BadInputError(`size ${size} is not WIDTHxHEIGHT`, {
      issues: [{ path: 'size', message: 'write one side (256) or WIDTHxHEIGHT (256x192)' }],
    });
  }
  const width = Number(m[1]);
  return { width, height: m[2] === undefined ? width : Number(m[2]) };
}
