// Every variant, every GPU form (fused chunked, unfused, recurrent, naive parallel) against the float64
// parallel oracle on fresh seeded inputs; the CPU recurrent form against it too.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { evaluateRecurrent } from '../backends/cpu/recurrent.ts';
import { compileFile, runCompiled, type Form } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { stateLayout } from '../backends/wgsl/recurrent.ts';
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
  it('runs chunked over whole sequences (the causal term chunked, the convolution in the parallel form, added) and matches the oracle', async () => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 2, t: 19, axes: AXES, seed: 6 });
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked' });
    expect(r.plan?.kernels.map((k) => k.label)).toEqual(['leaky_dwconv.chunked', 'leaky_dwconv.naive']);
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, 'leaky chunked');
  });
  it('is refused by the decoding form with a message naming the leak', async () => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 1, t: 5, axes: AXES, seed: 5 });
    await expect(runCompiled(c, x, { device: 'gpu', gpu: g, form: 'recurrent' })).rejects.toThrow(/noncausal.*(future|after i)/);
    expect(() => evaluateRecurrent(c.program, x)).toThrow(/noncausal.*cannot be decoded/);
  });
});

// Workgroups of different heads run through a call's tokens at their own pace: a ring of a node without the
// head axes (the convolution's key positions) shared between them let one head overwrite a slot another was
// about to read (a 3.6e-2 error, seen once in CI). Each head slice now keeps its own copy.
describe('recurrent rings of head-less nodes', () => {
  it('are kept per head slice', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const st = stateLayout(c.program, axisSizes(c.source, { h: 8, d: 4, e: 4 }));
    const headless = st.rings.filter((r) => c.program.nodes[r.id].type.axes.length === 0);
    expect(headless.length).toBeGreaterThan(0);
    for (const r of headless) expect([r.sliced, r.per]).toEqual([1, 8]);
  });
  it('give the oracle over many tokens and heads, run after run', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/cosformer_aug.la');
    const x = makeInputs(c.source, { b: 2, t: 160, axes: { h: 8, d: 4, e: 4 }, seed: 5 });
    const ref = evaluateParallel(c.source, x);
    for (let k = 0; k < 3; k++) expectRelClose((await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'recurrent' })).o.data, ref.data, 1e-4, `run ${k}`);
  });
});
