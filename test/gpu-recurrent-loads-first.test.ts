// The decode step with its global loads first (backends/wgsl/recurrent.ts, RecurrentOptions.loadsFirst): z and
// each thread's rows of S loaded into registers before any barrier and carried through a call's tokens, v and the
// conv's ring reads and per-column scores loaded before the staging barrier, the slices' sums added 8 at a time.
// Hardware split forced at tiny sizes (2 columns × 8 slices: 6 features, so slices 6 and 7 hold no row), against
// the float64 oracle over one-token calls and one call of several tokens, for a plain prefix term beside a
// convolution, for a per-feature decay gate, and for llama's open groups beside staged group and conv scores.
import { describe, expect, it } from 'vitest';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { expectRecurrentOracle } from './helpers/recurrent-oracle.ts';

const AXES = { h: 2, d: 6, e: 5 };
const B = 2;
const CALLS = [1, 1, 1, 3, 1, 1]; // tokens per call: one-token decode steps, then a call of three

describe('the decode step with loads first', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', {}],
    ['examples/variants/gla.la', {}],
    // an open past_groups term (So in registers; groups of 4 cross the calls), a group term and a conv whose scores are staged, RoPE, norms
    ['examples/models/llama/linearized_aug.la', { C: 4, K: 3 }],
  ] as const)('%s %o issues its S loads before the first barrier and equals the oracle', async (file, fixed) => {
    const c = compileFile(file, { sizes: fixed });
    const sizes = axisSizes(c.program, AXES);
    const plan = recurrentPlan(c.program, sizes, undefined, { hardware: true });
    expect(plan.schedule).toMatchObject({ columns: 2, slices: 8 });
    const code = plan.kernels[0].code;
    const barrier = code.indexOf('workgroupBarrier()');
    expect(code.indexOf('// loads first')).toBeGreaterThan(0);
    expect(code.indexOf('state_S0[')).toBeLessThan(barrier);
    expect(code.indexOf('state_z0[')).toBeLessThan(barrier);
    expect(code.indexOf('in_v[')).toBeLessThan(barrier);
    // 8 slices: one level of the reduction, not three.
    const perToken = (k: string) => k.slice(k.indexOf('for (var tok')).split('workgroupBarrier()').length - 1;
    const before = recurrentPlan(c.program, sizes, undefined, { hardware: true, loadsFirst: false }).kernels[0].code;
    expect(before.indexOf('// loads first')).toBe(-1);
    expect(before.indexOf('state_S0[')).toBeGreaterThan(before.indexOf('workgroupBarrier()'));
    expect(perToken(code)).toBe(perToken(before) - 2);

    await expectRecurrentOracle(c, plan, AXES, B, CALLS, 73, file);
  });
});
