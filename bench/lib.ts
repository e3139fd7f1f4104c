// Timing helpers shared by the benchmark modules: warm-up, repeated runs, order statistics,
// GFLOP/s, a seeded PRNG for inputs and weights, and a plain-text table printer.
// Benchmarks are not tests: they report numbers and never assert on time.

/** Order statistics of one measured function, in milliseconds. */
export interface Timing {
  readonly reps: number;
  readonly samplesMs: readonly number[];
  readonly minMs: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

export interface MeasureOptions {
  /** Untimed runs first (allocator, thread pool and caches settle). @defaultValue 2 */
  readonly warmup?: number;
  /** Timed runs, at least this many. @defaultValue 7 */
  readonly reps?: number;
  /** Keep repeating (up to `maxReps`) until this much time has been spent timing. @defaultValue 0 */
  readonly minTimeMs?: number;
  /** @defaultValue 50 */
  readonly maxReps?: number;
}

export const DefaultMeasureOptions = {
  warmup: 2,
  reps: 7,
  minTimeMs: 0,
  maxReps: 50,
} as const satisfies Required<MeasureOptions>;

/** Percentile by linear interpolation between order statistics (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function summarize(samplesMs: readonly number[]): Timing {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return {
    reps: sorted.length,
    samplesMs: [...samplesMs],
    minMs: sorted[0] ?? Number.NaN,
    medianMs: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
    meanMs: sorted.reduce((a, b) => a + b, 0) / Math.max(sorted.length, 1),
  };
}

/** Times `fn` after warm-up; each sample is one awaited call. */
export async function measure(fn: () => Promise<unknown>, options: MeasureOptions = {}): Promise<Timing> {
  const o = { ...DefaultMeasureOptions, ...options };
  for (let i = 0; i < o.warmup; i++) await fn();
  const samples: number[] = [];
  let spent = 0;
  while (samples.length < o.reps || (spent < o.minTimeMs && samples.length < o.maxReps)) {
    const t0 = process.hrtime.bigint();
    await fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    samples.push(ms);
    spent += ms;
  }
  return summarize(samples);
}

/**
 * Times several functions round-robin (one sample of each per round) so that load from other
 * processes on a shared machine lands on all of them alike and their ratios stay meaningful.
 */
export async function measureInterleaved(
  fns: readonly (() => Promise<unknown>)[],
  options: MeasureOptions = {},
): Promise<Timing[]> {
  const o = { ...DefaultMeasureOptions, ...options };
  for (let i = 0; i < o.warmup; i++) for (const fn of fns) await fn();
  const samples: number[][] = fns.map(() => []);
  let spent = 0;
  for (let rep = 0; rep < o.reps || (spent < o.minTimeMs && rep < o.maxReps); rep++) {
    for (const [k, fn] of fns.entries()) {
      const t0 = process.hrtime.bigint();
      await fn();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      samples[k]!.push(ms);
      spent += ms;
    }
  }
  return samples.map(summarize);
}

/**
 * Median over rounds of f(a_i, b_i) for two interleaved timings: each round's samples ran
 * back to back, so their ratio cancels most of the load that other processes add.
 */
export function pairedMedian(a: Timing, b: Timing, f: (a: number, b: number) => number): number {
  const n = Math.min(a.samplesMs.length, b.samplesMs.length);
  const values = Array.from({ length: n }, (_, i) => f(a.samplesMs[i]!, b.samplesMs[i]!));
  return percentile(
    values.sort((x, y) => x - y),
    50,
  );
}

/** GFLOP/s for `flops` floating-point operations done in `ms` milliseconds. */
export const gflops = (flops: number, ms: number): number => flops / (ms * 1e6);

/** Relative spread of a timing, (max - min) / median, a quick noise indicator. */
export const spread = (t: Timing): number => (t.maxMs - t.minMs) / t.medianMs;

/** Seeded PRNG (mulberry32), the tests' own: benchmarks use the same inputs on every run. */
export { mulberry32 } from '../test/helpers/random.js';

/** `n` normal samples times `scale` (Box-Muller, both outputs used: weights are large). */
export function randn(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * scale;
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** One printed row: a label and named cells (numbers are formatted, strings kept). */
export interface Row {
  readonly name: string;
  readonly cells: Readonly<Record<string, number | string>>;
}

/** Fixed-width table; columns are the union of the rows' cell names in first-seen order. */
export function formatTable(rows: readonly Row[]): string {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r.cells)) if (!cols.includes(k)) cols.push(k);
  const fmt = (v: number | string | undefined): string => {
    if (v === undefined) return '';
    if (typeof v === 'string') return v;
    if (!Number.isFinite(v) || Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  };
  const header = ['', ...cols];
  const body = rows.map((r) => [r.name, ...cols.map((c) => fmt(r.cells[c]))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export interface Table {
  readonly title: string;
  readonly rows: readonly Row[];
}

/** What every benchmark module returns: tables to print, notes, and JSON-able details. */
export interface BenchResult {
  readonly tables: readonly Table[];
  readonly notes: readonly string[];
  readonly details: Readonly<Record<string, unknown>>;
}

export interface BenchModule {
  /** Short name: selects the module on the command line and names bench/results/<name>.json. */
  readonly name: string;
  readonly description: string;
  run(args: readonly string[]): Promise<BenchResult>;
}
