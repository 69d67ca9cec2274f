// Runs whose buffers exceed one storage binding are split along the batch (src/runtime/batch-split.ts): with a
// small binding limit injected, every GPU form runs in slices and equals the unsplit run and the float64 oracle;
// a single sequence that does not fit is refused with the tensor, its size, the limit and the longest t that fits.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { compileFile, planFor, runCompiled, timePlan, type Form } from '../src/runtime/compiler.ts';
import { makeInputs } from '../src/inputs.ts';
import { bindShapes } from '../src/ir/shapes.ts';
import { BatchSplitError, batchSlices, batchSliceSize, type RunLimits } from '../src/runtime/batch-split.ts';
import { relativeError, type Tensor } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const FILE = 'examples/paper/elu_dwconv.la';
const AXES = { h: 2, d: 4, e: 6 };
const BIG = 1 << 30;

/** A fake plan with one per-token buffer of `perToken` floats and a parameter of `param` floats. */
function fakePlan(perToken: number, param: number): Plan {
  return {
    variant: 'fake',
    form: 'chunked',
    kernels: [{ label: 'fake.k', code: '', bindings: [], workgroups: (b) => [4, b, 1] }],
    buffers: [
      { name: 'in:x', role: 'input', floats: (b, t) => b * t * perToken, shape: (b, t) => [b, t, perToken] },
      { name: 'param:w', role: 'param', floats: () => param, shape: () => [param] },
    ],
    outAxes: [],
    sizes: {},
    schedule: {},
  };
}
const limits = (bytes: number, groups = 65535): RunLimits => ({ maxStorageBufferBindingSize: bytes, maxBufferSize: BIG, maxComputeWorkgroupsPerDimension: groups });

describe('batchSliceSize', () => {
  it('keeps the whole batch when it fits, else the largest slice that does', () => {
    const plan = fakePlan(10, 4); // 40 bytes per token
    expect(batchSliceSize(plan, 8, 5, limits(8 * 5 * 40))).toBe(8);
    expect(batchSliceSize(plan, 8, 5, limits(3 * 5 * 40))).toBe(3);
    expect(batchSliceSize(plan, 8, 5, limits(3 * 5 * 40 - 4))).toBe(2);
    expect(batchSlices(8, 3)).toEqual([[0, 3], [3, 3], [6, 2]]);
  });

  it('uses the smaller of maxStorageBufferBindingSize and maxBufferSize, and the workgroup count per dimension', () => {
    const plan = fakePlan(10, 4);
    expect(batchSliceSize(plan, 8, 5, { maxStorageBufferBindingSize: BIG, maxBufferSize: 2 * 5 * 40, maxComputeWorkgroupsPerDimension: 65535 })).toBe(2);
    expect(batchSliceSize(plan, 8, 5, limits(BIG, 5))).toBe(5); // launches are [4, b, 1]
  });

  it('refuses one sequence that does not fit, naming the tensor, its size, the limit and the longest t that fits', () => {
    const plan = fakePlan(10, 4);
    const run = () => batchSliceSize(plan, 4, 100, limits(1000), 'test adapter');
    expect(run).toThrow(BatchSplitError);
    expect(run).toThrow(
      "fake (chunked plan) at t = 100: input 'x' [1, 100, 10] needs 4000 bytes for one sequence, over the limit of 1000 bytes for one storage binding " +
        "(maxStorageBufferBindingSize on test adapter); splitting the batch cannot help. Run sequences of at most t = 25 (split the sequence), " +
        "or use an adapter with a larger maxStorageBufferBindingSize (linattn already requests the adapter's maximum).",
    );
  });

  it('refuses a parameter larger than the limit, which no split can help', () => {
    expect(() => batchSliceSize(fakePlan(1, 1000), 2, 3, limits(1000))).toThrow(/parameter 'w' \[1000\] needs 4000 bytes whatever the batch, .*Use smaller axes, or use an adapter/);
  });

  it('refuses a launch whose workgroups exceed the limit for one sequence', () => {
    expect(() => batchSliceSize(fakePlan(1, 1), 2, 3, limits(BIG, 3))).toThrow(/kernel fake\.k needs \[4, 1, 1\] workgroups for one sequence, over the limit of 3 per dimension/);
  });
});

describe('runCompiled splits the batch to fit the device (on Dawn, with a small injected limit)', () => {
  const c = compileFile(FILE);
  const [b, t] = [5, 13];
  const x = makeInputs(c.source, { b, t, axes: AXES, seed: 41 });
  const ref = evaluateParallel(c.source, x);
  const bound = bindShapes(c.source, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v.shape])));

  const FORMS: [string, Form, boolean][] = [['fused chunked', 'chunked', true], ['unfused', 'chunked', false], ['recurrent', 'recurrent', true], ['naive', 'parallel', true]];
  for (const [name, form, fuse] of FORMS) {
    it(`${name}: a binding that holds two sequences runs b = 5 as slices of 2, 2, 1, equal to the unsplit run and the oracle`, async () => {
      const g = await gpu();
      const plan = planFor(g, c, bound.sizes, { form, fuse }, bound);
      // the largest buffer of two sequences: every per-sequence buffer of a 2-slice fits, none of a 3-slice does
      const twoSequences = Math.max(...plan.buffers.map((buf) => buf.floats(2, t) * 4));
      const whole = await runCompiled(c, x, { device: 'gpu', gpu: g, form, fuse });
      const split = await runCompiled(c, x, { device: 'gpu', gpu: g, form, fuse, limits: { maxStorageBufferBindingSize: twoSequences } });
      expect(whole.slices).toBe(1);
      expect(split.slices).toBe(3);
      expect(split.o.shape).toEqual(ref.shape);
      expect(relativeError(split.o.data, whole.o.data)).toBe(0);
      expectRelClose(split.o.data, ref.data, 1e-4, `${FILE} ${name} seed 41 b=${b} t=${t}, split`);
    });
  }

  it('splits along b when a launch would exceed maxComputeWorkgroupsPerDimension', async () => {
    const g = await gpu();
    // The recurrent kernel launches [x, b, 1]: x is 2 on lavapipe, more where a hardware adapter spreads the step over
    // column blocks (6 on the H200). A limit of max(x, 4) fits one sequence, and b one more than it takes two slices.
    const plan = planFor(g, c, bound.sizes, { form: 'recurrent' }, bound);
    const limit = Math.max(4, ...plan.kernels.map((k) => k.workgroups(1, t)[0]));
    const bs = limit + 1;
    const xs = makeInputs(c.source, { b: bs, t, axes: AXES, seed: 45 });
    const r = await runCompiled(c, xs, { device: 'gpu', gpu: g, form: 'recurrent', limits: { maxComputeWorkgroupsPerDimension: limit } });
    expect(r.slices).toBe(2);
    expectRelClose(r.o.data, evaluateParallel(c.source, xs).data, 1e-4, `${FILE} recurrent b=${bs}, at most ${limit} workgroups a dimension`);
  });

  it('refuses b = 1 that does not fit with a message that says what to do, not a Dawn validation error', async () => {
    const g = await gpu();
    const one: Record<string, Tensor> = makeInputs(c.source, { b: 1, t, axes: AXES, seed: 42 });
    // q [1, t, 2, 4] needs 32 bytes a token, o [1, t, 2, 6] 48: with 300 bytes, t ≤ 6 fits
    const req = { device: 'gpu', gpu: g, form: 'chunked', limits: { maxStorageBufferBindingSize: 300 } } as const;
    await expect(runCompiled(c, one, req)).rejects.toThrow(
      /^elu_dwconv \(chunked plan\) at t = 13: input 'q' \[1, 13, 2, 4\] needs 416 bytes for one sequence, over the limit of 300 bytes for one storage binding \(maxStorageBufferBindingSize on .*\); splitting the batch cannot help\. Run sequences of at most t = 6/,
    );
    const six = makeInputs(c.source, { b: 3, t: 6, axes: AXES, seed: 43 });
    const r = await runCompiled(c, six, req);
    expect(r.slices).toBe(3);
    expectRelClose(r.o.data, evaluateParallel(c.source, six).data, 1e-4, `${FILE} t = 6 under 300 bytes`);
    await expect(runCompiled(c, makeInputs(c.source, { b: 1, t: 7, axes: AXES, seed: 44 }), req)).rejects.toThrow(BatchSplitError);
  });

  it('timePlan times a split batch as the sum of its slices', async () => {
    const g = await gpu();
    const plan = planFor(g, c, bound.sizes, { form: 'chunked' }, bound);
    const twoSequences = Math.max(...plan.buffers.map((buf) => buf.floats(2, t) * 4));
    const timed = await timePlan(g, plan, x, b, t, 2, { maxStorageBufferBindingSize: twoSequences });
    expect(timed.method).toMatch(/summed over 3 batch slices$/);
    expect(timed.ms).toBeGreaterThan(0);
  });
});
