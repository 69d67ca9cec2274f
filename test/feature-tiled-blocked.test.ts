// The register-blocked feature-tiled kernel (backends/wgsl/feature-tiled-blocked.ts) against the float64 oracle:
// schedules whose micro-tiles pad rows, columns and features (clamped reads, guarded writes), a partial last
// feature tile, column tiles, and a sequence that ends mid-chunk; and the plain kernel at the same schedule.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { blockedSharedFloats } from '../backends/wgsl/feature-tiled-blocked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const based = compileFile('examples/variants/based.la');
const workgroupBytes = (code: string) => [...code.matchAll(/var<workgroup> \w+: array<f32, (\d+)>/g)].reduce((n, m) => n + 4 * Number(m[1]), 0);

describe('the register-blocked feature-tiled kernel', () => {
  it('equals the float64 oracle at d 16 (273 features), b 2, t 37, over schedules that pad its micro-tiles', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 16, e: 8 };
    const sizes = axisSizes(based.source, axes);
    const seed = 5;
    const x = makeInputs(based.source, { b: 2, t: 37, axes, seed });
    const ref = evaluateParallel(based.source, x).data;
    const schedules = [
      { chunk: 8, cols: 8, threads: 64, featureTile: 64 }, // 5 tiles, the last of 17 features; 8 column groups × 8 rows
      { chunk: 16, cols: 3, threads: 64, featureTile: 40 }, // 3-column tiles (a padded column), 2 × 32 groups, 16 rows
      { chunk: 4, cols: 8, threads: 128, featureTile: 96 }, // more row groups than chunk rows
    ];
    for (const s of schedules) {
      const { featureTile, ...schedule } = s;
      for (const tiledKernel of ['blocked', 'plain'] as const) {
        const plan = lowerChunked(based.program, sizes, { fuse: false, schedule, featureTile, tiledKernel });
        const k = plan.kernels.find((k) => k.code.includes('over tiles of'))!;
        expect(k.code.includes('register-blocked')).toBe(tiledKernel === 'blocked');
        if (tiledKernel === 'blocked') expect(workgroupBytes(k.code)).toBe(4 * blockedSharedFloats({ ...s }, 273, 8));
        const runner = await PlanRunner.create(g, plan);
        expectRelClose((await runner.run(x, 2, 37)).data, ref, 1e-4, `seed ${seed}, ${tiledKernel} ${JSON.stringify(s)}`);
      }
    }
  });
});
