// The classify job: blob -> micro-batched image embedding -> zero-shot against the job's label set
// (or the default vocabulary, its text embeddings cached) -> top-k labels with probabilities.
// Callable without BullMQ (the CLI runs it in process).
import { type ClassifyResult, checkJob, classifyJobSchema } from '../../shared/jobs.js';
import { classifyEmbeddings } from '../classify/zero-shot.js';
import type { WorkerModels } from '../runtime/models.js';
import { readBlob } from './blobs.js';
import type { RunContext } from './context.js';

/** Predictions per image when the job does not say. */
export const DEFAULT_TOP_K = 5;

export async function runClassify(
  models: Pick<WorkerModels, 'classifier' | 'images'>,
  data: unknown,
  ctx: RunContext,
): Promise<ClassifyResult> {
  const job = checkJob(classifyJobSchema, data);
  // The classifier's own choice (its defaultLabels and templates); loadModels gives it the job
  // schema's limits, so it accepts whatever the schema let through.
  const { labels, templates } = models.classifier.labelSet(job);
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
