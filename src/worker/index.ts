// The worker's public surface: start serving queues in this process (startWorker), load models once
// (loadModels), and the processor functions themselves, which the CLI calls in process without Redis.
export { type Blobs, MemoryBlobs, type MemoryBlobsOptions, readBlob } from './processors/blobs.js';
export { DEFAULT_TOP_K, runClassify } from './processors/classify.js';
export type { DbRunContext, RunContext } from './processors/context.js';
export { runEmbedImage } from './processors/embed-image.js';
export {
  DefaultImagineContext,
  type ImagineContext,
  type ImagineModels,
  runImagine,
  seedForJob,
} from './processors/imagine.js';
export { runSearch } from './processors/search.js';
export { type DirLock, lockDirectory } from './runtime/dir-lock.js';
export {
  BatchedImageEncoder,
  type BatchedImageEncoderOptions,
  type ImageTower,
} from './runtime/image-encoder.js';
export {
  MicroBatcher,
  MicroBatcherClosedError,
  type MicroBatcherOptions,
  type MicroBatcherStats,
} from './runtime/micro-batcher.js';
export {
  DefaultLoadModelsOptions,
  detectProvider,
  type LoadModelsOptions,
  loadModels,
  type WorkerModels,
} from './runtime/models.js';
export {
  DefaultStartWorkerOptions,
  type StartWorkerOptions,
  startWorker,
  type WorkerHandle,
  type WorkerStats,
} from './runtime/start-worker.js';
export { workerSettings } from './runtime/worker-settings.js';
