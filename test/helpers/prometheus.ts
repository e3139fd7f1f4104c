// Reads the Prometheus text format back into numbers, for tests that check /metrics over HTTP. Only
// what prom-client writes: `# HELP` / `# TYPE` lines, then `name{label="value",...} number`.

export type Samples = Map<string, { labels: Record<string, string>; value: number }[]>;

export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = m[3] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[3]);
    const list = out.get(m[1]!) ?? [];
    list.push({ labels, value });
    out.set(m[1]!, list);
  }
  return out;
}

/** The value of the series with exactly these labels; NaN when there is none (so no check passes by accident). */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  const found = samples
    .get(name)
    ?.find((s) => Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
  return found?.value ?? Number.NaN;
}
