// Generation-step benchmark of the tiny random models (the offline demo's and the tests' models: the
// `tiny` preset of models/random.ts, drawn in memory with the seed the demo writes): ms per step of the
// real generation loop at 64, 128 and 256 px with the default preset's cutouts, beside the goal of
// issue 15 (<= 50 ms at 128 px on 2 cores), and what the step session alone costs.
import { generate } from '../src/worker/generate/loop.js';
import { PRESETS } from '../src/worker/generate/presets.js';
import { Rng } from '../src/worker/generate/rng.js';
import { type GenerationModels, StepGraphCache } from '../src/worker/generate/step-graph.js';
import {
  type ClipConfig,
  clipParameterShapes,
  countParameters,
  parseClipConfig,
  vqganParameterShapes,
} from '../src/worker/models/config.js';
import { randomPresetConfigs } from '../src/worker/models/random.js';
import { type Measured, measureConfig, RandomWeights } from './generate.js';
import { type BenchModule, type BenchResult, gflops, percentile, type Row } from './lib.js';

/** A default /imagine: the `normal` CPU preset. */
const DEFAULT_PRESET = PRESETS.cpu.normal;

/** Goal: one step at 128x128 with the default preset's cutouts, on 2 cores. */
export const TINY_STEP_GOAL = { size: 128, ms: 50 } as const;

interface Options {
  threads: number;
  /** Timed loop steps (and timed session runs) per size. */
  steps: number;
  warmup: number;
  sizes: number[];
  cutouts: number;
  /** CLIP input side / patch of the comparison row at the goal's size ("" for none). */
  compareClip: string;
}

const DEFAULTS: Omit<Options, 'sizes'> & { sizes: string } = {
  threads: 2,
  steps: 20,
  warmup: 3,
  sizes: '64,128,256',
  cutouts: DEFAULT_PRESET.cutouts,
  // ViT-B/32's input: what the tiny CLIP's cutouts would cost at the real size.
  compareClip: '224/32',
};

function parseArgs(args: readonly string[]): Options {
  const o = { ...DEFAULTS };
  for (const a of args) {
    const m = /^--(threads|steps|warmup|sizes|cutouts|compare-clip)=(.*)$/.exec(a);
    if (!m) continue;
    if (m[1] === 'sizes') o.sizes = m[2]!;
    else if (m[1] === 'compare-clip') o.compareClip = m[2]!;
    else o[m[1] as 'threads' | 'steps' | 'warmup' | 'cutouts'] = Number(m[2]);
  }
  const sizes = o.sizes.split(',').map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s <= 0)) throw new Error(`--sizes: "${o.sizes}"`);
  if (o.compareClip !== '' && !/^\d+\/\d+$/.test(o.compareClip))
    throw new Error(`--compare-clip: "${o.compareClip}" is not SIZE/PATCH`);
  return { ...o, sizes };
}

function modelsWith(clipConfig: ClipConfig): GenerationModels {
  const { vqgan } = randomPresetConfigs('tiny');
  return {
    clip: { config: clipConfig, weights: new RandomWeights('clip', clipParameterShapes(clipConfig), 0) },
    vqgan: { config: vqgan, weights: new RandomWeights('vqgan', vqganParameterShapes(vqgan), 0) },
  };
}

interface LoopTiming {
  /** Median and p90 of the intervals between step events after the warm-up steps. */
  readonly medianMs: number;
  readonly p90Ms: number;
  /** Setup (graph build or cache hit, prompt embedding) and the final evaluation. */
  readonly setupMs: number;
  readonly finishMs: number;
}

/** The generation loop as a worker runs it (previews, timelapse frames, feeds made beside ORT). */
async function measureLoop(models: GenerationModels, size: number, o: Options): Promise<LoopTiming> {
  const dim = models.clip.config.projection_dim;
  const deps = {
    ...models,
    // Any unit vector will do: the step's cost does not depend on the prompt's meaning.
    embedTexts: async (texts: readonly string[]) =>
      texts.map((t) => new Rng(3, 'prompt', t).fillNormal(new Float32Array(dim))),
  };
  const cache = new StepGraphCache({ session: { intraOpThreads: o.threads } });
  const times: number[] = [];
  let setupMs = 0;
  let finishMs = 0;
  try {
    const request = {
      prompt: 'a red bicycle',
      seed: 1,
      preset: 'normal',
      width: size,
      height: size,
      cutouts: o.cutouts,
      steps: o.warmup + o.steps + 1,
    } as const;
    for await (const event of generate(request, deps, { cache })) {
      if (event.type === 'step') times.push(event.elapsedMs);
      else if (event.type === 'done') {
        setupMs = event.result.timings.setupMs;
        finishMs = event.result.timings.finishMs;
      }
    }
  } finally {
    await cache.clear();
  }
  const intervals = times
    .slice(o.warmup)
    .map((t, i, a) => (i === 0 ? Number.NaN : t - a[i - 1]!))
    .slice(1)
    .sort((a, b) => a - b);
  return { medianMs: percentile(intervals, 50), p90Ms: percentile(intervals, 90), setupMs, finishMs };
}

interface SizeResult {
  readonly label: string;
  readonly size: number;
  readonly loop: LoopTiming;
  /** The step session alone with ORT's memory arena off (what full-size step graphs run with). */
  readonly session: Measured;
  /** The same with ORT's memory arena and memory-pattern planner on (what the tiny graphs run with). */
  readonly sessionArena: Measured;
}

async function measureSize(label: string, models: GenerationModels, size: number, o: Options) {
  const loop = await measureLoop(models, size, o);
  const session = await measureConfig(models, size, o.cutouts, { ...o, session: { memoryArena: false } });
  const sessionArena = await measureConfig(models, size, o.cutouts, { ...o, session: { memoryArena: true } });
  return { label, size, loop, session, sessionArena } satisfies SizeResult;
}

export const tinyStepBench: BenchModule = {
  name: 'tiny-step',
  description: 'VQGAN+CLIP step with the tiny random models (demo and tests), ORT CPU: ms/step vs the goal',
  async run(args): Promise<BenchResult> {
    const o = parseArgs(args);
    const configs = randomPresetConfigs('tiny');
    const models = modelsWith(configs.clip);
    const results: SizeResult[] = [];
    for (const size of o.sizes) results.push(await measureSize(`${size}x${size}`, models, size, o));
    if (o.compareClip !== '') {
      const [image, patch] = o.compareClip.split('/').map(Number) as [number, number];
      const clip = parseClipConfig({
        ...configs.clip,
        vision_config: { ...configs.clip.vision_config, image_size: image, patch_size: patch },
      });
      const { size } = TINY_STEP_GOAL;
      results.push(
        await measureSize(`${size}x${size}, CLIP at ${image}/${patch}`, modelsWith(clip), size, o),
      );
    }

    const isGoalRow = (r: SizeResult) =>
      r.label === `${TINY_STEP_GOAL.size}x${TINY_STEP_GOAL.size}` && o.cutouts === DEFAULT_PRESET.cutouts;
    const rows: Row[] = results.map((r) => {
      const goal = isGoalRow(r);
      return {
        name: `${r.label}, ${o.cutouts} cutouts`,
        cells: {
          'loop ms/step': r.loop.medianMs,
          'p90 ms': r.loop.p90Ms,
          goal: goal ? `<= ${TINY_STEP_GOAL.ms} ms` : '',
          status: goal ? (r.loop.medianMs <= TINY_STEP_GOAL.ms ? 'met' : 'NOT met') : '',
          // A default /imagine: the preset's steps and the final evaluation, plus setup.
          [`${DEFAULT_PRESET.steps} steps s`]:
            ((DEFAULT_PRESET.steps + 1) * r.loop.medianMs + r.loop.setupMs) / 1000,
          'session ms': r.session.run.medianMs,
          'arena ms': r.sessionArena.run.medianMs,
          'feeds ms': r.session.prepMs,
          GFLOP: r.session.gflop,
          'GFLOP/s': gflops(r.session.gflop * 1e9, r.sessionArena.run.medianMs),
          'setup s': r.loop.setupMs / 1000,
          'peak RSS MB': r.sessionArena.peakRssMb,
        },
      };
    });
    const clipParams = countParameters(clipParameterShapes(configs.clip));
    const vqganParams = countParameters(vqganParameterShapes(configs.vqgan));
    const dd = configs.vqgan.ddconfig;
    const v = configs.clip.vision_config;
    const t = configs.clip.text_config;
    const notes = [
      `Goal (issue 15): <= ${TINY_STEP_GOAL.ms} ms a step at ${TINY_STEP_GOAL.size}x${TINY_STEP_GOAL.size} with the default preset's ${DEFAULT_PRESET.cutouts} cutouts on 2 cores, read from "loop ms/step".`,
      `loop ms/step: median interval between step events of generate() (the worker's loop: previews every 10 steps, timelapse frames, next feeds made while ORT runs), ${o.warmup} warm-up steps then ${o.steps} timed, intraOpNumThreads ${o.threads}.`,
      'session ms: the step session alone with ORT memory arena off (what full-size step graphs run with, for peak memory); arena ms: the same with the arena and memory-pattern planner on (what StepSession chooses for graphs whose outputs add up to <= 2 GiB, the tiny ones among them, so the loop runs with it); feeds ms: cutout matrices and noise in JS per step (not counted in either). GFLOP counts Conv/ConvTranspose/MatMul nodes, forward and backward; GFLOP/s from arena ms.',
      `Tiny VQGAN: ch ${dd.ch}, ch_mult [${dd.ch_mult}], ${dd.num_res_blocks} res block(s) a level, attention at ${dd.attn_resolutions} of resolution ${dd.resolution} (downsampling ${2 ** (dd.ch_mult.length - 1)}), z ${dd.z_channels}, codebook ${configs.vqgan.n_embed} x ${configs.vqgan.embed_dim}: ${vqganParams.toLocaleString('en')} parameters.`,
      `Tiny CLIP: image ${v.image_size} px in ${v.patch_size} px patches, width ${v.hidden_size}, ${v.num_hidden_layers} layers; text width ${t.hidden_size}, ${t.num_hidden_layers} layers; projection ${configs.clip.projection_dim}: ${clipParams.toLocaleString('en')} parameters.`,
    ];
    return {
      tables: [{ title: 'tiny step time', rows }],
      notes,
      details: { options: o, clipParams, vqganParams, clip: configs.clip, vqgan: configs.vqgan, results },
    };
  },
};
