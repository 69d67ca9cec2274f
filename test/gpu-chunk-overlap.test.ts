// The chunk kernel's outputs on half the workgroup beside the state update on the other half (LowerOptions.overlap,
// chunked/teams.ts), the new S held in registers until the next chunk's start. Checked against the float64 oracle
// with the switch on and off, on variants that take each form of the fold: no decay with a convolution beside it
// (elu_dwconv), a scalar decay (retnet, mamba2), a per-feature one (gla, its fold f32), a fold team with a partial
// second trip (performer, F = 12), two prefix terms in one kernel, register-blocked schedules, a state export
// decoded on from, a training forward's kept numerators and denominators, and a segmented plan's output launch (its
// segments start from the scanned state, nothing held yet). And the structural claim: the overlapped kernel's chunk
// loop has one workgroup barrier fewer; kernels it does not apply to are unchanged.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { HELD_MARK } from '../backends/wgsl/chunked/fold-tiled.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, compileText, type Compiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill, keptParts } from './helpers/plan-calls.ts';

const PLAIN: ChunkSchedule = { chunk: 8, cols: 8, threads: 64 };
const BLOCKED: ChunkSchedule = { chunk: 8, cols: 8, threads: 64, block: 2 };
/** Two chunks a segment: the oracle's 45 rows are three segments, the last of one chunk of 5 rows. */
const SEGMENTED: ChunkSchedule = { chunk: 8, cols: 8, threads: 64, segment: 2 };

/** Two prefix terms in one kernel: one normalised without decay, one with a scalar decay. */
const TWO_PREFIX = `variant two_prefix
input q[h, d], k[h, d], v[h, e]
param gamma[h]
let fq = elu(q) + 1
let fk = elu(k) + 1
term lin : causal score dot(fq[i], fk[j], d) value v
term ret : causal score dot(q[i], k[j], d) * decay(gamma) value v
output normalize(lin, 1e-6) + ret
`;

/** The workgroup barriers inside the chunk loop `for (var c: u32 …) { … }` (the loop's lines, by indentation). */
function loopBarriers(code: string): number {
  const lines = code.split('\n');
  const start = lines.findIndex((l) => /^\s*for \(var c: u32/.test(l));
  expect(start).toBeGreaterThan(0);
  const pad = lines[start].length - lines[start].trimStart().length;
  const end = lines.findIndex((l, i) => i > start && l.length - l.trimStart().length === pad && l.trim() === '}');
  return lines.slice(start, end).filter((l) => l.includes('workgroupBarrier()')).length;
}

const chunkKernel = (plan: ReturnType<typeof lowerChunked>) => plan.kernels.find((k) => /\.chunked$/.test(k.label))!;

/**
 * The fused plan of `c` at `schedule` overlapped (and, with `sequential`, not) equal to the oracle over 6 chunks, the
 * last of 5 rows; the overlapped kernel a barrier shorter a chunk than the sequential one.
 */
async function matchesOracle(c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule, sequential = false): Promise<void> {
  const g = await gpu();
  const sizes = axisSizes(c.source, axes);
  // the overlap alone: the output team's denominators and the row quads (on by default) have tests of their own
  const [on, off] = [true, false].map((overlap) => lowerChunked(c.program, sizes, { fuse: true, schedule, overlap, outputDen: false, rowQuads: false }));
  expect(chunkKernel(on).code).toContain(HELD_MARK);
  expect(chunkKernel(off).code).not.toContain(HELD_MARK);
  expect(loopBarriers(chunkKernel(on).code)).toBe(loopBarriers(chunkKernel(off).code) - 1);
  const x = makeInputs(c.source, { b: 1, t: 45, axes, seed: 91 });
  const want = evaluateParallel(c.source, x).data;
  const plans: [ReturnType<typeof lowerChunked>, string][] = [[on, 'overlapped'], ...(sequential ? [[off, 'sequential'] as [typeof off, string]] : [])];
  for (const [plan, what] of plans) {
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 1, 45)).data, want, 1e-4, `${c.source.name} ${what} ${JSON.stringify(schedule)}`);
  }
}

describe('the outputs beside the state update in the chunk kernel', () => {
  it.each([
    ['examples/paper/elu_dwconv.la', { h: 2, d: 16, e: 8 }],
    ['examples/variants/retnet.la', { h: 2, d: 8, e: 8 }],
    ['examples/variants/mamba2.la', { h: 2, d: 8, e: 8 }],
    ['examples/variants/gla.la', { h: 2, d: 8, e: 8 }],
  ] as const)('%s equals the oracle overlapped and not', async (file, axes) => {
    await matchesOracle(compileFile(file), axes, PLAIN, true);
  });

  it('register-blocked schedules equal the oracle overlapped (elu_dwconv, gla)', async () => {
    await matchesOracle(compileFile('examples/paper/elu_dwconv.la'), { h: 2, d: 16, e: 8 }, BLOCKED);
    await matchesOracle(compileFile('examples/variants/gla.la'), { h: 2, d: 8, e: 8 }, BLOCKED);
  });

  it('performer (a partial second trip of the fold team) and two prefix terms in one kernel equal the oracle', async () => {
    await matchesOracle(compileFile('examples/paper/performer.la', { sizes: { m: 12 } }), { h: 2, d: 4, e: 8 }, PLAIN);
    await matchesOracle(compileText(TWO_PREFIX, 'two_prefix.la'), { h: 2, d: 8, e: 8 }, PLAIN);
  });

  it("a segmented plan's output launch equals the oracle overlapped and not (elu_dwconv, two prefix terms, blocked)", async () => {
    await matchesOracle(compileFile('examples/paper/elu_dwconv.la'), { h: 2, d: 16, e: 8 }, SEGMENTED, true);
    await matchesOracle(compileText(TWO_PREFIX.replace(' * decay(gamma)', ''), 'two_prefix.la'), { h: 2, d: 8, e: 8 }, SEGMENTED);
    await matchesOracle(compileFile('examples/paper/elu_dwconv.la'), { h: 2, d: 16, e: 8 }, { ...SEGMENTED, block: 2 });
  });

  it("a segmented plan with the default switches (row quads, the output team's denominators, φ·S_prev early) equals the oracle", async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 16, e: 16 };
    const sizes = axisSizes(c.source, axes);
    const x = makeInputs(c.source, { b: 2, t: 45, axes, seed: 95 });
    // four outputs an invocation of the output team: its micro-tile is a row quad
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 16, threads: 64, segment: 2 } });
    expect(chunkKernel(plan).code).toContain(HELD_MARK);
    expect(chunkKernel(plan).code).toContain('idle in the score phase'); // chunked/early-state.ts
    expectRelClose((await (await PlanRunner.create(g, plan)).run(x, 2, 45)).data, evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv segmented, default switches');
  });

  it('decoding continues from the state an overlapped prefill exports (the last chunk S stored after the loop)', async () => {
    const g = await gpu();
    const axes = { h: 2, d: 8, e: 8 };
    for (const file of ['examples/paper/elu_dwconv.la', 'examples/variants/retnet.la']) {
      const c = compileFile(file);
      const sizes = axisSizes(c.program, axes);
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: PLAIN, exportState: true, overlap: true });
      expect(chunkKernel(plan).code).toContain(HELD_MARK);
      const prefill = await PlanRunner.create(g, plan);
      const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
      for (const t0 of [21]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 310 + t0, what: `${c.source.name} overlapped prefill ${t0}` });
    }
    // a segmented prefill: the last segment's output launch ends on the whole sequence's state
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.program, axes);
    const plan = lowerChunked(c.program, sizes, { fuse: true, schedule: SEGMENTED, exportState: true, overlap: true });
    expect(chunkKernel(plan).code).toContain(HELD_MARK);
    const prefill = await PlanRunner.create(g, plan);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    for (const t0 of [21, 32]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 320 + t0, what: `elu_dwconv segmented overlapped prefill ${t0}` });
  });

  it("a training forward's kept numerators and denominators equal the sequential kernel's", async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const axes = { h: 2, d: 8, e: 8 };
    const sizes = axisSizes(c.program, axes);
    const shape = { b: 2, t: 29 };
    const x = makeInputs(c.source, { ...shape, axes, seed: 93 });
    const kept = async (overlap: boolean) => {
      return keptParts(g, await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: PLAIN, keepNormalisers: true, overlap })), c, x, shape);
    };
    const [on, off] = [await kept(true), await kept(false)];
    expect(Object.keys(on).length).toBe(3);
    expectRelClose(on['out:o'], evaluateParallel(c.source, x).data, 1e-4, 'elu_dwconv kept, overlapped o');
    for (const n of Object.keys(off)) expectRelClose(on[n], off[n], 1e-5, `elu_dwconv kept ${n}`);
  });

  it('leaves alone what it does not apply to: open groups (flash), fewer than 64 threads', () => {
    const lower = (c: Compiled, axes: Record<string, number>, schedule: ChunkSchedule, overlap: boolean) =>
      lowerChunked(c.program, axisSizes(c.program, axes), { fuse: true, schedule, overlap }).kernels.map((k) => k.code);
    const elu = compileFile('examples/paper/elu_dwconv.la');
    const flash = compileFile('examples/paper/flash.la');
    for (const [c, s] of [[elu, { chunk: 8, cols: 8, threads: 32 }], [flash, PLAIN]] as const) {
      expect(lower(c, { h: 2, d: 8, e: 8 }, s, true)).toEqual(lower(c, { h: 2, d: 8, e: 8 }, s, false));
    }
  });
});
