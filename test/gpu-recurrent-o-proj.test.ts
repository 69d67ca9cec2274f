// The decode step with the o projection folded in (backends/wgsl/recurrent-o-proj.ts): each workgroup's partial
// product of o·W_oᵀ over its own columns, summed over the workgroups, must equal the float64 oracle's o times W_o,
// step after step on one state (the state the fused step advances is the same one), at sizes where the column
// blocks do not divide the value columns (7 in blocks of 4: W_o read a scalar a column at the staged indices), with
// slices that leave rows empty, and where they do (8, 16: vec4 loads of contiguous columns) with a thread's
// outputs past what one unrolled pass or one group of loads in flight holds, the last pass ragged; in the hardware
// adapter's unrolled form and in the software one's loops.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { recurrentPlan, type RecurrentSplit } from '../backends/wgsl/recurrent.ts';
import { O_PROJECTION_PARTIALS, oProjectionSplit, oProjectionVec4 } from '../backends/wgsl/recurrent-o-proj.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { downloadTensor, releaseTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { inputRows, submitPlan } from './helpers/plan-calls.ts';

const B = 2;
const T = 5;

// file, its sizes, value columns e, hidden, columns, split, W_o's load width, hardware (the unrolled form) or not (loops)
const CASES: [string, Record<string, number>, number, number, number, RecurrentSplit | undefined, 1 | 4, boolean][] = [
  // a per-column convolution score beside a plain prefix term: two column blocks per head, 4 slices
  ['examples/paper/elu_dwconv.la', {}, 7, 10, 4, { columns: 4, slices: 4 }, 1, true],
  // a whole head per workgroup, the software split (one slice)
  ['examples/paper/elu_dwconv.la', {}, 7, 10, 64, undefined, 1, false],
  // a group term, an open past_groups term, a 3-tap conv (rings written by column block 0 at t = 1)
  ['examples/models/llama/linearized_aug.la', { C: 4, K: 3 }, 7, 10, 4, { columns: 4, slices: 2 }, 1, false],
  // a per-feature decay gate, a hardware adapter's slices
  ['examples/variants/gla.la', {}, 7, 10, 8, { columns: 8, slices: 8 }, 1, true],
  // vec4: more threads than outputs; the loops
  ['examples/variants/gla.la', {}, 8, 10, 4, { columns: 4, slices: 4 }, 4, true],
  ['examples/variants/gla.la', {}, 8, 10, 8, { columns: 8, slices: 2 }, 4, false],
  // vec4, 9 outputs a thread in one pass: 18 loads, a group of 16 ending inside an output
  ['examples/paper/elu_dwconv.la', {}, 8, 70, 8, { columns: 8, slices: 1 }, 4, true],
  // vec4, 19 outputs a thread: two passes of 16, the second ragged
  ['examples/paper/elu_dwconv.la', {}, 16, 300, 16, { columns: 16, slices: 1 }, 4, true],
];

describe('the decode step with the o projection folded in', () => {
  it.each(CASES)('%s %o, e %i, hidden %i, %i columns, split %o, width %i, hardware %s: Σ_p P[p] = o·W_oᵀ at every step at b 2', async (file, sizes0, e, HIDDEN, columns, split, width, hardware) => {
    const AXES = { h: 3, d: 6, e };
    const g = await gpu();
    const full = compileFile(file);
    const c = compileFile(file, { sizes: Object.fromEntries(Object.entries(sizes0).filter(([k]) => k in full.source.sizes)) });
    const sizes = axisSizes(c.program, AXES);
    const plan = recurrentPlan(c.program, sizes, undefined, { oProjection: { hidden: HIDDEN, columns }, hardware, ...(split && { split }) });
    const NP = AXES.h * Math.ceil(AXES.e / Math.min(columns, split?.columns ?? columns));
    expect(plan.schedule).toMatchObject({ oPartials: NP, oWidth: width });
    const step = await PlanRunner.create(g, plan);
    const inputs = c.source.inputs.map((d) => d.name);
    const x = makeInputs(c.source, { b: B, t: T, axes: AXES, seed: 71 });
    const ref = evaluateParallel(c.source, x);
    const inner = ref.data.length / (B * T);
    const wo = randn([HIDDEN, inner], 72);
    let state: Record<string, GPUBuffer> | null = null;
    const kept: GpuTensor[] = [];
    for (let at = 0; at < T; at++) {
      const call = step.allocate({ ...inputRows(x, inputs, B, T, at, at + 1), oProj: wo }, B, 1);
      if (!state) {
        kept.push(...Object.entries(call).filter(([k]) => k.startsWith('state:')).map(([, v]) => v));
        state = Object.fromEntries(Object.entries(call).filter(([k]) => k.startsWith('state:')).map(([k, v]) => [k, v.buffer]));
      }
      const bufs = Object.fromEntries(Object.entries(call).map(([k, v]) => [k, k.startsWith('state:') ? state![k] : v.buffer]));
      submitPlan(g, step, bufs, B, 1, at).dims.destroy();
      const P = await downloadTensor(g, call[O_PROJECTION_PARTIALS]);
      const got = new Float64Array(B * HIDDEN);
      const want = new Float64Array(B * HIDDEN);
      for (let b = 0; b < B; b++) {
        for (let n = 0; n < HIDDEN; n++) {
          for (let p = 0; p < NP; p++) got[b * HIDDEN + n] += P[(p * B + b) * HIDDEN + n];
          for (let r = 0; r < inner; r++) want[b * HIDDEN + n] += ref.data[(b * T + at) * inner + r] * wo.data[n * inner + r];
        }
      }
      expectRelClose(got, want, 1e-4, `${file}, ${columns} columns, position ${at}`);
      for (const [k, v] of Object.entries(call)) if (!kept.includes(v)) releaseTensor(g, v);
    }
    for (const v of kept) releaseTensor(g, v);
  });

  it("a hardware adapter's split fills 256 threads with slices (no more than the reach has), a software one takes one; vec4 loads where the blocks tile a head's columns", () => {
    expect(oProjectionSplit(64, 64, false)).toEqual({ columns: 64, slices: 4 });
    expect(oProjectionSplit(16, 64, false)).toEqual({ columns: 16, slices: 16 });
    expect(oProjectionSplit(32, 3, false)).toEqual({ columns: 32, slices: 4 });
    expect(oProjectionSplit(64, 64, true)).toEqual({ columns: 64, slices: 1 });
    expect(oProjectionVec4(16, 64, true)).toBe(true);
    expect(oProjectionVec4(64, 64, true)).toBe(true);
    expect(oProjectionVec4(16, 64, false)).toBe(false); // o's row not [head, rest]: columns not contiguous
    expect(oProjectionVec4(4, 7, true)).toBe(false); // ragged blocks
    expect(oProjectionVec4(6, 12, true)).toBe(false); // not 16-byte aligned
  });

  it('softmax attention refuses it', () => {
    const c = compileFile('examples/variants/softmax.la');
    expect(() => recurrentPlan(c.program, axisSizes(c.program, { h: 2, d: 4, e: 4 }), 16, { oProjection: { hidden: 8, columns: 4 } })).toThrow(/softmax/);
  });
});
