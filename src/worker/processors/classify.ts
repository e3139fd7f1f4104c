// The classify job: blob -> micro-batched image embedding -> zero-shot against the job's label set
// (or the default vocabulary, its text embeddings cached) -> top-k labels with probabilities.
// Callable without BullMQ (the CLI runs it in process).
import { type ClassifyResult, checkJob, classifyJobSchema } from '../../shared/jobs.js';
import { parseLabels, parseTemplates } from '../classify/classifier.js';
import { CUSTOM_LABEL_TEMPLATES, DEFAULT_LABELS, DEFAULT_TEMPLATES } from '../classify/vocabulary.js';
import { classifyEmbeddings } from '../classify/zero-shot.js';
import type { WorkerModels } from '../runtime/models.js';
import { readBlob } from './blobs.js';
import type { RunContext } from './context.js';

/** Predictions per image when the job does not say. */
export const DEFAULT_TOP_K = 5;

/** The label set a job asks for: its labels with the short template list, else the default vocabulary. */
export function labelSetOf(job: {
  labels?: readonly string[] | undefined;
  templates?: readonly string[] | undefined;
}): {
  labels: readonly string[];
  templates: readonly string[];
} {
  const custom = job.labels !== undefined;
  // The schema already bounds counts and lengths; parseLabels adds dedup and the two-label minimum.
  const limits = { maxLabels: Number.MAX_SAFE_INTEGER, maxLabelLength: Number.MAX_SAFE_INTEGER };
  const labels = custom ? parseLabels(job.labels!, limits) : DEFAULT_LABELS;
  const templates =
    job.templates !== undefined
      ? parseTemplates(job.templates, { maxTemplates: Number.MAX_SAFE_INTEGER, maxTemplateLength: 200 })
      : custom
        ? CUSTOM_LABEL_TEMPLATES
        : DEFAULT_TEMPLATES;
  return { labels, templates };
}

export async function runClassify(
  models: Pick<WorkerModels, 'classifier' | 'images'>,
  data: unknown,
  ctx: RunContext,
): Promise<ClassifyResult> {
  const job = checkJob(classifyJobSchema, data);
  const { labels, templates } = labelSetOf(job);
  ctx.signal?.throwIfAborted();
  const bytes = await readBlob(ctx.blobs, job.image);
  // Text (usually cached) and image work are independent: start both.
  const labelSet = models.classifier.labelEmbeddings(labels, templates, ctx.signal);
  labelSet.catch(() => {}); // awaited below; the image may fail first
  const embedding = await models.images.embed(bytes, ctx.signal);
  const set = await labelSet;
  const classifier = models.classifier.encoders;
  const k = Math.min(job.topK ?? DEFAULT_TOP_K, labels.length);
  const [predictions = []] = classifyEmbeddings(
    embedding,
    set.embeds,
    labels,
    classifier.dim,
    classifier.logitScale,
    k,
  );
  return {
    labels: predictions.map((p) => ({ label: p.label, prob: Math.min(1, Math.max(0, p.probability)) })),
  };
}
