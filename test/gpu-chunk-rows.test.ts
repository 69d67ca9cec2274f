// Fixed register rows of the chunk kernel (ChunkSchedule.rows, chunked/tiles.ts): each invocation owns `rows` rows
// of the score tile, of the outputs and of the state update beside its `block` columns, leaving invocations idle
// where the tile has fewer blocks than the workgroup threads. Against the float64 oracle at sizes no block divides
// (e 6, d 5: the fold's 5 features take no 2-row block and fall back to microTile's; t 45 over chunks of 4), with
// a convolution's direct taps and a normalised group (elu_dwconv) and two prefix terms (cosformer_aug), fused, with
// and without early φ·S_prev (ChunkSchedule.early); and segmented at one chunk a segment.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { blockTile, scoreTile } from '../backends/wgsl/chunked/tiles.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const AXES = { h: 2, d: 5, e: 6 };

describe('register rows', () => {
  it('fix the rows where they divide, whatever the invocations left idle', () => {
    // 16 × 64 outputs at 512 threads: 4 × 4 blocks (64 invocations) where microTile keeps 2 rows for all 512
    expect(blockTile(16, 64, 512, 4, 4)).toEqual({ TM: 4, TN: 4, NT: 4, RB: 16 });
    expect(blockTile(64, 64, 512, 4, 4)).toEqual({ TM: 4, TN: 4, NT: 16, RB: 16 });
    expect(blockTile(16, 64, 512, 2, 8)).toEqual({ TM: 8, TN: 2, NT: 2, RB: 32 });
    expect(blockTile(5, 6, 64, 4, 4)).toEqual(blockTile(5, 6, 64, 4)); // 4 does not divide 5 features
    expect(scoreTile(16, 16, 512, 4, 4)).toEqual({ TI: 4, TJ: 4, NTI: 4, NTJ: 4 });
    expect(scoreTile(8, 11, 64, 4, 4)).toEqual({ TI: 4, TJ: 4, NTI: 2, NTJ: 3 }); // a halo of 3: 12 key rows cover 11
  });

  it('early φ·S_prev takes two barriers a chunk out (no denominator phase; the fold follows the outputs), where every output block has an invocation', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const sizes = axisSizes(c.source, { h: 2, d: 64, e: 64 });
    const barriers = (s: ChunkSchedule) => lowerChunked(c.program, sizes, { fuse: true, schedule: s }).kernels[0].code.split('workgroupBarrier').length - 1;
    const s = { chunk: 16, cols: 64, threads: 128, block: 4, rows: 4 };
    expect(barriers({ ...s, early: 1 })).toBe(barriers(s) - 2);
    // 16 × 64 outputs in 4 × 4 blocks are 64 of them, more than 32 threads: the plain kernel
    expect(lowerChunked(c.program, sizes, { fuse: true, schedule: { ...s, threads: 32, early: 1 } }).kernels[0].code).toBe(lowerChunked(c.program, sizes, { fuse: true, schedule: { ...s, threads: 32 } }).kernels[0].code);
  });
});

// lavapipe compiles each cell of a block's direct taps and products unrolled (a 4 × 4 elu_dwconv kernel takes about
// a minute), so the kernels here keep 2 × 2 blocks: rows fixed above microTile's pick all the same (at 64 threads
// microTile takes 1 row of chunk 4).
describe.each([
  ['examples/paper/elu_dwconv.la', { chunk: 4, cols: 6, threads: 64, block: 4, rows: 2 }], // 4 columns asked of 6: blocks of 2
  ['examples/paper/elu_dwconv.la', { chunk: 4, cols: 6, threads: 64, block: 4, rows: 2, early: 1 }],
  ['examples/paper/cosformer_aug.la', { chunk: 4, cols: 4, threads: 64, block: 2, rows: 2, early: 1 }], // two prefix terms' early sums
] as const)('%s with register rows', (file, schedule: ChunkSchedule) => {
  it('equals the oracle fused', async () => {
    const g = await gpu();
    const c = compileFile(file);
    const x = makeInputs(c.source, { b: 2, t: 45, axes: AXES, seed: 17 });
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule, prologue: 'none' });
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, `${file} ${JSON.stringify(schedule)}`);
  });
});

describe('segmented with register rows', () => {
  it('elu_dwconv, segments of one chunk: segment states, scan and outputs (no fold, early φ·S) equal the oracle', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/elu_dwconv.la');
    const x = makeInputs(c.source, { b: 2, t: 45, axes: AXES, seed: 18 });
    const schedule = { chunk: 4, cols: 4, threads: 32, segment: 1, block: 2, rows: 2, early: 1 };
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule, prologue: 'none' });
    expect(r.plan!.kernels.length).toBe(3);
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, 'segments of one chunk');
  });
});
