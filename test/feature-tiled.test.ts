// based's Taylor features (1 + d + d²) fit no chunk kernel's workgroup memory at d 64; the unfused plan runs that
// term over tiles of features (backends/wgsl/feature-tiled.ts), partial numerators and denominators summed over
// the tiles in order. Plans are data, so the H200's plan is checked without it; on this adapter the tiled plan
// runs against the float64 oracle.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { featureTiledSchedules } from '../backends/wgsl/feature-tile-schedules.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const based = compileFile('examples/variants/based.la');
const adapter = (bytes: number, isSoftware: boolean) =>
  ({ adapterName: isSoftware ? 'llvmpipe (software)' : 'NVIDIA H200 (nvidia, vulkan)', isSoftware, limits: { maxComputeWorkgroupStorageSize: bytes, maxComputeInvocationsPerWorkgroup: 1024 } }) as unknown as Gpu;
const workgroupBytes = (code: string) => [...code.matchAll(/var<workgroup> \w+: array<(f32|vec4<f32>), (\d+)>/g)].reduce((n, m) => n + (m[1] === 'f32' ? 4 : 16) * Number(m[2]), 0);
const tiledKernels = (plan: Plan) => plan.kernels.filter((k) => k.code.includes('over tiles of'));

describe('based over tiles of its features', () => {
  it('at d 64 (4161 features) gets a plan whose every kernel fits 48 KB on the H200 and 32 KB on lavapipe', () => {
    const sizes = axisSizes(based.source, { h: 16, d: 64, e: 64 });
    for (const [bytes, software] of [[48 * 1024, false], [32 * 1024, true]] as const) {
      const c = choosePlan(adapter(bytes, software), based.program, sizes, {}, { b: 4, t: 4096 });
      // the fused plan over feature tiles (feature-tiled-plan.ts): tiles and the window term at schedules of their own
      expect(c.fuse).toBe(true);
      expect(c.featureTile).toBeGreaterThan(0);
      expect(c.reason).toMatch(/neither the fused kernel nor every unfused term kernel fits .* tiles of \d+ features/);
      const plan = lowerChunked(based.program, sizes, { fuse: true, schedule: c.schedule, featureTile: c.featureTile, tileSchedule: c.tileSchedule });
      expect(tiledKernels(plan).length).toBe(1);
      for (const k of plan.kernels) expect(workgroupBytes(k.code), `${k.label} at ${bytes} bytes`).toBeLessThanOrEqual(bytes);
      // Taylor features are computed inline, never materialised as [b, t, h, 4161]
      expect(plan.buffers.some((b) => b.name.startsWith('feat:') && b.floats(1, 1) >= 4161)).toBe(false);
    }
  });

  it("keeps to the device's invocation limit when its limits are getters (as GPUSupportedLimits' are)", () => {
    const sizes = axisSizes(based.source, { h: 16, d: 64, e: 64 });
    class Limits {
      get maxComputeWorkgroupStorageSize() {
        return 32 * 1024;
      }
      get maxComputeInvocationsPerWorkgroup() {
        return 128;
      }
    }
    const schedules = featureTiledSchedules(new Limits(), based.program, sizes);
    expect(schedules.length).toBeGreaterThan(0);
    expect(Math.max(...schedules.map((s) => s.threads))).toBe(128);
  });

  it('says none fits, in words that mean it, when not even a tiled plan does', () => {
    const sizes = axisSizes(based.source, { h: 2, d: 16, e: 8 });
    expect(featureTiledSchedules(adapter(1024, true).limits, based.program, sizes)).toEqual([]);
    expect(() => choosePlan(adapter(1024, true), based.program, sizes, {})).toThrow(/neither the fused kernel nor the unfused plan \(not even with its feature axes tiled\) fits in this adapter's 1024 bytes/);
  });

  it('equals the float64 oracle at d 16 (273 features) under an 8 KB limit, b 2, t not a multiple of the chunk, partial feature and column tiles', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 16, e: 8 };
    const sizes = axisSizes(based.source, axes);
    const c = choosePlan(adapter(8192, true), based.program, sizes, {}, { b: 2, t: 37 });
    expect(c.featureTile).toBeDefined();
    const seed = 7;
    const x = makeInputs(based.source, { b: 2, t: 37, axes, seed });
    const ref = evaluateParallel(based.source, x);
    // the plan choice's schedule, then 9 tiles (the last of 17 features) with column tiles of 3 of 8 columns
    for (const s of [{ ...c.schedule, featureTile: c.featureTile! }, { chunk: 8, cols: 3, threads: 64, featureTile: 32 }]) {
      const { featureTile, ...schedule } = s;
      const plan = lowerChunked(based.program, sizes, { fuse: false, schedule, featureTile });
      expect(tiledKernels(plan).length).toBe(1);
      const runner = await PlanRunner.create(g, plan);
      expectRelClose((await runner.run(x, 2, 37)).data, ref.data, 1e-4, `seed ${seed}, schedule ${JSON.stringify(s)}`);
    }
  });
});

describe('based at d 64 (4161 features) through runCompiled on this adapter', () => {
  // No adapter fits the fused kernel (~233 KB) or the plain unfused one, so the tiled plan and global staging are
  // what any device chooses here; tiny b, h, t, e keep lavapipe fast.
  it('the chunked form (feature-tiled) and the recurrent form (features in global memory) equal the float64 oracle', async () => {
    const g = await gpu();
    const axes = { h: 1, d: 64, e: 8 };
    const seed = 3;
    const x = makeInputs(based.source, { b: 2, t: 21, axes, seed });
    const ref = evaluateParallel(based.source, x);
    const chunked = await runCompiled(based, x, { device: 'gpu', gpu: g, form: 'chunked' });
    expect(chunked.plan!.schedule.featureTile).toBeGreaterThan(0);
    expectRelClose(chunked.o.data, ref.data, 1e-4, `seed ${seed}, chunked`);
    const recurrent = await runCompiled(based, x, { device: 'gpu', gpu: g, form: 'recurrent' });
    expect(recurrent.plan!.buffers.map((b) => b.name)).toContain('scratch:stage0');
    expectRelClose(recurrent.o.data, ref.data, 1e-4, `seed ${seed}, recurrent`);
  });
});

describe('decoding based with more features than workgroup memory holds', () => {
  it('stages φ, ψ, z in global memory at d 64 under 48 KB (66 KB in workgroup memory otherwise)', () => {
    const sizes = axisSizes(based.source, { h: 16, d: 64, e: 64 });
    expect(workgroupBytes(recurrentPlan(based.program, sizes).kernels[0].code)).toBeGreaterThan(48 * 1024);
    const plan = recurrentPlan(based.program, sizes, undefined, { maxWorkgroupBytes: 48 * 1024 });
    expect(workgroupBytes(plan.kernels[0].code)).toBeLessThanOrEqual(48 * 1024);
    expect(plan.buffers.map((b) => b.name)).toContain('scratch:stage0');
  });

  it('equals the float64 oracle token by token with its features in global memory (d 16, b 2)', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 16, e: 8 };
    const sizes = axisSizes(based.source, axes);
    // 4 KB: less than φ, ψ, lg, z of 273 features (4.4 KB), more than the rest (the partial sums of two output items
    // over 64 threads, the window's query and key features and scores).
    const plan = recurrentPlan(based.program, sizes, undefined, { maxWorkgroupBytes: 4096 });
    expect(plan.buffers.map((b) => b.name)).toContain('scratch:stage0');
    expect(workgroupBytes(plan.kernels[0].code)).toBeLessThanOrEqual(4096);
    const seed = 11;
    const x = makeInputs(based.source, { b: 2, t: 13, axes, seed });
    const runner = await PlanRunner.create(g, plan);
    expectRelClose((await runner.run(x, 2, 13)).data, evaluateParallel(based.source, x).data, 1e-4, `seed ${seed}, recurrent, features in global memory`);
  });
});
