// The state the fused chunked prefill exports (S, z, the open group, the convolution and window rings) is the
// state decoding continues from: for every decodable variant, prefill t0 tokens, then decode step by step
// with the recurrent kernel on that state, and compare every step with the float64 parallel oracle over the
// whole sequence. t0 ends mid-group, on a group boundary, and inside the first chunk; for grouped variants two
// chunk sizes, one smaller and one larger than the group. A segmented prefill (segments of chunks in parallel, a
// scan, the outputs: the last segment exports S, z) is checked the same way on variants with a value ring
// (elu_dwconv) and a window term's key ring (elu_aug), its prompts ending in the first, second and third segment.
import { describe, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';
import { DECODABLE } from './helpers/variants.ts';

const AXES = { h: 2, d: 4, e: 4 };
const SIZES = { C: 8, W: 6 }; // small groups and windows, so that short prompts end inside one
const PREFILLS = [3, 8, 11];
const STEPS = 3;


/** Prefill t0 tokens with `schedule`, decode STEPS more on the exported state, each step against the oracle. */
async function decodesFromPrefill(file: string, schedule: ChunkSchedule, prefills: readonly number[]): Promise<void> {
  const c = compileFile(file, { sizes: Object.fromEntries(Object.entries(SIZES).filter(([k]) => k in compileFile(file).source.sizes)) });
  const g = await gpu();
  const sizes = axisSizes(c.program, AXES);
  const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule, exportState: true }));
  const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
  const chunk = schedule.chunk;
  for (const t0 of prefills) {
    const what = `${file} chunk ${chunk}${schedule.segment ? `, segments of ${schedule.segment} chunks` : ''}, prefill ${t0}`;
    await expectDecodesFromPrefill(g, c.source, prefill, step, { axes: AXES, t0, steps: STEPS, seed: 100 * chunk + t0, what });
  }
}

describe.each(DECODABLE)('%s', (file) => {
  const c = compileFile(file);
  // Chunk 16 (a multiple of the group) only where groups exist: lavapipe compiles the larger kernels slowly.
  const grouped = c.program.terms.some((t) => t.mask.some((m) => m.kind === 'group' || m.kind === 'past_groups'));
  it.each(grouped ? [4, 16] : [4])('decoding from the state of a chunk-%i prefill equals the oracle', async (chunk) => {
    await decodesFromPrefill(file, { chunk, cols: 4, threads: 64 }, PREFILLS);
  });
});

describe.each(['examples/paper/elu_dwconv.la', 'examples/paper/elu_aug.la'])('%s, segmented', (file) => {
  it('decoding from the state a segmented prefill exports (segments of 2 chunks of 4) equals the oracle', async () => {
    await decodesFromPrefill(file, { chunk: 4, cols: 4, threads: 64, segment: 2 }, [3, 11, 19]);
  });
});

describe.each(['examples/paper/elu_dwconv.la', 'examples/paper/llama_linearized.la'])('%s, register-blocked', (file) => {
  it('decoding from the state a blocked prefill exports (4 columns an invocation) equals the oracle', async () => {
    await decodesFromPrefill(file, { chunk: 4, cols: 4, threads: 16, block: 4 }, [3, 11]);
  });
});
