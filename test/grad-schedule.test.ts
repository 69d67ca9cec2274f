// The gradient's default schedule and the grid-fill rule (src/runtime/grad-schedule.ts), without a device: the plans
// are data, and their chunk launches' grids are what the rule reads.
import { describe, expect, it } from 'vitest';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerGrad } from '../backends/wgsl/grad-lower.ts';
import { differentiate } from '../passes/autodiff.ts';
import { fillGrid, gradSchedule, widestChunkGrid } from '../src/runtime/grad-schedule.ts';
import { axisSizes } from '../src/inputs.ts';
import { loadVariant } from '../src/io/variant-file.ts';

const lowerer = (file: string, h: number, d: number) => {
  const p = loadVariant(file);
  const gp = differentiate(p);
  const sizes = axisSizes(p, { h, d, e: d });
  return (schedule: ChunkSchedule) => lowerGrad(gp, sizes, { fuse: true, stored: true, schedule, workgroupFloats: 49152 / 4, storageBuffers: 8 });
};

describe('gradient schedule', () => {
  it('hardware: chunk 16, 32 columns, 512 threads (or the adapter\'s most); software unchanged', () => {
    expect(gradSchedule({ isSoftware: false })).toEqual({ chunk: 16, cols: 32, threads: 512 });
    expect(gradSchedule({ isSoftware: false, limits: { maxComputeInvocationsPerWorkgroup: 256 } })).toEqual({ chunk: 16, cols: 32, threads: 256 });
    expect(gradSchedule({ isSoftware: true })).toEqual({ chunk: 8, cols: 64, threads: 64 });
  });

  it('elu_dwconv at b 4, h 16, d 64 keeps 32 columns: 128 workgroups, over half of 132 compute units', () => {
    const lower = lowerer('examples/paper/elu_dwconv.la', 16, 64);
    const plan = fillGrid(lower, gradSchedule({ isSoftware: false }), 4);
    expect(plan.schedule.cols).toBe(32);
    expect(widestChunkGrid(plan, 4)).toBe(4 * 16 * 2);
  });

  it('at b 1 the columns narrow until the grid reaches half the compute units (32 → 64 → 128 workgroups)', () => {
    const lower = lowerer('examples/paper/elu_dwconv.la', 16, 64);
    const base = gradSchedule({ isSoftware: false });
    expect(widestChunkGrid(lower(base), 1)).toBe(32);
    const plan = fillGrid(lower, base, 1);
    expect(plan.schedule.cols).toBe(8);
    expect(widestChunkGrid(plan, 1)).toBe(128);
    // more compute units would want more, but the rule stops at 8 columns
    expect(fillGrid(lower, base, 1, 1024).schedule.cols).toBe(8);
  });

  it('takes no narrower tile that does not grow the grid (d 8: one tile at every width down to 8)', () => {
    const lower = lowerer('examples/variants/retnet.la', 2, 8);
    const plan = fillGrid(lower, gradSchedule({ isSoftware: false }), 1);
    expect(plan.schedule.cols).toBe(32);
  });
});
