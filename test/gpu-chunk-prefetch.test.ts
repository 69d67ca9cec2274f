// The chunk kernel's prefetched staging (chunked/staging.ts prefetchSlots): each chunk's global loads are issued
// after the previous chunk's staging barrier and held in registers. Checked against the float64 oracle where it
// matters: several chunks, a last chunk shorter than the others (t not a multiple of the chunk), the values' halo
// of a convolution term (elu_dwconv reads v three rows before the chunk), one chunk only, and segments (each
// workgroup prefetches within its own chunk range); and that the kernels it excludes stage as before.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { PREFETCH_MARK } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const AXES = { h: 2, d: 8, e: 8 };
const SCHEDULE = { chunk: 8, cols: 4, threads: 64 };
const prefetched = (code: string) => code.includes(`// ${PREFETCH_MARK}:`);

describe('prefetched chunk staging', () => {
  it('elu_dwconv (halo 3) over 6 chunks, the last of 5 rows, one partial chunk, and segments: equal to the oracle', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.source, AXES);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: SCHEDULE });
    expect(plan.kernels.length).toBe(1);
    expect(prefetched(plan.kernels[0].code)).toBe(true);
    // The internal switch: the same kernel staged as before.
    const off = lowerChunked(c.program, sizes, { fuse: true, schedule: SCHEDULE, prefetch: false });
    expect(prefetched(off.kernels[0].code)).toBe(false);
    const segmented = lowerChunked(c.program, sizes, { fuse: true, schedule: { ...SCHEDULE, chunk: 4, segment: 2 } });
    expect(segmented.kernels.filter((k) => prefetched(k.code)).map((k) => k.label)).toEqual(['elu_dwconv.segment-state', 'elu_dwconv.chunked']);
    for (const [what, p] of [['prefetched', plan], ['not prefetched', off], ['segmented', segmented]] as const) {
      const runner = await PlanRunner.create(g, p);
      for (const t of what === 'segmented' ? [45] : [45, 3]) {
        const x = makeInputs(c.source, { b: 2, t, axes: AXES, seed: 40 + t });
        const o = await runner.run(x, 2, t);
        expectRelClose(o.data, evaluateParallel(c.source, x).data, 1e-4, `elu_dwconv ${what} t=${t}`);
      }
    }
  });

  it('is left out where staging reads row reductions, or holds more loads than the register cap', () => {
    // llama_linearized stages ‖q‖ and ‖k‖ per row first: its features read them from workgroup memory.
    const llama = compileFile('examples/paper/llama_linearized.la');
    const plan = lowerChunked(llama.program, axisSizes(llama.source, AXES), { fuse: true, schedule: SCHEDULE });
    expect(plan.kernels.some((k) => prefetched(k.code))).toBe(false);
    // elu_dwconv at d 32, chunk 16, 64 threads: 8 + 8 slots of φ and ψ, 2 of values, 2 of positions per invocation (> 16).
    const c = compileFile('examples/paper/elu_dwconv.la');
    const wide = lowerChunked(c.program, axisSizes(c.source, { h: 4, d: 32, e: 32 }), { fuse: true, schedule: { chunk: 16, cols: 4, threads: 64 } });
    expect(prefetched(wide.kernels[0].code)).toBe(false);
  });
});
