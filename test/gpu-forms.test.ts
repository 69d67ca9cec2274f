// Every variant, every GPU form (fused chunked, unfused, recurrent, naive parallel) against the float64
// parallel oracle on fresh seeded inputs; the CPU recurrent form against it too.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { evaluateRecurrent } from '../backends/cpu/recurrent.ts';
import { compileFile, runCompiled, type Form } from '../src/compiler.ts';
import { makeInputs } from '../src/inputs.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { DECODABLE, LEAKY } from './helpers/variants.ts';

// Shapes: t not a multiple of any chunk size, t = 1, b > 1, h > 1. Axis sizes stay fixed per variant so that
// each plan compiles once (lavapipe compiles slowly).
const SHAPES = [
  { b: 2, t: 37 },
  { b: 1, t: 1 },
  { b: 3, t: 70 },
];
const AXES = { h: 2, d: 4, e: 6 };

describe.each(DECODABLE)('%s', (file) => {
  const c = compileFile(file);
  it.each(SHAPES)('CPU recurrent equals parallel at b=$b t=$t', ({ b, t }) => {
    const x = makeInputs(c.source, { b, t, axes: AXES, seed: 11 * b + t });
    expectRelClose(evaluateRecurrent(c.program, x).data, evaluateParallel(c.source, x).data, 1e-9, `${file} seed ${11 * b + t}`);
  });
  it.each(SHAPES)('GPU fused, unfused, recurrent and naive forms equal the oracle at b=$b t=$t', async ({ b, t }) => {
    const g = await gpu();
    const seed = 7 * b + t;
    const x = makeInputs(c.source, { b, t, axes: AXES, seed });
    const ref = evaluateParallel(c.source, x);
    const runs: [string, Form, boolean][] = [['fused chunked', 'chunked', true], ['unfused', 'chunked', false], ['recurrent', 'recurrent', true], ['naive', 'parallel', true]];
    for (const [name, form, fuse] of runs) {
      const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form, fuse });
      expect(r.o.shape).toEqual(ref.shape);
      expectRelClose(r.o.data, ref.data, 1e-4, `${file} ${name} seed ${seed} b=${b} t=${t}`);
    }
  });
});

describe('the leaky (noncausal) convolution', () => {
  const c = compileFile(LEAKY);
  it('runs in the parallel form on the GPU and matches the oracle', async () => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 2, t: 19, axes: AXES, seed: 5 });
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'parallel' });
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, 'leaky parallel');
  });
  it('is refused by every decoding form with a message naming the leak', async () => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 1, t: 5, axes: AXES, seed: 5 });
    for (const form of ['chunked', 'recurrent'] as const) {
      await expect(runCompiled(c, x, { device: 'gpu', gpu: g, form })).rejects.toThrow(/noncausal.*(future|after i)/);
    }
    expect(() => evaluateRecurrent(c.program, x)).toThrow(/noncausal.*cannot be decoded/);
  });
});
