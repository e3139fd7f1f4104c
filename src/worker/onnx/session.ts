// The only module that imports onnxruntime-node. Creates inference sessions from ONNX bytes or
// files with the configured execution providers: CUDA when asked for and present, else CPU.
// ORT throws on a missing CUDA provider instead of falling back, so we catch and retry on CPU.
import * as ort from 'onnxruntime-node';
import { type Logger, silentLogger } from '../../shared/logger.js';

export type Provider = 'cuda' | 'cpu';

export interface SessionOptions {
  /** Providers in order of preference. @defaultValue ['cpu'] */
  readonly providers?: readonly Provider[];
  /** CUDA device. @defaultValue 0 */
  readonly deviceId?: number;
  /** Threads inside one op; 0 lets ORT pick (one per core). @defaultValue 0 */
  readonly intraOpThreads?: number;
  /** Threads across independent ops. @defaultValue 1 */
  readonly interOpThreads?: number;
  /** @defaultValue 'all' */
  readonly optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * ORT's CPU arena and memory-pattern planner. They make repeated runs slightly faster but keep the
   * peak of every run reserved; large step graphs (generation) run with them off to bound memory.
   * @defaultValue true
   */
  readonly memoryArena?: boolean;
  /**
   * Whether ORT's intra- and inter-op pool threads busy-wait for work between (and after) ops
   * instead of sleeping (`session.intra_op.allow_spinning`, `session.inter_op.allow_spinning`).
   * Spinning saves wake-up latency on an idle machine but burns the cores it waits on; on a shared
   * machine the spinning threads compete with the threads doing work. See bench/README.md
   * (`classify`) for the measurement behind the default.
   * @defaultValue false
   */
  readonly allowSpinning?: boolean;
  /** @defaultValue silentLogger */
  readonly logger?: Logger;
}

export const DefaultSessionOptions = {
  providers: ['cpu'],
  deviceId: 0,
  intraOpThreads: 0,
  interOpThreads: 1,
  optimization: 'all',
  memoryArena: true,
  allowSpinning: false,
  logger: silentLogger,
} as const satisfies Required<SessionOptions>;

/** A plain tensor crossing the session boundary, so callers never see ORT types. */
export interface HostTensor {
  readonly data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;
  readonly dims: readonly number[];
}

export class ModelSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    /** The provider the session actually runs on. */
    readonly provider: Provider,
  ) {}

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  static async create(model: Uint8Array | string, options: SessionOptions = {}): Promise<ModelSession> {
    const o = { ...DefaultSessionOptions, ...options };
    const base = ortSessionOptions(o);
    const create = (eps: ort.InferenceSession.ExecutionProviderConfig[]) =>
      typeof model === 'string'
        ? ort.InferenceSession.create(model, { ...base, executionProviders: eps })
        : ort.InferenceSession.create(model, { ...base, executionProviders: eps });
    if (o.providers.includes('cuda')) {
      try {
        const s = await create([{ name: 'cuda', deviceId: o.deviceId }, 'cpu']);
        return new ModelSession(s, 'cuda');
      } catch (err) {
        if (!o.providers.includes('cpu')) {
          throw new Error(
            `CUDA execution provider unavailable and CPU not allowed (providers: ${o.providers.join(', ')}): ${errorMessage(err)}`,
            { cause: err },
          );
        }
        warnCudaOnce(o.logger, err);
      }
    }
    return new ModelSession(await create(['cpu']), 'cpu');
  }

  /** Runs the model; `fetches` limits the outputs computed (default: all). */
  async run(
    feeds: Readonly<Record<string, HostTensor>>,
    fetches?: readonly string[],
  ): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.data, [...t.dims]);
    const out = fetches ? await this.session.run(ortFeeds, [...fetches]) : await this.session.run(ortFeeds);
    const result: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(out)) {
      result[name] = { data: t.data as HostTensor['data'], dims: [...t.dims] };
    }
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The options object handed to `InferenceSession.create` (without execution providers). Spinning
 * goes through ORT's session config entries (`extra`, flattened by the binding into dotted keys).
 */
export function ortSessionOptions(options: SessionOptions = {}): ort.InferenceSession.SessionOptions {
  const o = { ...DefaultSessionOptions, ...options };
  const spin = o.allowSpinning ? '1' : '0';
  return {
    intraOpNumThreads: o.intraOpThreads,
    interOpNumThreads: o.interOpThreads,
    graphOptimizationLevel: o.optimization,
    enableCpuMemArena: o.memoryArena,
    enableMemPattern: o.memoryArena,
    executionMode: o.interOpThreads > 1 ? 'parallel' : 'sequential',
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
  };
}

// Once per logger rather than once per module: a process has one logger, so this is still one
// warning per process, but a caller that passes its own logger always sees the warning.
const cudaWarned = new WeakSet<Logger>();
function warnCudaOnce(logger: Logger, err: unknown): void {
  if (cudaWarned.has(logger)) return;
  cudaWarned.add(logger);
  logger.warn(
    { err: errorMessage(err) },
    'CUDA execution provider unavailable; running on CPU (install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 on GPU hosts)',
  );
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
