// The chunk kernel with φ and z as vec4 in workgroup memory (LowerOptions.vec4, chunked/analysis.ts PrefixPlan.vec4):
// φ staged four features an invocation, the score tiles, φ·z and φ·S_prev four features a trip. Checked against the
// float64 oracle on variants that take every branch of it — no decay (elu, elu_dwconv with its convolution's halo),
// a scalar decay (retnet), a per-feature decay (gla), a wide feature axis (hedgehog's 2m, performer's m), past groups
// (no longer than the chunk), segments, the exported decoding state — and that the kernels it must leave alone stage
// φ as f32: F not a multiple of 4, φ read by a bounded term as its query feature, an open group. And the convolution
// taps with their weights hoisted before the chunk loop (LowerOptions.hoistTaps, chunked/taps.ts), beside vec4.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { featureNodes } from '../backends/wgsl/feature-nodes.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { compileFile, compileText, type Compiled } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';

const SCHEDULE: ChunkSchedule = { chunk: 8, cols: 4, threads: 64 };
const vec4Phi = (code: string) => /var<workgroup> phi0: array<vec4<f32>/.test(code);
const vec4Psi = (code: string) => /var<workgroup> psi0: array<vec4<f32>/.test(code);
/** Schedules whose state update gives each invocation four features (F/4 · cols ≥ threads): ψ is vec4 too. */
const PSI4 = (F: number, cols: number, more: Partial<ChunkSchedule> = {}): ChunkSchedule => ({ chunk: 8, cols, threads: (F / 4) * cols, ...more });

/** A past_groups term with no bounded term beside it (so φ is not aliased): an open group where G exceeds the chunk. */
const OPEN_GROUP = `variant open_group
size G = 16
input q[h, d], k[h, d], v[h, e]
let fq = elu(q) + 1
let fk = elu(k) + 1
term global : past_groups(G) score dot(fq[i], fk[j], d) value v
output normalize(global, 1e-6)
`;

/**
 * The fused plan of `c` with vec4 on at each schedule, its chunk kernels' φ as vec4 (ψ too at a PSI4 schedule), equal
 * to the oracle at t = 45 and 3.
 */
async function matchesOracle(c: Compiled, axes: Record<string, number>, schedules: readonly ChunkSchedule[]): Promise<void> {
  for (const s of schedules) await matchesOracleAt(c, axes, s);
}

async function matchesOracleAt(c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  const plan = lowerChunked(c.program, sizes, { fuse: true, schedule, vec4: true });
  const chunkKernels = plan.kernels.filter((k) => /\.(chunked|segment-state)$/.test(k.label));
  expect(chunkKernels.length).toBeGreaterThan(0);
  expect(chunkKernels.every((k) => vec4Phi(k.code))).toBe(true);
  const F = Number(/var<workgroup> z0: array<vec4<f32>, (\d+)>/.exec(chunkKernels[0].code)![1]) * 4;
  const wantPsi = ((F / 4) * schedule.cols) / (schedule.block ?? 1) >= schedule.threads;
  expect(chunkKernels.every((k) => vec4Psi(k.code) === wantPsi)).toBe(true);
  const runner = await PlanRunner.create(g, plan);
  for (const t of [45, 3]) {
    const x = makeInputs(c.source, { b: 2, t, axes, seed: 70 + t });
    const o = await runner.run(x, 2, t);
    expectRelClose(o.data, evaluateParallel(c.source, x).data, 1e-4, `${c.source.name} vec4 ${JSON.stringify(schedule)} t=${t}`);
  }
}

describe('vec4 φ and z in the chunk kernel', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', { h: 2, d: 8, e: 8 }],
    ['examples/paper/elu.la', { h: 2, d: 16, e: 8 }],
    ['examples/variants/retnet.la', { h: 2, d: 8, e: 8 }],
    ['examples/variants/gla.la', { h: 2, d: 8, e: 8 }],
  ] as const)('%s equals the oracle over 6 chunks, the last of 5 rows, and one partial chunk, ψ f32 and vec4', async (file, axes) => {
    await matchesOracle(compileFile(file), axes, [SCHEDULE, PSI4(axes.d, 8)]);
  });

  it('hedgehog (F = 2m = 16) and performer (F = m = 12) equal the oracle, register-blocked too', async () => {
    await matchesOracle(compileFile('examples/variants/hedgehog.la', { sizes: { m: 8 } }), { h: 2, d: 4, e: 8 }, [SCHEDULE, PSI4(16, 4)]);
    await matchesOracle(compileFile('examples/paper/performer.la', { sizes: { m: 12 } }), { h: 2, d: 4, e: 8 }, [{ chunk: 8, cols: 8, threads: 16, block: 2 }, PSI4(12, 8, { threads: 12, block: 2 })]);
  });

  it('past groups (past_groups(8) over chunks of 8) and segments equal the oracle', async () => {
    await matchesOracle(compileText(OPEN_GROUP, 'open_group.la', { sizes: { G: 8 } }), { h: 2, d: 8, e: 4 }, [SCHEDULE, PSI4(8, 4)]);
    await matchesOracle(compileFile('examples/paper/elu_dwconv.la'), { h: 2, d: 8, e: 8 }, [{ chunk: 4, cols: 4, threads: 64, segment: 2 }, PSI4(8, 8, { chunk: 4, segment: 2 })]);
  });

  it('decoding continues from the state a vec4 prefill exports (z read back from vec4 lanes)', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 4, e: 4 };
    const c = compileFile('examples/paper/elu_dwconv.la');
    for (const threads of [64, 4]) {
      const sizes = axisSizes(c.program, axes);
      // 4 threads: one feature quad of 4 columns each, ψ vec4 too
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 4, cols: 4, threads }, exportState: true, vec4: true, hoistTaps: true });
      expect(vec4Phi(plan.kernels[0].code)).toBe(true);
      expect(vec4Psi(plan.kernels[0].code)).toBe(threads === 4);
      const prefill = await PlanRunner.create(g, plan);
      const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
      for (const t0 of [3, 11]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 300 + t0, what: `${c.source.name} vec4 prefill ${t0}` });
    }
  });

  it.each([
    ['examples/paper/elu_dwconv.la', { h: 2, d: 8, e: 8 }],
    ['examples/paper/elu_aug.la', { h: 2, d: 8, e: 4 }],
    ['examples/paper/llama_linearized.la', { h: 2, d: 8, e: 4 }],
  ] as const)('%s with its tap weights hoisted equals the oracle: plain, register-blocked, segmented (no groups), unfused; not hoisted with every feature in a prologue', async (file, axes) => {
    const g = await gpu();
    const c = compileFile(file, { sizes: 'C' in compileFile(file).source.sizes ? { C: 8 } : {} });
    const sizes = axisSizes(c.source, axes);
    // llama_linearized's groups rule out segments
    const segmented = /llama/.test(file) ? [] : [{ schedule: { chunk: 4, cols: 4, threads: 64, segment: 2 } }];
    // with every feature node in a prologue, the positions the taps read are materialised: read from their buffers,
    // not hoisted; the unfused plan reads them in place (feature-nodes.ts unfusedFeatures), so its taps are hoisted
    const all = new Set(featureNodes(c.program));
    const plans = [{ schedule: SCHEDULE }, { schedule: { chunk: 8, cols: 4, threads: 16, block: 2 } }, ...segmented, { schedule: SCHEDULE, fuse: false }, { schedule: SCHEDULE, prologue: all }];
    for (const { schedule, ...more } of plans) {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule, vec4: true, hoistTaps: true, ...more });
      const hoisted = !('prologue' in more);
      expect(plan.kernels.some((k) => k.code.includes('// hoisted taps of conv'))).toBe(hoisted);
      expect(plan.kernels.some((k) => k.code.includes('// direct taps of'))).toBe(!hoisted);
      const runner = await PlanRunner.create(g, plan);
      for (const t of [45, 3]) {
        const x = makeInputs(c.source, { b: 2, t, axes, seed: 80 + t });
        expectRelClose((await runner.run(x, 2, t)).data, evaluateParallel(c.source, x).data, 1e-4, `${file} hoisted taps ${JSON.stringify({ schedule, ...more })} t=${t}`);
      }
    }
  });

  it('stages φ as f32 where F is not a multiple of 4, a bounded term reads φ, or a group stays open across chunks', async () => {
    const performer = compileFile('examples/paper/performer.la', { sizes: { m: 6 } });
    expect(vec4Phi(lowerChunked(performer.program, axisSizes(performer.source, { h: 2, d: 4, e: 4 }), { fuse: true, schedule: SCHEDULE, vec4: true }).kernels[0].code)).toBe(false);
    // llama_linearized's local group term reads qn, the global term's φ, as its query feature
    const llama = compileFile('examples/paper/llama_linearized.la');
    const plan = lowerChunked(llama.program, axisSizes(llama.source, { h: 2, d: 8, e: 4 }), { fuse: true, schedule: SCHEDULE, vec4: true });
    expect(plan.kernels.some((k) => vec4Phi(k.code))).toBe(false);
    // an open group's z is updated feature by feature: vec4 there would store single components
    const open = compileText(OPEN_GROUP, 'open_group.la');
    const axes = { h: 2, d: 8, e: 4 };
    const grouped = lowerChunked(open.program, axisSizes(open.source, axes), { fuse: true, schedule: SCHEDULE, vec4: true });
    expect(vec4Phi(grouped.kernels[0].code)).toBe(false);
    const x = makeInputs(open.source, { b: 2, t: 45, axes, seed: 9 });
    expectRelClose((await (await PlanRunner.create(await gpu(), grouped)).run(x, 2, 45)).data, evaluateParallel(open.source, x).data, 1e-4, 'open group, vec4 asked');
  });
});
