// A segmented plan's output launch over spans of segments (ChunkSchedule.span): the state launch folds short segments
// over many workgroups and none of the last span's, and each output workgroup sums the own states of the segments
// before its span (no scan launch) and walks its span from there. The resident kernel keeps the scan launch and
// starts from the scanned state at the span's first segment. Checked against the float64 oracle (spans of 2 and 3, a
// last span shorter than the others, two batches, two prefix terms) and by decoding on from the state the last span
// exports, beside the same plan without spans.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, compileText, type Compiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { TWO_PREFIX } from './helpers/variants.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';
import { chunkScale, rsChunk } from './helpers/subgroups.ts';


const T = 45; // 6 chunks of 8, the last of 5 rows (the resident kernel's chunks and T grow with the subgroup size: chunkScale)

async function matchesOracle(c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule, b = 1): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  const plan = lowerChunked(c.program, sizes, { fuse: true, schedule });
  const out = plan.kernels.find((k) => k.label.endsWith('.chunked'))!;
  const state = plan.kernels.find((k) => k.label.endsWith('.segment-state'))!;
  expect(out.code).toContain('nspan');
  expect(state.code).toMatch(/if \(sg >= \(nspan - 1u\) \* \d+u\) \{ return; \}/);
  const x = makeInputs(c.source, { b, t: T, axes, seed: 97 });
  expectRelClose((await (await PlanRunner.create(g, plan)).run(x, b, T)).data, evaluateParallel(c.source, x).data, 1e-4, `${c.source.name} ${JSON.stringify(schedule)}`);
}

describe('segmented plans over spans of segments', () => {
  it('elu_dwconv equals the oracle: segments of one chunk in spans of 2 and 3, segments of 2 in spans of 2 (a last span of one segment)', async () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    for (const s of [{ segment: 1, span: 2 }, { segment: 1, span: 3 }, { segment: 2, span: 2 }]) {
      await matchesOracle(c, { h: 2, d: 16, e: 16 }, { chunk: 8, cols: 16, threads: 64, ...s }, 2);
    }
  });

  it('two prefix terms in one kernel, and a blocked schedule, equal the oracle', async () => {
    await matchesOracle(compileText(TWO_PREFIX, 'two_prefix.la'), { h: 2, d: 8, e: 8 }, { chunk: 8, cols: 8, threads: 64, segment: 1, span: 4 });
    await matchesOracle(compileFile('examples/paper/elu.la'), { h: 2, d: 16, e: 16 }, { chunk: 8, cols: 16, threads: 64, segment: 1, span: 2, block: 2 });
  });

  it('decoding continues from the state the last span exports', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 8, threads: 64, segment: 1, span: 2 }, exportState: true });
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    // 21 rows: 3 segments, spans of 2 and 1; 32 rows: 4 segments, two full spans
    for (const t0 of [21, 32]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 330 + t0, what: `elu_dwconv spans prefill ${t0}` });
  });

  // A past_groups term (llama_linearized, groups of 16): the last span exports S (closed groups) and So (the group
  // still open, or just closed at a group's end) as decoding keeps them, from its own open group.
  it('decoding continues from the state the last span of a past_groups plan exports', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    const c = compileFile('examples/paper/llama_linearized.la', { sizes: { C: 16 } });
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 8, threads: 64, segment: 2, span: 2 }, exportState: true, prologue: new Set() });
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    // 40 rows: 3 segments (the last partial, in an open group), spans of 2 and 1; 64 rows: 4 segments, ending on a group's end
    for (const t0 of [40, 64]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 340 + t0, what: `llama_linearized spans prefill ${t0}` });
  });

  // A decayed state (retnet's scalar gate, gla's per feature): the last span starts from the segments before it combined
  // through their Σ log decay (chunked/segments.ts) and exports the state decoding continues from.
  it.each(['examples/variants/retnet.la', 'examples/variants/gla.la'])('decoding continues from the state the last span of %s exports', async (file) => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    const c = compileFile(file);
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 8, threads: 64, segment: 1, span: 2 }, exportState: true });
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    for (const t0 of [21, 32]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 350 + t0, what: `${file} spans prefill ${t0}` });
  });

  it('the resident kernel over spans (state in subgroup lanes\' registers, the scan launch kept) equals the oracle', async (ctx) => {
    const g = await gpu();
    const sg = g.subgroupSize;
    if (!sg) return ctx.skip(); // no fixed subgroup size (lavapipe's is 8: gpu-chunk-resident.test.ts)
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 4 * sg, e: 16 };
    const sizes = axisSizes(c.source, axes);
    const r = chunkScale(sg);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: rsChunk(8, sg, 2), cols: 16, threads: 8 * sg, segment: 1, span: 2 }, resident: true, subgroupSize: sg });
    expect(plan.kernels.map((k) => k.label.split('.').at(-1))).toEqual(['segment-state', 'segment-scan', 'chunked']);
    const x = makeInputs(c.source, { b: 2, t: T * r, axes, seed: 98 });
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 2, T * r)).data, evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv rs over spans');
  });

  // A decayed state in lanes' registers (retnet's scalar decay, gla's per feature): the state launch's Σ log decay, the
  // scan applying it, the output launch starting from the scanned state; and decoding on from what its last span exports.
  it.for(['examples/variants/retnet.la', 'examples/variants/gla.la'])('the resident kernel over spans of %s (a decayed state) equals the oracle, and decoding continues from it', async (file, ctx) => {
    const g = await gpu();
    const sg = g.subgroupSize;
    if (!sg) return ctx.skip(); // no fixed subgroup size (lavapipe's is 8: gpu-chunk-resident.test.ts)
    const c = compileFile(file);
    const axes = { h: 2, d: 4 * sg, e: 16 };
    const sizes = axisSizes(c.source, axes);
    const r = chunkScale(sg);
    const schedule = { chunk: rsChunk(8, sg, 2), cols: 16, threads: 8 * sg, segment: 1, span: 2 };
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule, resident: true, subgroupSize: sg });
    expect(plan.kernels.map((k) => k.label.split('.').at(-1))).toEqual(['segment-state', 'segment-scan', 'chunked']);
    const x = makeInputs(c.source, { b: 2, t: T * r, axes, seed: 99 });
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 2, T * r)).data, evaluateParallel(c.source, x).data, 1e-4, `${file} rs over spans`);
    if (!file.includes('retnet')) return; // (one decayed export is enough: lavapipe compiles these kernels slowly)
    const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule, resident: true, subgroupSize: sg, exportState: true }));
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0: 21 * r, steps: 2, seed: 361, what: `${file} rs spans prefill ${21 * r}` });
  });

  it('launches a workgroup a span in the output launch and none past the spans the scan needs in the state launch', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, { h: 2, d: 16, e: 16 });
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 16, threads: 64, segment: 2, span: 4 } });
    const grid = (label: string, t: number) => plan.kernels.find((k) => k.label.endsWith(label))!.workgroups(1, t);
    // 4096 rows: 512 chunks, 256 segments of 2, 64 spans of 4: the state launch folds the 252 before the last span;
    // no scan launch (the output launch sums its span's incoming state); 40 rows: 5 chunks, 3 segments, one span
    expect(plan.kernels.map((k) => k.label.split('.').at(-1))).toEqual(['segment-state', 'chunked']);
    expect(grid('.segment-state', 4096)).toEqual([2, 252, 1]);
    expect(grid('.chunked', 4096)).toEqual([2, 64, 1]);
    expect(grid('.segment-state', 40)).toEqual([2, 1, 1]);
    expect(grid('.chunked', 40)).toEqual([2, 1, 1]);
    expect(plan.schedule).toEqual({ chunk: 8, cols: 16, threads: 64, segment: 2, span: 4 });
  });
});
