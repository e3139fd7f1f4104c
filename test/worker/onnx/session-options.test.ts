// The options ModelSession hands to onnxruntime-node: thread pools' spinning goes through ORT's session
// config entries. InferenceSession.create is wrapped (still the real one) so the test sees what ORT got.
import { describe, expect, it, vi } from 'vitest';
import * as G from '../../../src/worker/graph/index.js';
import { ModelSession, ortSessionOptions } from '../../../src/worker/onnx/session.js';

const calls = vi.hoisted(() => [] as unknown[]);
vi.mock('onnxruntime-node', async (importOriginal) => {
  const ort = await importOriginal<typeof import('onnxruntime-node')>();
  const create = (...args: unknown[]) => {
    calls.push(args.at(-1));
    return (ort.InferenceSession.create as (...a: unknown[]) => unknown)(...args);
  };
  return { ...ort, InferenceSession: { ...ort.InferenceSession, create } };
});

const spinning = (flag: string) => ({
  session: { intra_op: { allow_spinning: flag }, inter_op: { allow_spinning: flag } },
});

describe('ModelSession options reaching ORT', () => {
  it('maps allowSpinning to both pools, off by default', () => {
    expect(ortSessionOptions().extra).toEqual(spinning('0'));
    expect(ortSessionOptions({ allowSpinning: true }).extra).toEqual(spinning('1'));
    expect(ortSessionOptions({ intraOpThreads: 2, optimization: 'basic' })).toMatchObject({
      intraOpNumThreads: 2,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'basic',
      executionMode: 'sequential',
    });
  });

  it('passes them to InferenceSession.create, and ORT runs with either setting', async () => {
    const g = new G.Graph();
    const x = g.input('x', [2]);
    const { bytes } = G.serialize(g, { outputs: { y: G.mul(x, 3) } });
    for (const allowSpinning of [false, true]) {
      calls.length = 0;
      const s = await ModelSession.create(bytes, { intraOpThreads: 2, allowSpinning });
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({
        intraOpNumThreads: 2,
        executionProviders: ['cpu'],
        extra: spinning(allowSpinning ? '1' : '0'),
      });
      const out = await s.run({ x: { data: Float32Array.from([1, -2]), dims: [2] } });
      expect(Array.from(out.y!.data as Float32Array)).toEqual([3, -6]);
      await s.release();
    }
  });
});
