// Loads a worker's models once per process from MODELS_DIR (`clip/` in Hugging Face layout, `vqgan/`
// converted from taming): the classifier (CLIP towers for classify, embed-image and search), the
// generation models with their prompt embedders and step-session cache, and the execution provider
// the sessions actually run on (CUDA when asked for and present, else CPU).
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError, ModelMissingError } from '../../shared/errors.js';
import type { ImageLimits } from '../../shared/image/decode.js';
import { jobLimits } from '../../shared/jobs.js';
import { type Logger, silentLogger } from '../../shared/logger.js';
import { Classifier, type ClassifierOptions } from '../classify/classifier.js';
import type { ImagePrecision } from '../classify/clip-encoders.js';
import { readSafetyPromptsFile, SafetyChecker, type SafetyCheckerOptions } from '../classify/safety.js';
import { type LazyDalleDrawer, lazyDalleDrawer } from '../dalle/lazy-drawer.js';
import { ClipEmbedder } from '../generate/embed.js';
import type { GenerateDeps } from '../generate/loop.js';
import type { Device } from '../generate/presets.js';
import { StepGraphCache } from '../generate/step-graph.js';
import { Graph } from '../graph/graph.js';
import { identity } from '../graph/ops/elementwise.js';
import { serialize } from '../graph/serialize.js';
import { assertModelFolder } from '../models/check.js';
import { loadModelConfig, type VqganConfig } from '../models/config.js';
import { packIds } from '../models/tokenizer.js';
import { Weights } from '../models/weights.js';
import { ModelSession, type Provider, type SessionOptions } from '../onnx/session.js';
import { BatchedImageEncoder } from './image-encoder.js';

export interface LoadModelsOptions {
  /** Execution providers in order of preference; CPU is the fallback. @defaultValue ['cpu'] */
  providers?: readonly Provider[];
  /** 0 lets ONNX Runtime choose. @defaultValue 0 */
  intraOpThreads?: number;
  /** 0 lets ONNX Runtime choose. @defaultValue 0 */
  interOpThreads?: number;
  /** ORT pool threads spin while waiting for work (SessionOptions.allowSpinning). @defaultValue false */
  allowSpinning?: boolean;
  /** Arithmetic of the classifier's image tower (ClipEncodersOptions.imagePrecision). @defaultValue 'fp32' */
  imagePrecision?: ImagePrecision;
  /** Arithmetic of minDALL-E's transformer blocks (DALLE_PRECISION). @defaultValue 'fp32' */
  dallePrecision?: 'fp32' | 'int8';
  /** Where label-set text embeddings are cached on disk; absent: memory only. @defaultValue undefined */
  labelCacheDir?: string;
  /** Images per image-tower session run. @defaultValue 16 */
  maxImageBatch?: number;
  /**
   * Images that classify and embed-image jobs running together share in one session run; 1 turns
   * micro-batching off. At most maxImageBatch. @defaultValue maxImageBatch
   */
  microBatch?: number;
  /** How long the first image of a micro-batch waits for others. @defaultValue 5 */
  batchWaitMs?: number;
  /** Byte and pixel caps on images from users. @defaultValue DefaultImageLimits */
  imageLimits?: ImageLimits;
  /** Step sessions kept between imagine jobs (a full-size one holds 1-2 GB). @defaultValue 2 */
  stepSessions?: number;
  /**
   * Bytes the step sessions' memory arenas may hold together (StepGraphCacheOptions.memoryBudgetBytes,
   * WORKER_STEP_MEMORY_MB). @defaultValue defaultStepMemoryBudget(): 0.6 of the machine's memory
   */
  stepMemoryBudgetBytes?: number;
  /** Overrides of the classifier's options (tests use a small default vocabulary). */
  classifier?: ClassifierOptions;
  /**
   * The safety check of imagine results and indexed images (SAFETY_*): its threshold and prompts,
   * given or read from `promptsFile` (JSON, see classify/safety.ts); false: no check. A CLIP with
   * random weights (the writer's `random_seed` metadata) is not checked unless `checkRandomWeights`:
   * it knows no nudity or gore, and its verdicts flagged 30 of 40 noise images on the tiny model,
   * which searches would then leave out.
   * @defaultValue {} (on, DEFAULT_SAFETY_PROMPTS, threshold 0.5)
   */
  safety?: false | (SafetyCheckerOptions & { promptsFile?: string; checkRandomWeights?: boolean });
  logger?: Logger;
}

export const DefaultLoadModelsOptions = {
  providers: ['cpu'],
  intraOpThreads: 0,
  interOpThreads: 0,
  allowSpinning: false,
  imagePrecision: 'fp32',
  dallePrecision: 'fp32',
  maxImageBatch: 16,
  batchWaitMs: 5,
  stepSessions: 2,
} as const satisfies Partial<LoadModelsOptions>;

/** Everything a worker process computes with, loaded once and shared by every job. */
export interface WorkerModels {
  readonly dir: string;
  /** CLIP for classify, embed-image and search (batched image tower, cached label embeddings). */
  readonly classifier: Classifier;
  /** The image tower behind a micro-batcher: what classify and embed-image jobs embed images with. */
  readonly images: BatchedImageEncoder;
  /** Scores image embeddings against the safety prompts; absent when the check is off. */
  readonly safety?: SafetyChecker;
  /** CLIP + VQGAN and the prompt embedders of the generation loop. */
  readonly generation: GenerateDeps;
  /** Step sessions shared across imagine jobs (building one costs seconds at full size). */
  readonly stepCache: StepGraphCache;
  /** minDALL-E (`dalle/`), opened on the first DALL-E job; absent without the folder. */
  readonly dalle?: LazyDalleDrawer;
  /** The provider sessions run on: picks the preset table (CPU presets are much smaller). */
  readonly device: Device;
  /** Length of CLIP's embeddings, the dimension of the search index. */
  readonly embeddingDim: number;
  /**
   * Which CLIP made them: the fingerprint of its config, weights and tokenizer that also keys the
   * label-set cache (hashed once, at load). Stamped on indexed images so that searches never rank
   * another model's vectors (random weights and pulled ones share the dimension).
   */
  readonly embeddingModel: string;
  /** Caps on images from users (classify, embed-image, init images, image prompts). */
  readonly imageLimits: ImageLimits;
  readonly sessionOptions: SessionOptions;
  close(): Promise<void>;
}

/**
 * Opens the models under `modelsDir`. Weights are memory-light here (tensors are read when a session
 * is built); sessions are built on first use. Throws `model_missing` with the command that makes them.
 */
export async function loadModels(modelsDir: string, options: LoadModelsOptions = {}): Promise<WorkerModels> {
  const o = { ...DefaultLoadModelsOptions, ...options };
  const logger = o.logger ?? silentLogger;
  const clipDir = join(modelsDir, 'clip');
  const vqganDir = join(modelsDir, 'vqgan');
  for (const [name, dir] of [
    ['clip', clipDir],
    ['vqgan', vqganDir],
  ] as const) {
    try {
      await access(join(dir, 'config.json'));
      await access(join(dir, 'model.safetensors'));
    } catch {
      throw new ModelMissingError(name, modelsDir);
    }
    // Every tensor its config implies, with its shape, before anything is served: a folder missing
    // one used to start and then fail each job that reached it.
    await assertModelFolder(dir);
  }
  const sessionOptions: SessionOptions = {
    providers: o.providers,
    intraOpThreads: o.intraOpThreads,
    ...(o.interOpThreads > 0 ? { interOpThreads: o.interOpThreads } : {}),
    allowSpinning: o.allowSpinning,
    logger,
  };
  const provider = await detectProvider(sessionOptions);
  if (o.providers.includes('cuda') && provider !== 'cuda') {
    logger.warn({ providers: o.providers }, 'CUDA was asked for but is not available: running on CPU');
  }
  const device: Device = provider === 'cuda' ? 'cuda' : 'cpu';
  // Read before any model: a bad prompts file should fail the start at once, with its path.
  const {
    promptsFile,
    checkRandomWeights = false,
    ...safetyOptions
  } = o.safety === false ? {} : (o.safety ?? {});
  const safetyPrompts = promptsFile === undefined ? undefined : await readSafetyPromptsFile(promptsFile);

  const classifier = await Classifier.load(clipDir, {
    // The job schemas are the contract: the classifier must accept whatever they let through.
    maxLabels: jobLimits.labels,
    maxLabelLength: jobLimits.labelChars,
    maxTemplates: jobLimits.templates,
    maxTopK: jobLimits.maxTopK,
    ...(o.labelCacheDir === undefined ? {} : { cacheDir: o.labelCacheDir }),
    ...(o.imageLimits === undefined ? {} : { imageLimits: o.imageLimits }),
    ...o.classifier,
    encoders: {
      maxImageBatch: o.maxImageBatch,
      session: sessionOptions,
      imagePrecision: o.imagePrecision,
      ...o.classifier?.encoders,
    },
  });
  let vqgan: { config: VqganConfig; weights: Weights } | undefined;
  try {
    const vqConfig = await loadModelConfig(vqganDir);
    if (vqConfig.kind !== 'vqgan')
      throw new InternalError(`${vqganDir} holds a ${vqConfig.kind} model, not a VQGAN`);
    vqgan = { config: vqConfig.config, weights: Weights.fromFile(join(vqganDir, 'model.safetensors')) };
  } catch (error) {
    await classifier.close();
    throw error;
  }
  const clip = { config: classifier.model.config, weights: classifier.model.weights };
  const tokenizer = classifier.model.tokenizer;
  const dim = classifier.encoders.dim;
  // Image prompts only: text prompts go through the classifier's batched text sessions instead of a
  // second copy of the text tower.
  const imagePromptEmbedder = new ClipEmbedder(clip, {
    tokenize: (texts) => packIds(tokenizer.encodeBatch(texts)),
    contextLength: tokenizer.contextLength,
    session: sessionOptions,
  });
  const generation: GenerateDeps = {
    clip,
    vqgan,
    embedTexts: async (texts) => {
      const flat = await classifier.embedTexts(texts);
      return texts.map((_, i) => flat.slice(i * dim, (i + 1) * dim));
    },
    embedImages: (pixels) => imagePromptEmbedder.embedImages(pixels),
  };
  const images = new BatchedImageEncoder(classifier.encoders, {
    maxBatch: Math.min(o.microBatch ?? o.maxImageBatch, o.maxImageBatch),
    maxWaitMs: o.batchWaitMs,
    logger,
    ...(o.imageLimits === undefined ? {} : { limits: o.imageLimits }),
  });
  const stepCache = new StepGraphCache({
    maxEntries: o.stepSessions,
    session: sessionOptions,
    ...(o.stepMemoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: o.stepMemoryBudgetBytes }),
  });
  const weights = classifier.model.weights;
  const randomClip = weights instanceof Weights && weights.metadata.random_seed !== undefined;
  if (o.safety !== false && randomClip && !checkRandomWeights) {
    logger.warn({ clipDir }, 'CLIP has random weights: the safety check would only flag noise, so it is off');
  }
  // Its prompts are embedded on first use (one text batch; cached on disk with the label sets).
  const safety =
    o.safety === false || (randomClip && !checkRandomWeights)
      ? undefined
      : new SafetyChecker(classifier, {
          ...safetyOptions,
          ...(safetyPrompts === undefined ? {} : { prompts: safetyPrompts }),
        });
  logger.info(
    {
      modelsDir,
      provider,
      embeddingDim: dim,
      embeddingModel: classifier.model.modelKey.slice(0, 16),
      clipImageSize: classifier.encoders.imageSize,
      vqganCodebook: vqgan.config.n_embed,
      safety:
        safety === undefined
          ? 'off'
          : { threshold: safety.threshold, prompts: safety.rows.texts.length, file: promptsFile ?? null },
    },
    'models loaded',
  );
  const vqganWeights = vqgan.weights;
  const dalle = lazyDalleDrawer(modelsDir, {
    vqgan,
    embedTexts: generation.embedTexts,
    embedImages: (pixels) => imagePromptEmbedder.embedImages(pixels),
    clipImageSize: classifier.encoders.imageSize,
    session: sessionOptions,
    precision: o.dallePrecision,
    logger,
  });
  let closed = false;
  return {
    dir: modelsDir,
    classifier,
    images,
    ...(safety === undefined ? {} : { safety }),
    generation,
    stepCache,
    ...(dalle === undefined ? {} : { dalle }),
    device,
    embeddingDim: dim,
    embeddingModel: classifier.model.modelKey,
    imageLimits: o.imageLimits ?? {},
    sessionOptions,
    async close() {
      if (closed) return;
      closed = true;
      await images.close();
      await stepCache.clear();
      await dalle?.close();
      await imagePromptEmbedder.release();
      await classifier.close();
      vqganWeights.close();
    },
  };
}

/**
 * Which provider sessions will really run on: ORT refuses a missing CUDA provider, and the session
 * module falls back to CPU, so the answer comes from building one trivial session.
 */
export async function detectProvider(options: SessionOptions): Promise<Provider> {
  if (!options.providers?.includes('cuda')) return 'cpu';
  const g = new Graph();
  const x = g.input('x', [1]);
  const session = await ModelSession.create(serialize(g, { outputs: { y: identity(x) } }).bytes, options);
  const provider = session.provider;
  await session.release();
  return provider;
}
