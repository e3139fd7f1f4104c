// ModelSession: provider fallback (CUDA requested on a machine without it), loading from bytes
// and from a file, feeding float and int64 tensors, and limiting the outputs with `fetches`.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../../src/shared/logger.js';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession } from '../../../src/worker/onnx/session.js';

// The fallback tests describe CPU-only installs (ONNXRUNTIME_NODE_INSTALL=skip); on a host
// with ORT's CUDA provider library they would get CUDA, so they are skipped there.
const ortDir = dirname(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')));
const hasCuda = readdirSync(ortDir, { recursive: true }).some((f) =>
  String(f).includes('libonnxruntime_providers_cuda'),
);

function collectingLogger() {
  const warnings: { obj: unknown; msg: string | undefined }[] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    error: () => {},
    warn: (obj, msg) => {
      warnings.push({ obj, msg });
    },
  };
  return { logger, warnings };
}

/** a = x * 2 and b = exp(x) for x [3]. */
function twoOutputModel() {
  const g = new G.Graph();
  const x = g.input('x', [3]);
  return G.serialize(g, { outputs: { a: G.mul(x, 2), b: G.exp(x) } });
}

const X = Float32Array.from([0, 1, -0.5]);
const feeds = { x: { data: X, dims: [3] } };

describe('ModelSession', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'session-test-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('runs on CPU by default and returns every output', async () => {
    const { logger, warnings } = collectingLogger();
    const s = await ModelSession.create(twoOutputModel().bytes, { logger, intraOpThreads: 1 });
    expect(s.provider).toBe('cpu');
    expect(s.inputNames).toEqual(['x']);
    expect(s.outputNames).toEqual(['a', 'b']);
    const out = await s.run(feeds);
    expect(Object.keys(out).sort()).toEqual(['a', 'b']);
    expect(Array.from(out.a!.data as Float32Array)).toEqual([0, 2, -1]);
    expect(out.b!.dims).toEqual([3]);
    Array.from(out.b!.data as Float32Array).forEach((v, i) => {
      expect(v).toBeCloseTo(Math.exp(X[i]!), 6);
    });
    expect(warnings).toEqual([]);
    await s.release();
  });

  it.skipIf(hasCuda)('falls back from CUDA to CPU with one warning per logger', async () => {
    const { logger, warnings } = collectingLogger();
    const bytes = twoOutputModel().bytes;
    const s1 = await ModelSession.create(bytes, { providers: ['cuda', 'cpu'], logger, intraOpThreads: 1 });
    const s2 = await ModelSession.create(bytes, { providers: ['cuda', 'cpu'], logger, intraOpThreads: 1 });
    expect(s1.provider).toBe('cpu');
    expect(s2.provider).toBe('cpu');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toMatch(/CUDA.*CPU/);
    expect(warnings[0]!.obj).toHaveProperty('err');
    const out = await s2.run(feeds);
    expect(Array.from(out.a!.data as Float32Array)).toEqual([0, 2, -1]);
    await Promise.all([s1.release(), s2.release()]);
  });

  it.skipIf(hasCuda)('rejects when only CUDA is allowed and it is missing', async () => {
    const { logger, warnings } = collectingLogger();
    const attempt = ModelSession.create(twoOutputModel().bytes, { providers: ['cuda'], logger });
    await expect(attempt).rejects.toThrow(/CUDA execution provider unavailable and CPU not allowed/);
    await expect(attempt).rejects.toHaveProperty('cause');
    expect(warnings).toEqual([]);
  });

  it('loads a model from a file path', async () => {
    const path = join(tmp, 'two.onnx');
    writeFileSync(path, twoOutputModel().bytes);
    const s = await ModelSession.create(path, { intraOpThreads: 1 });
    const out = await s.run(feeds);
    expect(Array.from(out.a!.data as Float32Array)).toEqual([0, 2, -1]);
    await s.release();
  });

  it('computes only the outputs named in fetches', async () => {
    const s = await ModelSession.create(twoOutputModel().bytes, { intraOpThreads: 1 });
    const out = await s.run(feeds, ['b']);
    expect(Object.keys(out)).toEqual(['b']);
    expect((out.b!.data as Float32Array)[1]).toBeCloseTo(Math.E, 6);
    await expect(s.run(feeds, ['nope'])).rejects.toThrow(/nope/);
    await s.release();
  });

  it('feeds int64 tensors as int64', async () => {
    const g = new G.Graph();
    const table = g.constant(Float32Array.from([10, 20, 30, 40]), [4, 1], { name: 'table' });
    const ids = g.input('ids', [3], 'int64');
    const model = G.serialize(g, { outputs: { rows: G.gather(table, ids, 0) } });
    const s = await ModelSession.create(model.bytes, { intraOpThreads: 1 });
    const out = await s.run({ ids: { data: BigInt64Array.from([3n, 0n, 3n]), dims: [3] } });
    expect(out.rows!.dims).toEqual([3, 1]);
    expect(Array.from(out.rows!.data as Float32Array)).toEqual([40, 10, 40]);
    await s.release();
  });
});
