// The H200's default picks for the bench model's decode batches (M 1, 3, 8), each run at its own M with small N and K (what a pick fixes —
// lanes, loads, columns per thread, blocks, slices — does not depend on N and K; the real shapes would take minutes on
// lavapipe), against the float64 formula. The H200's workgroup memory is capped at the test device's.
import { describe, expect, it } from 'vitest';
import { matmulKernel } from '../backends/wgsl/matmul.ts';
import { checkPickAtStandIn, H200, problem, SHAPES } from './helpers/projections.ts';
import { gpu } from './helpers/gpu.ts';

describe('the default small-M and rows picks for an H200 equal the float64 formula at odd sizes: decode batches (M 1, 3, 8)', () => {
  const [, projections] = SHAPES[0];
  for (const M of [1, 3, 8]) {
    for (const [i, p] of projections.entries()) {
      it(`M = ${M}: ${p.name}`, async () => {
        const g = await gpu();
        const target = { ...H200, limits: { ...H200.limits, maxComputeWorkgroupStorageSize: Math.min(H200.limits.maxComputeWorkgroupStorageSize, g.limits.maxComputeWorkgroupStorageSize) } };
        const pick = matmulKernel(target, problem(p, M));
        const plan = await checkPickAtStandIn(p, M, pick, 4000 + 10 * M + i);
        expect(plan.path, pick.kernel).toBe(pick.path);
      });
    }
  }
});
