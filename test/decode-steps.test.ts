// The decode step per batch (src/runtime/decode-steps.ts): one runner per distinct split the batches choose, batch
// 1's until a batch is prepared, and one runner for every batch where the splits coincide (a software adapter).
import { describe, expect, it } from 'vitest';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { DecodeSteps } from '../src/runtime/decode-steps.ts';
import { gpu } from './helpers/gpu.ts';

describe('decode steps per batch', () => {
  const c = compileFile('examples/paper/elu_dwconv.la', { sizes: { K: 32 } });
  const sizes = axisSizes(c.program, { h: 12, d: 64, e: 64 });

  it('on hardware, batch 8 runs its own wider split once prepared, batch 1 keeps its own, and equal splits share a runner', async () => {
    const steps = await DecodeSteps.create(await gpu(), c.program, sizes, undefined, true);
    expect(steps.first.plan.schedule).toMatchObject({ columns: 2, slices: 64 });
    expect(steps.runner(8)).toBe(steps.first); // not prepared yet: batch 1's, which computes the same
    const wide = await steps.prepare(8);
    expect(wide.plan.schedule).toMatchObject({ columns: 16, slices: 16 });
    expect(steps.runner(8)).toBe(wide);
    expect(steps.runner(1)).toBe(steps.first);
    // batch 6: 12 heads × 4 blocks of 16 columns × 6 = 288 ≥ 264 (blocks of 32: 144), batch 8's split; batch 2: blocks of 4
    expect(await steps.prepare(6)).toBe(wide);
    expect(await steps.prepare(2)).not.toBe(wide);
  });

  it("on a software adapter every batch shares batch 1's runner", async () => {
    const g = await gpu();
    const steps = await DecodeSteps.create(g, c.program, sizes, undefined, false);
    expect(await steps.prepare(8)).toBe(steps.first);
    expect(steps.first.plan.schedule).toMatchObject({ columns: 64, slices: 1 });
  });
});
