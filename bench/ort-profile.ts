// ORT sessions for benchmarks that need ORT's own options (profiling), and the profiler's kernel
// times, shared by the graph and winograd modules.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** CPU provider, `threads` intra-op threads, sequential, optimisation 'all'; profiling when given a prefix. */
export function cpuSessionOptions(
  threads: number,
  profilePrefix?: string,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(profilePrefix !== undefined && { enableProfiling: true, profileFilePrefix: profilePrefix }),
  };
}

interface ProfileEvent {
  readonly cat: string;
  readonly name: string;
  readonly ts: number;
  readonly dur: number;
  readonly args?: { readonly op_name?: string };
}

/** One kernel's time in one run, averaged over the profiled runs. */
export interface KernelTime {
  readonly op: string;
  /** The node's name in the model. */
  readonly node: string;
  readonly ms: number;
}

/**
 * Runs the model `runs` times with ORT's profiler on (profile file `${dir}/${tag}_*.json`, replaced
 * each time) and returns each kernel's milliseconds per run, averaged over the runs after the first
 * (the first pays for allocations and weight prepacking).
 */
export async function profileKernels(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  options: { threads: number; dir: string; tag: string; runs: number },
): Promise<KernelTime[]> {
  const { dir, tag } = options;
  mkdirSync(dir, { recursive: true });
  const ours = () => readdirSync(dir).filter((f) => f.startsWith(`${tag}_`) && f.endsWith('.json'));
  // Keep only this run's profile (ORT stamps each file name with the time).
  for (const f of ours()) rmSync(join(dir, f));
  const session = await ort.InferenceSession.create(
    bytes,
    cpuSessionOptions(options.threads, join(dir, tag)),
  );
  for (let i = 0; i < options.runs; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();
  const file = ours().sort().pop();
  if (!file) return [];
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
  const starts = events
    .filter((e) => e.name === 'model_run')
    .map((e) => e.ts)
    .sort((a, b) => a - b);
  const after = starts[1] ?? 0;
  const counted = Math.max(starts.length - 1, 1);
  return events
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= after)
    .map((e) => ({
      op: e.args?.op_name ?? '?',
      node: e.name.replace(/_kernel_time$/, ''),
      ms: e.dur / 1000 / counted,
    }));
}
