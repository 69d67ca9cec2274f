// φ·S_prev computed early (ChunkAnalysis.earlyState, chunked/early-state.ts): in an overlapped kernel whose score
// tiles fit the output team, the fold team computes each output item's φ·(decay ⊙ S_prev) — and, where the output
// team sums the denominators, each row's φ·(decay ⊙ z_prev) — in the score phase, and the outputs read them from
// workgroup memory. Checked against the float64 oracle with the switch on and off: one normalised term beside a
// convolution (elu_dwconv, its φ·z early too, at chunk 16), a scalar decay without denominators (retnet, chunk 8), two
// prefix terms in one kernel (their denominators left to the denominator phase); a state export decoded on
// from; a training forward's kept numerators and denominators. On by default only where the outputs also add a
// depthwise convolution's per-channel taps; where it does not apply (score tiles wider than the output team, a per-feature decay's kernel,
// which keeps the phases in turn), the code is unchanged.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, compileText, type Compiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill, keptParts } from './helpers/plan-calls.ts';

/** Output team of 64 (four rows of one column each: row quads), score tiles 4 × 16 = 64: the fold team is free. */
const C16: ChunkSchedule = { chunk: 16, cols: 16, threads: 128 };
/** Output team of 32, score tiles 2 × 8 = 16. */
const C8: ChunkSchedule = { chunk: 8, cols: 16, threads: 64 };
const MARK = 'idle in the score phase';

const TWO_PREFIX = `variant two_prefix
input q[h, d], k[h, d], v[h, e]
param gamma[h]
let fq = elu(q) + 1
let fk = elu(k) + 1
term lin : causal score dot(fq[i], fk[j], d) value v
term ret : causal score dot(q[i], k[j], d) * decay(gamma) value v
output normalize(lin, 1e-6) + ret
`;

const chunkKernel = (plan: ReturnType<typeof lowerChunked>) => plan.kernels.find((k) => /\.chunked$/.test(k.label))!;
const AXES = { h: 2, d: 8, e: 16 };

async function matchesOracle(c: Compiled, schedule: ChunkSchedule, den: boolean): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, AXES);
  const [on, off] = [true, false].map((earlyState) => lowerChunked(c.program, sizes, { fuse: true, schedule, earlyState }));
  const [onCode, offCode] = [chunkKernel(on).code, chunkKernel(off).code];
  expect(onCode).toContain(MARK);
  expect(offCode).not.toContain(MARK);
  // the outputs read φ·S_prev from phiS: no product with S of their own; φ·z early only with the output team's denominators
  expect(onCode).toMatch(/var<workgroup> phiS0/);
  expect(/var<workgroup> phiZ0/.test(onCode)).toBe(den);
  const x = makeInputs(c.source, { b: 1, t: 37, axes: AXES, seed: 97 });
  const want = evaluateParallel(c.source, x).data;
  for (const [plan, what] of [[on, 'early'], [off, 'in the outputs']] as const) {
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 1, 37)).data, want, 1e-4, `${c.source.name} ${what} ${JSON.stringify(schedule)}`);
  }
}

describe('φ·S_prev by the fold team in the score phase', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', C16, true],
    ['examples/variants/retnet.la', C8, false],
  ] as const)('%s equals the oracle with it and without (%j)', async (file, schedule, den) => {
    await matchesOracle(compileFile(file), schedule, den);
  });

  it('two prefix terms in one kernel equal the oracle (their denominators from the denominator phase)', async () => {
    await matchesOracle(compileText(TWO_PREFIX, 'two_prefix.la'), C8, false);
  });

  it('decoding continues from the state a prefill with it exports', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, AXES);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: C16, exportState: true });
    expect(chunkKernel(plan).code).toContain(MARK);
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes: AXES, t0: 37, steps: 3, seed: 347, what: 'elu_dwconv early prefill 37' });
  });

  it("a training forward's kept numerators and denominators equal the kernel's without it", async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, AXES);
    const shape = { b: 2, t: 29 };
    const x = makeInputs(c.source, { ...shape, axes: AXES, seed: 99 });
    const kept = async (earlyState: boolean) => {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: C16, keepNormalisers: true, earlyState });
      expect(chunkKernel(plan).code.includes(MARK)).toBe(earlyState);
      return keptParts(g, await PlanRunner.create(g, plan), c, x, shape);
    };
    const [on, off] = [await kept(true), await kept(false)];
    expect(Object.keys(on).length).toBe(3);
    expectRelClose(on['out:o'], evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv kept, early o');
    for (const n of Object.keys(off)) expectRelClose(on[n], off[n], 1e-5, `elu_dwconv kept ${n}`);
  });

  it('is on by default only where the outputs also add a depthwise convolution\'s per-channel taps (the H200 timed it so)', () => {
    const code = (file: string) => {
      const c = compileFile(file);
      return chunkKernel(lowerChunked(c.program, axisSizes(c.program, AXES), { fuse: true, schedule: C16 })).code;
    };
    expect(code('examples/paper/elu_dwconv.la')).toContain(MARK);
    for (const file of ['examples/paper/elu.la', 'examples/paper/elu_aug.la', 'examples/variants/retnet.la']) expect(code(file)).not.toContain(MARK);
  });

  it('leaves alone what it does not apply to: score tiles wider than the output team, a per-feature decay', () => {
    const lower = (file: string, schedule: ChunkSchedule, earlyState: boolean) => {
      const c = compileFile(file);
      return lowerChunked(c.program, axisSizes(c.program, AXES), { fuse: true, schedule, earlyState }).kernels.map((k) => k.code);
    };
    // chunk 16 at 64 invocations: 64 score tiles against an output team of 32
    for (const [file, s] of [['examples/paper/elu_dwconv.la', { chunk: 16, cols: 8, threads: 64 }], ['examples/variants/gla.la', C16]] as const) {
      const on = lower(file, s, true);
      expect(on.some((k) => k.includes(MARK))).toBe(false);
      expect(on).toEqual(lower(file, s, false));
    }
  });
});
