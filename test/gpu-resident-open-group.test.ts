// A past_groups term's open group in subgroup lanes' registers (chunked/resident.ts): where a group spans several chunks
// the fold gathers the chunk into So, zo registers, which join S, z at the next group's start, so the outputs read the
// closed groups only. Checked against the float64 oracle on the whole sequence (groups of 16 over chunks of 8: every
// group open across two chunks; several groups, a last one cut short, two batches): the fused kernel in one walk and
// over segments (their state export adds the open group), and the unfused plan whose prefix term kernel alone keeps
// its state in registers, at a schedule of its own. lavapipe's subgroups are 8 lanes, so d 16 gives 2 features a lane.
// And the decoding state such plans export (the last group apart, So and zo from the registers; an unfused plan's
// kernels each their own part: two prefix kernels their terms' S and z, the stateless kernels the rings):
// decoding goes on from it as from the sequence's own state.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked, type LowerOptions } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, compileText } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { TWO_PREFIX } from './helpers/variants.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';
import { chunkScale } from './helpers/subgroups.ts';

// At lavapipe's subgroup size 8; chunks, groups and lengths grow with the subgroup size (chunkScale: 4× at 32), so every
// group still spans two chunks.
const R = chunkScale((await gpu()).subgroupSize ?? 8);
const T = 61 * R; // 8 chunks of 8, the last of 5 rows: 4 groups of 16, the last of 13
const B = 2;
const FILES = ['examples/paper/llama_linearized.la', 'examples/paper/flash.la'];

async function matchesOracle(file: string, opts: (sg: number) => Omit<LowerOptions, 'subgroupSize' | 'resident'>, skip: () => void): Promise<string[]> {
  const g = await gpu();
  const sg = g.subgroupSize;
  if (!sg) {
    skip();
    return [];
  }
  const c = compileFile(file, { sizes: { C: 16 * R } });
  const axes = { h: 2, d: 2 * sg, e: 8 };
  const sizes = axisSizes(c.source, axes);
  const o = opts(sg);
  const plan = lowerChunked(c.program, sizes, { ...o, resident: true, subgroupSize: sg } as LowerOptions);
  const x = makeInputs(c.source, { b: B, t: T, axes, seed: 141 });
  expectRelClose((await (await PlanRunner.create(g, plan)).run(x, B, T)).data, evaluateParallel(c.source, x).data, 1e-4, `${file} ${JSON.stringify(o.schedule)} rs`);
  return plan.kernels.map((k) => k.code);
}

describe("a past_groups term's open group in lanes' registers", () => {
  it.for(FILES)('%s: the fused resident kernel equals the oracle in one walk and over segments', async (file, ctx) => {
    const fused = (schedule: ChunkSchedule) => (sg: number) => ({ fuse: true, schedule: { ...schedule, threads: 8 * sg }, prologue: new Set<number>() });
    const one = await matchesOracle(file, fused({ chunk: 8 * R, cols: 8, threads: 0 }), () => ctx.skip());
    expect(one.at(-1)).toMatch(/rSo0_0/);
    expect(one.at(-1)).not.toMatch(/var<workgroup> (S0|So0|zo0):/);
    // segments of 2 chunks (16 rows: group starts), spans of 2
    await matchesOracle(file, fused({ chunk: 8 * R, cols: 8, threads: 0, segment: 2 }), () => ctx.skip());
    await matchesOracle(file, fused({ chunk: 8 * R, cols: 8, threads: 0, segment: 2, span: 2 }), () => ctx.skip());
  });

  it.for(FILES)('%s: the unfused plan with its prefix kernel resident at its own schedule equals the oracle', async (file, ctx) => {
    const codes = await matchesOracle(file, (sg) => ({ fuse: false, schedule: { chunk: 4, cols: 4, threads: 64, segment: 3 }, residentSchedule: { chunk: 8 * R, cols: 8, threads: 8 * sg } }), () => ctx.skip());
    // the prefix kernel over segments of a group (16 rows) in spans of 2: its state launch, the scan, its output launch
    const spans = await matchesOracle(file, (sg) => ({ fuse: false, schedule: { chunk: 4, cols: 4, threads: 64 }, residentSchedule: { chunk: 8 * R, cols: 8, threads: 8 * sg, segment: 2, span: 2 } }), () => ctx.skip());
    expect(spans.filter((c) => /terms global/.test(c)).length).toBe(2);
    const global = codes.find((c) => /terms global/.test(c))!;
    expect(global).toMatch(/rSo0_0/);
    expect(global).toMatch(new RegExp(`chunk ${8 * R}, 8 value columns`));
    expect(codes.find((c) => /terms local/.test(c))).toMatch(/chunk 4, 4 value columns/);
  });

  it.for(['examples/paper/llama_linearized.la', 'two_prefix'])('%s: decoding continues from the state an unfused prefill exports, its prefix kernels resident or not', async (file, ctx) => {
    const g = await gpu();
    const sg = g.subgroupSize;
    if (!sg) return ctx.skip();
    const c = file === 'two_prefix' ? compileText(TWO_PREFIX, 'two_prefix.la') : compileFile(file, { sizes: { C: 16 * R } });
    const axes = { h: 2, d: 2 * sg, e: 8 };
    const sizes = axisSizes(c.program, axes);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    const schedule = { chunk: 4, cols: 4, threads: 64, segment: 3 };
    for (const resident of [false, true]) {
      // (resident: the prefix kernels over segments of 2 chunks, 16 rows, in spans of 2, as the plan choice runs them at b 1)
      const lanes = resident ? { resident: true, subgroupSize: sg, residentSchedule: { chunk: 8 * R, cols: 8, threads: 8 * sg, ...(file === 'two_prefix' ? {} : { segment: 2, span: 2 }) } } : {};
      const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: false, schedule, exportState: true, ...lanes }));
      // 40 rows: the last group of 16 open (8 rows), 4 segments of 12, the last short; 48 with the fused kernel below
      await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0: 40 * R, steps: 2, seed: 380, what: `${file} unfused${resident ? ' rs' : ''} prefill ${40 * R}` });
    }
  });

  it.for(['examples/paper/llama_linearized.la'])('%s: decoding continues from the state the fused resident kernel exports (its last group apart)', async (file, ctx) => {
    const g = await gpu();
    const sg = g.subgroupSize;
    if (!sg) return ctx.skip();
    const c = compileFile(file, { sizes: { C: 16 * R } });
    const axes = { h: 2, d: 2 * sg, e: 8 };
    const sizes = axisSizes(c.program, axes);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8 * R, cols: 8, threads: 8 * sg }, exportState: true, resident: true, subgroupSize: sg, prologue: new Set() }));
    // 48 rows: ending on a group's end, the group just closed kept apart
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0: 48 * R, steps: 2, seed: 390, what: `${file} fused rs prefill ${48 * R}` });
  });
});
