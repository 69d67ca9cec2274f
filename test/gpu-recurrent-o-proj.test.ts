// The decode step with the o projection folded in (backends/wgsl/recurrent-o-proj.ts): each workgroup's partial
// product of o·W_oᵀ over its own columns, summed over the workgroups, must equal the float64 oracle's o times W_o,
// step after step on one state (the state the fused step advances is the same one), at sizes where the column
// blocks do not divide the value columns (7 in blocks of 4), with slices that leave rows empty, and with lanes
// sharing each output whose passes over the outputs end ragged (10 outputs, 4 or 8 a pass).
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { recurrentPlan, type RecurrentSplit } from '../backends/wgsl/recurrent.ts';
import { O_PROJECTION_PARTIALS, oProjectionLanes, oProjectionSplit } from '../backends/wgsl/recurrent-o-proj.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { downloadTensor, releaseTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { inputRows, submitPlan } from './helpers/plan-calls.ts';

const AXES = { h: 3, d: 6, e: 7 };
const B = 2;
const T = 5;
const HIDDEN = 10;

const CASES: [string, Record<string, number>, number, RecurrentSplit | undefined, number | undefined][] = [
  // a per-column convolution score beside a plain prefix term: two column blocks per head, 4 slices, 4 lanes
  ['examples/paper/elu_dwconv.la', {}, 4, { columns: 4, slices: 4 }, 4],
  // a whole head per workgroup, the software split (one slice) and one lane
  ['examples/paper/elu_dwconv.la', {}, 64, undefined, undefined],
  // a group term, an open past_groups term, a 3-tap conv (rings written by column block 0 at t = 1), 2 lanes
  ['examples/models/llama/linearized_aug.la', { C: 4, K: 3 }, 4, { columns: 4, slices: 2 }, 2],
  // a per-feature decay gate, 8 lanes (a hardware adapter's)
  ['examples/variants/gla.la', {}, 8, { columns: 8, slices: 8 }, 8],
];

describe('the decode step with the o projection folded in', () => {
  it.each(CASES)('%s %o, %i columns, split %o, lanes %s: Σ_p P[p] = o·W_oᵀ at every step at b 2', async (file, sizes0, columns, split, lanes) => {
    const g = await gpu();
    const full = compileFile(file);
    const c = compileFile(file, { sizes: Object.fromEntries(Object.entries(sizes0).filter(([k]) => k in full.source.sizes)) });
    const sizes = axisSizes(c.program, AXES);
    const plan = recurrentPlan(c.program, sizes, undefined, { oProjection: { hidden: HIDDEN, columns, ...(lanes && { lanes }) }, ...(split && { split }) });
    const NP = AXES.h * Math.ceil(AXES.e / Math.min(columns, split?.columns ?? columns));
    expect(plan.schedule).toMatchObject({ oPartials: NP, oLanes: lanes ?? 1 });
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

  it("a hardware adapter's split fills 256 threads with slices (no more than the reach has) and puts 8 lanes on an output; a software one, one of each", () => {
    expect(oProjectionSplit(64, 64, false)).toEqual({ columns: 64, slices: 4 });
    expect(oProjectionSplit(16, 64, false)).toEqual({ columns: 16, slices: 16 });
    expect(oProjectionSplit(32, 3, false)).toEqual({ columns: 32, slices: 4 });
    expect(oProjectionSplit(64, 64, true)).toEqual({ columns: 64, slices: 1 });
    expect(oProjectionLanes({ hidden: 768, columns: 64 }, 256, false)).toBe(8);
    expect(oProjectionLanes({ hidden: 768, columns: 4 }, 256, false)).toBe(4);
    expect(oProjectionLanes({ hidden: 768, columns: 64 }, 64, true)).toBe(1);
    expect(() => oProjectionLanes({ hidden: 768, columns: 64, lanes: 3 }, 256, false)).toThrow(/power of two/);
  });

  it('softmax attention refuses it', () => {
    const c = compileFile('examples/variants/softmax.la');
    expect(() => recurrentPlan(c.program, axisSizes(c.program, { h: 2, d: 4, e: 4 }), 16, { oProjection: { hidden: 8, columns: 4 } })).toThrow(/softmax/);
  });
});
