// Register blocking of the chunk kernel (ChunkSchedule.block, chunked/tiles.ts): each invocation owns TN key rows
// of the score tiles, and TN value columns of the outputs and of the state update beside its rows or features.
// Variants that take every path the blocking touches (a convolution's direct taps, a window through the score
// matrix, a scalar decay, a per-feature decay, two prefix terms, a group term with row reductions, kept past
// groups), fused and unfused, against the float64 oracle at sizes no block divides: e 6 (6 columns in tiles of 4: a
// partial last tile, whose blocked columns past e are computed from a clamped index and never stored; in tiles of
// 6: blocks of 4 fall back to 2), d 5 (5 features: the fold's rows stay single), t 45 over chunks of 8.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { blockTile, scoreTile } from '../backends/wgsl/chunked/tiles.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const AXES = { h: 2, d: 5, e: 6 };

/** Blocked schedules: 4 columns of a partial tile; 4 asked of 6 columns (2 taken); 2 columns × 4 rows at 4 threads. */
const SCHEDULES: readonly ChunkSchedule[] = [
  { chunk: 8, cols: 4, threads: 32, block: 4 },
  { chunk: 8, cols: 6, threads: 64, block: 4 },
  { chunk: 8, cols: 4, threads: 4, block: 2 },
];

describe('blockTile', () => {
  it('takes the block where it divides the columns, the largest divisor below it elsewhere, rows as microTile over the lanes', () => {
    expect(blockTile(64, 64, 512, 4)).toEqual({ TM: 2, TN: 4, NT: 32, RB: 16 });
    expect(blockTile(64, 64, 256, 4)).toEqual({ TM: 4, TN: 4, NT: 16, RB: 16 });
    expect(blockTile(16, 6, 64, 4)).toEqual({ TM: 1, TN: 2, NT: 16, RB: 3 });
    expect(blockTile(16, 3, 64, 4)).toEqual({ TM: 1, TN: 1, NT: 16, RB: 3 });
    expect(blockTile(16, 64, 512)).toEqual({ TM: 2, TN: 1, NT: 8, RB: 64 });
  });

  it('blocks the score tile by key rows, `block` of them an invocation and the rows over what is left, where that loads less', () => {
    expect(scoreTile(16, 16, 512, 4)).toEqual({ TI: 1, TJ: 4, NTI: 16, NTJ: 4 });
    expect(scoreTile(32, 32, 64, 4)).toEqual({ TI: 4, TJ: 4, NTI: 8, NTJ: 8 });
    expect(scoreTile(8, 11, 32, 4)).toEqual({ TI: 1, TJ: 4, NTI: 8, NTJ: 3 }); // a window's halo through A: 12 covers 11
    expect(scoreTile(64, 64, 1024, 4)).toEqual(scoreTile(64, 64, 1024)); // 2 × 2 loads less than 1 × 4: kept
  });

  it('changes no kernel when absent or 1', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.source, AXES);
    const s = { chunk: 8, cols: 4, threads: 32 };
    expect(lowerChunked(c.program, sizes, { fuse: true, schedule: { ...s, block: 1 } }).kernels[0].code).toBe(lowerChunked(c.program, sizes, { fuse: true, schedule: s }).kernels[0].code);
  });
});

const VARIANTS = ['paper/elu_dwconv', 'paper/elu', 'paper/elu_aug', 'variants/retnet', 'variants/mamba2', 'variants/gla', 'paper/cosformer_aug', 'paper/llama_linearized'].map((v) => `examples/${v}.la`);

describe.each(VARIANTS)('%s with register blocking', (file) => {
  const c = compileFile(file);
  it('fused and unfused equal the oracle at odd sizes under the blocked schedules', async () => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 2, t: 45, axes: AXES, seed: 15 });
    const ref = evaluateParallel(c.source, x);
    // lavapipe compiles a decayed kernel for about 25 s: those run the partial tile fused and unfused, and the
    // 4-row blocks fused.
    const decayed = /retnet|mamba2|gla/.test(file);
    for (const [k, schedule] of SCHEDULES.entries()) {
      if (decayed && k === 1) continue;
      for (const fuse of decayed && k > 0 ? [true] : [true, false]) {
        const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse, schedule, prologue: 'none' });
        expectRelClose(r.o.data, ref.data, 1e-4, `${file} ${fuse ? 'fused' : 'unfused'} ${JSON.stringify(schedule)}`);
      }
    }
  });
});

describe('segmented with register blocking', () => {
  it.each(['examples/paper/elu_dwconv.la', 'examples/paper/cosformer_aug.la'])('%s: segment states, scan and outputs equal the oracle', async (file) => {
    const g = await gpu();
    const c = compileFile(file);
    const x = makeInputs(c.source, { b: 2, t: 45, axes: AXES, seed: 16 });
    const schedule = { chunk: 4, cols: 4, threads: 8, segment: 3, block: 4 };
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule, prologue: 'none' });
    expect(r.plan!.kernels.length).toBe(3);
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, `${file} ${JSON.stringify(schedule)}`);
  });
});
