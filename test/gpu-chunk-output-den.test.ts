// The row denominators summed by the overlapped output team (LowerOptions.outputDen, chunked/outputs.ts stateTerm):
// each output invocation adds its row of A and φ·(decay ⊙ z_prev) to its own denominator, the denominator phase goes,
// and the fold team holds the new z like S (chunked/teams.ts). Off by default until timed. Checked against the
// float64 oracle with the switch on, on variants whose denominators take each path: a prefix term beside a
// convolution's direct taps (elu_dwconv), a normalised term with a scalar decay, two prefix terms in one normalised group
// (cosformer), a blocked schedule (columns sharing a row's denominator), a state export decoded on from, and a
// training forward's kept denominators equal to the phase's. And the structure: no row-denominator array, one barrier
// fewer a chunk than the overlap alone.
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

const PLAIN: ChunkSchedule = { chunk: 8, cols: 8, threads: 64 };

/** A normalised term with a scalar decay: φ·(decay ⊙ z_prev) in its denominator. */
const DECAYED = `variant decayed_norm
input q[h, d], k[h, d], v[h, e]
param gamma[h]
let fq = elu(q) + 1
let fk = elu(k) + 1
term ret : causal score dot(fq[i], fk[j], d) * decay(gamma) value v
output normalize(ret, 1e-6)
`;
const chunkKernel = (plan: ReturnType<typeof lowerChunked>) => plan.kernels.find((k) => /\.chunked$/.test(k.label))!.code;
const barriers = (code: string) => code.split('\n').filter((l) => l.includes('workgroupBarrier()')).length;

async function matchesOracle(c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  const [on, off] = [true, false].map((outputDen) => lowerChunked(c.program, sizes, { fuse: true, schedule, overlap: true, outputDen }));
  expect(chunkKernel(on)).not.toMatch(/var<workgroup> rowden/);
  expect(chunkKernel(off)).toMatch(/var<workgroup> rowden/);
  expect(barriers(chunkKernel(on))).toBe(barriers(chunkKernel(off)) - 1);
  const x = makeInputs(c.source, { b: 1, t: 45, axes, seed: 101 });
  expectRelClose((await (await PlanRunner.create(g, on)).run(x, 1, 45)).data, evaluateParallel(c.source, x).data, 1e-4, `${c.source.name} ${JSON.stringify(schedule)}`);
}

describe('the row denominators summed by the output team', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', { h: 2, d: 8, e: 8 }, PLAIN],
    ['examples/paper/cosformer.la', { h: 2, d: 8, e: 8 }, PLAIN],
    ['examples/paper/elu_dwconv.la', { h: 2, d: 8, e: 8 }, { ...PLAIN, block: 2 }],
  ] as const)('%s equals the oracle (%j, %j)', async (file, axes, schedule) => {
    await matchesOracle(compileFile(file), axes, schedule);
  });

  it('with the score matrices as row quads too (chunk 16: the output tile four rows), elu_dwconv equals the oracle', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 8, e: 8 };
    const plan = lowerChunked(c.program, axisSizes(c.source, axes), { fuse: true, schedule: { chunk: 16, cols: 8, threads: 64 }, overlap: true, outputDen: true, rowQuads: true });
    expect(chunkKernel(plan)).toMatch(/vec4<f32>\(a\d_0_0/);
    const x = makeInputs(c.source, { b: 1, t: 45, axes, seed: 107 });
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 1, 45)).data, evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv, row quads and denominators in the output team');
  });

  it('a normalised term with a scalar decay equals the oracle', async () => {
    await matchesOracle(compileText(DECAYED, 'decayed_norm.la'), { h: 2, d: 8, e: 8 }, PLAIN);
  });

  it('decoding continues from the state it exports (z stored from the fold team after the loop)', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: PLAIN, exportState: true, overlap: true, outputDen: true });
    expect(chunkKernel(plan)).toMatch(/heldz0/);
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0: 21, steps: 3, seed: 341, what: 'elu_dwconv prefill, denominators in the output team' });
  });

  it("a training forward's kept numerators and denominators equal the denominator phase's", async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 8, e: 8 };
    const sizes = axisSizes(c.program, axes);
    const shape = { b: 2, t: 29 };
    const x = makeInputs(c.source, { ...shape, axes, seed: 103 });
    const kept = async (outputDen: boolean) => keptParts(g, await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: PLAIN, keepNormalisers: true, overlap: true, outputDen })), c, x, shape);
    const [on, off] = [await kept(true), await kept(false)];
    expect(Object.keys(on).length).toBe(3);
    for (const n of Object.keys(off)) expectRelClose(on[n], off[n], 1e-5, `elu_dwconv kept ${n}`);
  });
});
