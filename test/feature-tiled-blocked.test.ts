// The register-blocked feature-tiled kernel (backends/wgsl/feature-tiled-blocked.ts) against the float64 oracle:
// schedules whose micro-tiles pad rows, columns and features (clamped reads, guarded writes), a partial last
// feature tile, column tiles, and a sequence that ends mid-chunk; and the plain kernel at the same schedule.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { blockedSharedFloats } from '../backends/wgsl/feature-tiled-blocked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const based = compileFile('examples/variants/based.la');
const workgroupBytes = (code: string) => [...code.matchAll(/var<workgroup> \w+: array<(f32|vec4<f32>), (\d+)>/g)].reduce((n, m) => n + (m[1] === 'f32' ? 4 : 16) * Number(m[2]), 0);

/** based at d 16 (273 features), b 2, t tokens: the GPU, its axis sizes, seeded inputs and the float64 oracle's output. */
async function basedCase(t: number, seed: number) {
  const axes = { h: 2, d: 16, e: 8 };
  const x = makeInputs(based.source, { b: 2, t, axes, seed });
  return { g: await gpu(), sizes: axisSizes(based.source, axes), x, ref: evaluateParallel(based.source, x).data };
}

describe('the register-blocked feature-tiled kernel', () => {
  it('equals the float64 oracle at d 16 (273 features), b 2, t 37, over schedules that pad its micro-tiles', async () => {
    const seed = 5;
    const { g, sizes, x, ref } = await basedCase(37, seed);
    const schedules = [
      { chunk: 32, cols: 8, threads: 64, featureTile: 64 }, // 2 × 4 scores an invocation
      { chunk: 8, cols: 8, threads: 64, featureTile: 64 }, // 5 tiles, the last of 17 features; 8 column groups × 8 rows
      { chunk: 16, cols: 3, threads: 64, featureTile: 40 }, // 3-column tiles (a padded column), 2 × 32 groups, 16 rows
      { chunk: 4, cols: 8, threads: 128, featureTile: 96 }, // more row groups than chunk rows
    ];
    for (const s of schedules) {
      const { featureTile, ...schedule } = s;
      for (const tiledKernel of s.chunk === 32 ? (['blocked', 'plain'] as const) : (['blocked'] as const)) {
        const plan = lowerChunked(based.program, sizes, { fuse: false, schedule, featureTile, tiledKernel });
        const k = plan.kernels.find((k) => k.code.includes('over tiles of'))!;
        expect(k.code.includes('register-blocked')).toBe(tiledKernel === 'blocked');
        if (tiledKernel === 'blocked') expect(workgroupBytes(k.code)).toBe(4 * blockedSharedFloats({ ...s }, 273, 8));
        const runner = await PlanRunner.create(g, plan);
        expectRelClose((await runner.run(x, 2, 37)).data, ref, 1e-4, `seed ${seed}, ${tiledKernel} ${JSON.stringify(s)}`);
      }
    }
  });

  it('in the fused plan (tiles, the window term at its own schedule, one sum-and-combine) equals the oracle and repeats bit for bit', async () => {
    const seed = 9;
    const { g, sizes, x, ref } = await basedCase(45, seed);
    const tileSchedule = { chunk: 16, cols: 8, threads: 64 };
    const plan = lowerChunked(based.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 4, threads: 64 }, tileSchedule, featureTile: 64 });
    expect(plan.kernels.map((k) => k.label)).toEqual(['based.tiles.taylor', 'based.chunked.window', 'based.tile-sum+combine']);
    expect(plan.schedule.featureTile).toBe(64);
    const runner = await PlanRunner.create(g, plan);
    const first = (await runner.run(x, 2, 45)).data;
    expectRelClose(first, ref, 1e-4, `seed ${seed}, fused over feature tiles`);
    expect(Array.from((await runner.run(x, 2, 45)).data)).toEqual(Array.from(first));
  });

  it('is what the H200 gets at d 64, fused by default or as asked, unfused when asked, each kernel within 48 KB', () => {
    const H200 = { adapterName: 'NVIDIA H200 (nvidia, vulkan)', isSoftware: false, limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 } } as unknown as Gpu;
    const sizes = axisSizes(based.source, { h: 16, d: 64, e: 64 });
    for (const fuse of [undefined, true, false]) {
      const c = choosePlan(H200, based.program, sizes, fuse === undefined ? {} : { fuse }, { b: 4, t: 4096 });
      expect(c.fuse, `fuse ${fuse}`).toBe(fuse !== false);
      const plan = lowerChunked(based.program, sizes, { fuse: c.fuse, schedule: c.schedule, featureTile: c.featureTile, ...(c.tileSchedule && { tileSchedule: c.tileSchedule }) });
      // fused: tiles, window, sum-and-combine; unfused: also the window's feature kernels, the tile sum and the combine
      if (fuse === false) expect(plan.kernels.length).toBeGreaterThan(3);
      else expect(plan.kernels.map((k) => k.label)).toEqual(['based.tiles.taylor', 'based.chunked.window', 'based.tile-sum+combine']);
      for (const k of plan.kernels) expect(workgroupBytes(k.code), k.label).toBeLessThanOrEqual(49152);
      if (fuse !== false) expect(c.tileSchedule).toEqual({ chunk: 32, cols: 64, threads: 256 });
    }
  });
});
