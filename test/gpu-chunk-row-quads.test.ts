// The score matrices stored as row quads (LowerOptions.rowQuads, chunked/row-quads.ts): where the overlapped output
// team owns four rows of one column, A_g[jj][ti] holds those four rows as one vec4, written whole by a score
// invocation of the same four rows (on by default since the H200 timed it: CHUNK_DEFAULTS.rowQuads). Checked against the float64
// oracle with the switch on and off where A carries a prefix term alone (elu_dwconv, beside its convolution's direct
// taps) and a bounded term with a halo (based's softmax window); a state export decoded on from; a training forward's
// kept numerators and denominators. And where it applies: only at a four-row output tile of an overlapped kernel.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, type Compiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill, keptParts } from './helpers/plan-calls.ts';

/** Chunk 16, 8 columns, 64 invocations: the output team of 32 owns 4 rows × 1 column (blockTile at 32). */
const QUADS: ChunkSchedule = { chunk: 16, cols: 8, threads: 64 };
/** Chunk 8 at the same threads: the team's tile is 2 rows, so no quads. */
const PAIRS: ChunkSchedule = { chunk: 8, cols: 8, threads: 64 };

const chunkKernel = (plan: ReturnType<typeof lowerChunked>) => plan.kernels.find((k) => /\.chunked$/.test(k.label))!;
const QUAD_STORE = /A\d+\[tj \* \d+u \+ ti\] = vec4<f32>\(/;

async function matchesOracle(c: Compiled, axes: Record<string, number>): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  const [on, off] = [true, false].map((rowQuads) => lowerChunked(c.program, sizes, { fuse: true, schedule: QUADS, overlap: true, rowQuads }));
  expect(chunkKernel(on).code).toMatch(QUAD_STORE);
  expect(chunkKernel(off).code).not.toMatch(QUAD_STORE);
  const x = makeInputs(c.source, { b: 1, t: 45, axes, seed: 97 });
  const want = evaluateParallel(c.source, x).data;
  for (const [plan, what] of [[on, 'row quads'], [off, 'scalar A']] as const) {
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 1, 45)).data, want, 1e-4, `${c.source.name} ${what}`);
  }
}

describe('the score matrices as row quads', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', { h: 2, d: 8, e: 8 }],
    ['examples/variants/based.la', { h: 2, d: 4, e: 8 }],
  ] as const)('%s equals the oracle with quads and without', async (file, axes) => {
    await matchesOracle(compileFile(file), axes);
  });

  it('applies only where the overlapped output tile is four rows of one column', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, { h: 2, d: 16, e: 8 });
    const code = (schedule: ChunkSchedule, overlap: boolean) => chunkKernel(lowerChunked(c.program, sizes, { fuse: true, schedule, overlap, rowQuads: true })).code;
    expect(code(QUADS, true)).toMatch(QUAD_STORE);
    expect(code(QUADS, false)).not.toMatch(QUAD_STORE);
    expect(code(PAIRS, true)).not.toMatch(QUAD_STORE);
    expect(code({ ...QUADS, block: 2 }, true)).not.toMatch(QUAD_STORE);
  });

  it('decoding continues from the state a prefill with quads exports', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: QUADS, exportState: true, overlap: true, rowQuads: true });
    expect(chunkKernel(plan).code).toMatch(QUAD_STORE);
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0: 37, steps: 3, seed: 331, what: 'elu_dwconv prefill with row quads' });
  });

  it("a training forward's kept numerators and denominators equal the scalar kernel's", async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 8, e: 8 };
    const sizes = axisSizes(c.program, axes);
    const shape = { b: 2, t: 29 };
    const x = makeInputs(c.source, { ...shape, axes, seed: 99 });
    const kept = async (rowQuads: boolean) => {
      return keptParts(g, await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: QUADS, keepNormalisers: true, overlap: true, rowQuads })), c, x, shape);
    };
    const [on, off] = [await kept(true), await kept(false)];
    expect(Object.keys(on).length).toBe(3);
    expectRelClose(on['out:o'], evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv kept, row quads o');
    for (const n of Object.keys(off)) expectRelClose(on[n], off[n], 1e-5, `elu_dwconv kept ${n}`);
  });
});
