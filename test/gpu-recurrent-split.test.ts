// The decode step split over (column block) workgroups and (column, feature/lag slice) threads
// (backends/wgsl/recurrent-split.ts) against the float64 parallel oracle, at sizes where nothing divides: 6
// features on 4 slices (the last slice past F) or 8 (two empty), 7 columns in blocks of 4 or 2, batch 3, groups
// and windows shorter than the calls, calls of several tokens between single-token steps (the in-call positions
// are read from the inputs, z carried in workgroup memory and written per column, the commit kernel advancing the
// rings after a call of several tokens).
import { describe, expect, it } from 'vitest';
import { lagRange } from '../src/ir/masks.ts';
import { recurrentPlan, type RecurrentSplit } from '../backends/wgsl/recurrent.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { expectRecurrentOracle } from './helpers/recurrent-oracle.ts';

const AXES = { h: 3, d: 6, e: 7 };
const B = 3;
const H200_ELU: [string, Record<string, number>, Record<string, number>] = ['examples/paper/elu_dwconv.la', { h: 12, d: 64, e: 64 }, { K: 32 }];
const H200_7B: [string, Record<string, number>, Record<string, number>] = ['examples/models/llama/linearized_aug.la', { h: 32, d: 128, e: 128 }, {}];
const CALLS = [4, 1, 1, 3, 1, 1]; // tokens per call: 11 in all


const CASES: [string, Record<string, number>, RecurrentSplit][] = [
  // a group term, an open past_groups term (groups of 4 cross the calls), a 3-tap conv; RoPE and L2 norms staged
  ['examples/models/llama/linearized_aug.la', { C: 4, K: 3 }, { columns: 4, slices: 4 }],
  // a per-column convolution score (w[h, e, lag]) beside a plain prefix term; slices 6 and 7 hold no row
  ['examples/paper/elu_dwconv.la', {}, { columns: 2, slices: 8 }],
  // a per-feature decay gate
  ['examples/variants/gla.la', {}, { columns: 4, slices: 4 }],
];

describe('the split decode step', () => {
  it.each(CASES)('%s %o with %o equals the oracle over calls of 4, 1, 1, 3, 1, 1 tokens at b 3', async (file, sizes0, split) => {
    const full = compileFile(file);
    const c = compileFile(file, { sizes: Object.fromEntries(Object.entries(sizes0).filter(([k]) => k in full.source.sizes)) });
    const sizes = axisSizes(c.program, AXES);
    const plan = recurrentPlan(c.program, sizes, undefined, { split });
    expect(plan.schedule).toMatchObject({ columns: split.columns, slices: split.slices, columnBlocks: Math.ceil(AXES.e / split.columns) });
    expect(plan.kernels[0].workgroups(B, 1)).toEqual([AXES.h * Math.ceil(AXES.e / split.columns), B, 1]);
    expect(AXES.d % split.slices !== 0 && AXES.e % split.columns !== 0).toBe(true);
    await expectRecurrentOracle(c, plan, AXES, B, CALLS, 31 + split.slices, `${file} split ${split.columns}x${split.slices}`);
  });
});

describe('the default split', () => {
  // The two shapes measured on the H200 (recurrent.ts's step was 32 workgroups of 64 threads for the 7B shape).
  it.each([H200_ELU, H200_7B])('%s at %o launches over 2 × 132 workgroups at batch 1, no thread walking more than 8 rows or lags', (file, axes, sizes) => {
    const c = compileFile(file, { sizes });
    const plan = recurrentPlan(c.program, axisSizes(c.program, axes), undefined, { hardware: true });
    const { columns, slices, workgroups } = plan.schedule;
    expect(plan.kernels[0].workgroups(1, 1)[0]).toBe(workgroups);
    expect(workgroups).toBeGreaterThanOrEqual(264);
    expect(columns * slices).toBeLessThanOrEqual(256);
    const longest = Math.max(...c.program.terms.filter((t) => t.form.kind !== 'prefix').map((t) => lagRange(t.mask)![1] + 1));
    expect(plan.schedule).toMatchObject({ rowsPerThread: Math.ceil(axes.d / slices), lagsPerThread: Math.ceil(longest / slices) });
    expect(Math.max(plan.schedule.rowsPerThread, plan.schedule.lagsPerThread)).toBeLessThanOrEqual(8);
  });
  // Batch 1's splits as measured on the H200 (elu_dwconv ~10 µs a layer at 384 workgroups): the batch must not move them.
  it.each([
    [...H200_ELU, { columns: 2, slices: 64, workgroups: 384 }],
    [...H200_7B, { columns: 8, slices: 32, workgroups: 512 }],
  ] as const)('%s at %o keeps its batch-1 split %o', (file, axes, sizes, want) => {
    const c = compileFile(file, { sizes });
    for (const batch of [undefined, 1]) expect(recurrentPlan(c.program, axisSizes(c.program, axes), undefined, { hardware: true, ...(batch && { batch }) }).schedule).toMatchObject(want);
  });
  // At batch 8 batch 1's split launched 3072 workgroups for elu_dwconv (two waves on 132 SMs, 16.8 µs a layer).
  it.each([
    [...H200_ELU, { columns: 16, slices: 16, workgroups: 48 }],
    [...H200_7B, { columns: 64, slices: 4, workgroups: 64 }],
  ] as const)('%s at %o widens its column blocks at batch 8 to %o, still 2 × 132 workgroups', (file, axes, sizes, want) => {
    const c = compileFile(file, { sizes });
    const plan = recurrentPlan(c.program, axisSizes(c.program, axes), undefined, { hardware: true, batch: 8 });
    expect(plan.schedule).toMatchObject(want);
    expect(plan.kernels[0].workgroups(8, 1)).toEqual([want.workgroups, 8, 1]);
    expect(8 * want.workgroups).toBeGreaterThanOrEqual(264);
    expect(plan.schedule.columns * plan.schedule.slices).toBeLessThanOrEqual(256);
  });
  it('the batch-8 hardware split of elu_dwconv at 12 × 64 equals the oracle over calls of 4, 1, 1, 3, 1, 1 tokens at b 8', async () => {
    const [file, axes, sizes] = H200_ELU;
    const c = compileFile(file, { sizes });
    const plan = recurrentPlan(c.program, axisSizes(c.program, axes), undefined, { hardware: true, batch: 8 });
    expect(plan.schedule).toMatchObject({ columns: 16, slices: 16 });
    await expectRecurrentOracle(c, plan, axes, 8, CALLS, 47, `${file} batch-8 split 16x16`);
  });
  it('keeps one workgroup of 64 column threads per head slice on a software adapter (the default)', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const plan = recurrentPlan(c.program, axisSizes(c.program, { h: 2, d: 4, e: 6 }));
    expect(plan.schedule).toMatchObject({ columns: 64, slices: 1, columnBlocks: 1, workgroups: 2 });
  });
});
