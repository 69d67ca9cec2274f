// The unfused plan's stateless kernels over segments (lower.ts): a term with no state (a quadratic term within groups,
// a window) reads only rows near its own, so its chunks are independent and a schedule's `segment` splits each walk
// over b·heads·tiles·segments workgroups; its prefix term kernels keep their one walk. Checked against the float64
// oracle on the whole sequence: segments that start inside a group (flash's and llama_linearized's groups of 16 cut by
// segments of 8 and 24 rows), a last segment shorter than the others, two batches; and the kernels' launches.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, type Compiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const T = 45; // 6 chunks of 8, the last of 5 rows
const B = 2;

async function matchesOracle(c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  const plan = lowerChunked(c.program, sizes, { fuse: false, schedule });
  const x = makeInputs(c.source, { b: B, t: T, axes, seed: 131 });
  expectRelClose((await (await PlanRunner.create(g, plan)).run(x, B, T)).data, evaluateParallel(c.source, x).data, 1e-4, `${c.source.name} unfused ${JSON.stringify(schedule)}`);
}

describe("the unfused plan's stateless kernels over segments", () => {
  it('segment only the kernels without state: one workgroup row a segment, the prefix kernel one walk', () => {
    const c = compileFile('examples/paper/llama_linearized.la', { sizes: { C: 16 } });
    const sizes = axisSizes(c.program, { h: 2, d: 8, e: 8 });
    const plan = lowerChunked(c.program, sizes, { fuse: false, schedule: { chunk: 8, cols: 8, threads: 64, segment: 3 } });
    const grid = (label: string) => plan.kernels.find((k) => k.label.endsWith(label))!.workgroups(B, T);
    // 2 heads × 1 tile; 6 chunks in segments of 3: 2 rows of workgroups; the prefix term (global) walks all 6
    expect(grid('term.local')).toEqual([2, 2, B]);
    expect(grid('term.conv')).toEqual([2, 2, B]);
    expect(grid('term.global')).toEqual([2, B, 1]);
    expect(plan.kernels.find((k) => k.label.endsWith('term.global'))!.code).not.toContain('nseg');
  });

  it('llama_linearized and flash (groups of 16) equal the oracle with segments that start inside a group', async () => {
    for (const file of ['examples/paper/llama_linearized.la', 'examples/paper/flash.la']) {
      const c = compileFile(file, { sizes: { C: 16 } });
      for (const segment of [1, 3]) await matchesOracle(c, { h: 2, d: 8, e: 8 }, { chunk: 8, cols: 8, threads: 64, segment });
    }
  });

  it('elu_dwconv (a window of 4 taps: halo rows before each segment) equals the oracle', async () => {
    await matchesOracle(compileFile('examples/paper/elu_dwconv.la'), { h: 2, d: 8, e: 8 }, { chunk: 4, cols: 8, threads: 64, segment: 2 });
  });
});
