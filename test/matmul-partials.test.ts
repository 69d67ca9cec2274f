// The partial products the attention's decode step leaves when it folds in the o projection
// (backends/wgsl/recurrent-o-proj.ts): gate|up normalises x + Σ_p P[p], down writes x ← (x + Σ_p P[p]) + act·W_downᵀ.
import { describe, expect, it } from 'vitest';
import { matmulKernel, matmulPathFor } from '../backends/wgsl/matmul.ts';
import type { MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { checkFusedMatmul, EPS } from './helpers/fused-matmul.ts';
import { gpu } from './helpers/gpu.ts';
import { H200 } from './helpers/projections.ts';

const gateUp = (count: number): MatmulFusion => ({ rmsnorm: { eps: EPS }, epilogue: 'swiglu', partials: { count, side: 'input' } });
const down = (count: number): MatmulFusion => ({ epilogue: 'accumulate', partials: { count, side: 'output' } });

describe('partial products added to the rows or to the residual, against the float64 formula', () => {
  it('gate|up: swiglu(rmsnorm(x + Σ_p P[p])·[W_gate; W_up]ᵀ) at 1, 2 and 8 rows, vec4 and scalar loads, rows staged in workgroup memory or not', async () => {
    for (const [M, count, K] of [[1, 4, 64], [2, 12, 36], [8, 3, 37]] as const) {
      const staged = await checkFusedMatmul(M, 2 * 23, K, gateUp(count), 3100 + M);
      expect(staged.path).toBe('small-m');
      expect(staged.kernel).toMatch(/rows staged/);
      const direct = await checkFusedMatmul(M, 2 * 23, K, gateUp(count), 3150 + M, { smallMStage: false });
      expect(direct.kernel).not.toMatch(/rows staged/);
    }
  });

  it('down: x ← (x + Σ_p P[p]) + a·Wᵀ at 1, 2 and 8 rows, with 1 to 4 columns per thread', async () => {
    for (const [M, count] of [[1, 4], [2, 12], [8, 1]] as const) await checkFusedMatmul(M, 29, 52, down(count), 3200 + M);
    for (const cols of [2, 3]) await checkFusedMatmul(5, 31, 40, down(6), 3300 + cols, { smallMCols: cols });
  });

  it('rows in blocks (a tree-sized M, the last block partial; on the grid too) and a plain rmsnorm store read the partials too', async () => {
    await checkFusedMatmul(13, 2 * 9, 20, gateUp(2), 3400);
    await checkFusedMatmul(13, 2 * 9, 20, gateUp(2), 3402, { smallMRowBlocks: 1 });
    await checkFusedMatmul(13, 2 * 9, 20, gateUp(2), 3403, { smallMStage: false });
    await checkFusedMatmul(3, 17, 24, { rmsnorm: { eps: EPS }, partials: { count: 5, side: 'input' } }, 3401);
  });

  it("the H200's decode gate|up stages its rows where they fit beside the reduction (hidden 768 at 1 and 8 rows), not a 7B's 4096 at 8", () => {
    const at = (M: number, K: number) => matmulKernel(H200, { M, N: 2 * 2048, K, transposeB: true, fusion: gateUp(12) }).kernel;
    expect(at(1, 768)).toMatch(/rows staged/);
    expect(at(8, 768)).toMatch(/rows staged/);
    expect(at(1, 4096)).toMatch(/rows staged/);
    expect(at(8, 4096)).not.toMatch(/rows staged/);
  });

  it('the chooser sends partials to the small-M kernel, and other paths and shapes refuse them', async () => {
    const g = await gpu();
    const wide = { M: 17, N: 4096, K: 768, transposeB: true, fusion: gateUp(12) } as const;
    expect(matmulPathFor(wide, { isSoftware: false })).toBe('small-m');
    expect(() => matmulKernel(g, wide, { path: 'rows' })).toThrow(/small-m Wᵀ path only/);
    expect(() => matmulKernel(g, { M: 1, N: 8, K: 8, transposeB: true, fusion: { partials: { count: 2, side: 'output' } } })).toThrow(/accumulate/);
    expect(() => matmulKernel(g, { M: 1, N: 8, K: 8, transposeB: true, fusion: { epilogue: 'accumulate', partials: { count: 0, side: 'output' } } })).toThrow(/positive integer/);
  });
});
