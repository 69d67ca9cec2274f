// The lanes kernel (matmul-lanes.ts) against the float64 formula (fusedMatmulReference) at ragged sizes — N leaving a
// partial workgroup, M not a multiple of the row blocks — for every fusion a tree step runs, in each of its forms:
// the subgroup butterfly and the workgroup-memory lane reduction, x staged (in one chunk and in several) and from
// memory, one partial an output stored from registers and several summed in workgroup memory (in rounds of rows),
// several load groups, rows split over workgroups along the grid's y; and its argmax epilogue through the partials'
// pick. Plus where the default path takes it.
import { describe, expect, it } from 'vitest';
import { matmulKernel, matmulPathFor, type MatmulOptions } from '../backends/wgsl/matmul.ts';
import { fusedMatmulReference, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import type { LanesKnobs } from '../backends/wgsl/matmul-lanes-choice.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, writeTensor } from '../src/runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { bindArgmaxPartials, destroyDispatch, encodeDispatch } from '../src/runtime/model-kernels.ts';
import { randn } from '../src/tensor.ts';
import { checkFusedMatmul, EPS } from './helpers/fused-matmul.ts';
import { gpu } from './helpers/gpu.ts';
import { H200 } from './helpers/projections.ts';

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };
const HEAD: MatmulFusion = { rmsnorm: { eps: EPS } };

const lanes = (k: LanesKnobs): MatmulOptions => ({ path: 'lanes', lanes: k });

/** [name, M, K, knobs]: each runs q|k|v, gate|up, the residual, the LM head's norm and the plain product. */
const FORMS: readonly (readonly [string, number, number, LanesKnobs])[] = [
  // 5 rows, one row block; 2 load groups of one step; x staged; 2 slices × the subgroup butterfly of 8 lanes.
  ['subgroup butterfly, x staged, 2 slices, 2 load groups', 5, 128, { lanes: 8, slices: 2, colGroups: 3, colsPerThread: 2, depth: 1, rowBlocks: 1, x: 'shared', reduce: 'subgroup' }],
  // 17 rows as 2 blocks of 9 (one padding row); lanes meet in workgroup memory; x from memory; 3 load groups.
  ['lanes in workgroup memory, x from memory, 2 row blocks, 3 load groups', 17, 96, { lanes: 8, slices: 1, colGroups: 2, colsPerThread: 3, depth: 1, rowBlocks: 2, x: 'global', reduce: 'workgroup' }],
  // 17 rows, one slice and 4-lane butterflies: one partial an output (stored from registers where no norm).
  ['one partial an output, 4-lane butterfly', 17, 64, { lanes: 4, slices: 1, colGroups: 4, colsPerThread: 2, depth: 2, rowBlocks: 1, x: 'global', reduce: 'subgroup' }],
  // One row (a decode step), 4 columns a thread (the LM head's pick there), 4 slices, x staged.
  ['one row, 4 slices, 4 columns a thread', 1, 256, { lanes: 8, slices: 4, colGroups: 3, colsPerThread: 4, depth: 1, rowBlocks: 1, x: 'shared', reduce: 'subgroup' }],
  // 17 rows over 3 workgroups along the grid's y (2 blocks of 3 rows each; the last workgroup holds 5 rows and a
  // padding row): x from memory, and x staged (each workgroup its own rows).
  ['3 row groups of 2 blocks, x from memory', 17, 128, { lanes: 8, slices: 2, colGroups: 3, colsPerThread: 2, depth: 1, rowBlocks: 2, rowGroups: 3, x: 'global', reduce: 'subgroup' }],
  ['2 row groups, x staged, one partial an output', 17, 64, { lanes: 4, slices: 1, colGroups: 4, colsPerThread: 2, depth: 2, rowBlocks: 1, rowGroups: 2, x: 'shared', reduce: 'subgroup' }],
];

describe('the lanes matmul equals the float64 formula at ragged rows and columns, every fusion', () => {
  for (const [name, M, K, knobs] of FORMS) {
    it(`${M} rows, ${name}: q|k|v (norm, split), gate|up (norm, swiglu), residual accumulate, the LM head (norm), plain`, async () => {
      for (const [N, fusion, seed] of [[3 * 23, QKV, 100], [2 * 19, GATE_UP, 200], [29, RESIDUAL, 300], [37, HEAD, 400], [31, undefined, 500]] as const) {
        const plan = await checkFusedMatmul(M, N, K, fusion, seed + M, lanes(knobs));
        expect(plan.path).toBe('lanes');
        expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(2);
      }
    });
  }

  it('65 rows in 6 blocks of 11 (one padding row), partials summed in rounds of rows; x staged in several chunks along K', async () => {
    const rounds = await checkFusedMatmul(65, 3 * 11, 64, QKV, 600, lanes({ lanes: 8, slices: 2, colGroups: 4, colsPerThread: 3, depth: 1, rowBlocks: 6, x: 'global', reduce: 'workgroup' }));
    expect(rounds.code).toMatch(/RC = \d+u; \/\/ rows of a row block a reduction round \([2-9] round/);
    await checkFusedMatmul(65, 2 * 13, 64, GATE_UP, 610, lanes({ lanes: 8, slices: 2, colGroups: 4, colsPerThread: 3, depth: 1, rowBlocks: 6, x: 'global', reduce: 'workgroup' }));
    // x [17, 1024] is 68 KB: more than a workgroup holds on any adapter, so it is staged in chunks.
    const chunks = await checkFusedMatmul(17, 29, 1024, RESIDUAL, 620, lanes({ lanes: 8, slices: 4, colGroups: 2, colsPerThread: 2, depth: 2, rowBlocks: 1, x: 'shared', reduce: 'subgroup' }));
    expect(chunks.code).toMatch(/\(([2-9]|1\d) chunk\(s\)/);
  });
});

describe("the lanes matmul's argmax epilogue", () => {
  /** Each row's token through the partials' pick, against the float64 logits; and all columns tied → column 0. */
  async function checkArgmax(M: number, knobs: LanesKnobs, seed: number, same = false): Promise<number[]> {
    const g = await gpu();
    const [N, K] = [150, 64];
    const fusion: MatmulFusion = { ...HEAD, epilogue: 'argmax' };
    const plan = await planMatmul(g, { M, N, K, transposeB: true, fusion }, { label: 'lanes argmax test', ...lanes(knobs) });
    expect(plan.path).toBe('lanes');
    const a = randn([M, K], seed, 2);
    const one = randn([K], seed + 50).data;
    const w = same ? { shape: [N, K], data: Float64Array.from({ length: N * K }, (_, i) => one[i % K]) } : randn([N, K], seed + 1);
    const gain = randn([K], seed + 2);
    const width = 2 * plan.workgroups[0];
    const out = allocTensor(g, 'pairs', [M, width]);
    writeTensor(g, out, new Float32Array(M * width).fill(Number.NaN));
    const made = [uploadTensor(g, 'x', a), uploadTensor(g, 'w', w), uploadTensor(g, 'gain', gain), out, allocTensor(g, 'tokens', [M])];
    const pick = await bindArgmaxPartials(g, { partials: out.buffer, tokens: made[4].buffer }, M, width / 2);
    const encoder = g.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeMatmul(pass, plan, bindMatmul(g, plan, made[0], made[1], out, { gain: made[2] }));
    encodeDispatch(pass, pick);
    pass.end();
    g.device.queue.submit([encoder.finish()]);
    const got = await downloadTensor(g, made[4]);
    destroyDispatch(pick);
    for (const t of made) releaseTensor(g, t);
    plan.params.destroy();
    const tokens = Array.from(new Uint32Array(got.buffer, got.byteOffset, M));
    const logits = fusedMatmulReference(a.data, w.data, { M, N, K }, HEAD, { gain: gain.data })[0];
    for (let m = 0; m < M && !same; m++) {
      const row = logits.subarray(m * N, (m + 1) * N);
      const best = Math.max(...row);
      expect(row[tokens[m]], `${plan.kernel} row ${m}: token ${tokens[m]} has ${row[tokens[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
    }
    return tokens;
  }

  it("each row's float64 argmax, and ties to the first column: 5 rows staged with 24 columns a workgroup, 17 in row blocks", async () => {
    for (const [M, knobs, seed] of [
      [1, { lanes: 8, slices: 2, colGroups: 8, colsPerThread: 4, depth: 1, rowBlocks: 1, x: 'shared', reduce: 'subgroup' }, 650],
      [5, { lanes: 8, slices: 2, colGroups: 12, colsPerThread: 2, depth: 1, rowBlocks: 1, x: 'shared', reduce: 'subgroup' }, 700],
      [17, { lanes: 8, slices: 1, colGroups: 4, colsPerThread: 4, depth: 2, rowBlocks: 2, x: 'global', reduce: 'workgroup' }, 800],
      [17, { lanes: 8, slices: 2, colGroups: 4, colsPerThread: 4, depth: 1, rowBlocks: 1, rowGroups: 3, x: 'shared', reduce: 'subgroup' }, 900],
    ] as const) {
      await checkArgmax(M, knobs, seed);
      expect(await checkArgmax(M, knobs, seed, true)).toEqual(new Array(M).fill(0));
    }
  });
});

describe('where the default path takes the lanes kernel', () => {
  const H200_SUBGROUPS = { ...H200, subgroupSize: 32 };
  const qkv = (M: number, K = 768) => ({ M, N: 2304, K, transposeB: true, fusion: QKV });

  it('1–128 rows on a hardware adapter with subgroups of 32, K up to 2048; not a software adapter, no fixed subgroups, K 4096, the Medusa heads or the argmax head above 8 rows', () => {
    for (const M of [1, 2, 5, 8, 17, 65, 128]) expect(matmulPathFor(qkv(M), H200_SUBGROUPS), `M ${M}`).toBe('lanes');
    expect(matmulPathFor({ M: 17, N: 768, K: 2048, transposeB: true, fusion: RESIDUAL }, H200_SUBGROUPS)).toBe('lanes');
    expect(matmulPathFor(qkv(17), { ...H200_SUBGROUPS, isSoftware: true })).not.toBe('lanes');
    expect(matmulPathFor(qkv(17), H200)).not.toBe('lanes');
    expect(matmulPathFor(qkv(17, 4096), H200_SUBGROUPS)).not.toBe('lanes');
    expect(matmulPathFor({ M: 5, N: 3072, K: 768, transposeB: true, fusion: { rmsnorm: { eps: EPS }, epilogue: 'heads residual' } }, H200_SUBGROUPS)).toBe('small-m');
    const head = (M: number) => ({ M, N: 32000, K: 768, transposeB: true, fusion: { ...HEAD, epilogue: 'argmax' as const } });
    expect(matmulPathFor(head(5), H200_SUBGROUPS)).toBe('lanes');
    expect(matmulPathFor(head(17), H200_SUBGROUPS)).toBe('skinny');
    expect(matmulPathFor({ ...head(17), fusion: HEAD }, H200_SUBGROUPS)).toBe('lanes');
    expect(matmulPathFor({ ...head(65), fusion: HEAD }, H200_SUBGROUPS)).toBe('lanes');
    expect(matmulPathFor(head(65), H200_SUBGROUPS)).toBe('skinny');
  });

  it("every row count 1–128 of the 12-layer model's projections and LM head (argmax, norm, plain) has a pick within the H200's limits", () => {
    const projections = [[2304, 768, QKV], [768, 768, RESIDUAL], [4096, 768, GATE_UP], [768, 2048, RESIDUAL], [32000, 768, { ...HEAD, epilogue: 'argmax' as const }], [32000, 768, HEAD], [32000, 768, undefined]] as const;
    for (let M = 1; M <= 128; M++) {
      for (const [N, K, fusion] of projections) {
        // matmulKernel throws where the pick does not fit (the LM head at 16 rows once took 50,176 bytes of 49,152).
        const k = matmulKernel(H200_SUBGROUPS, { M, N, K, transposeB: true, ...(fusion && { fusion }) });
        expect(k.workgroups[0], `M ${M} N ${N}: ${k.kernel}`).toBeGreaterThan(0);
      }
    }
  });

  it("the H200's picks for the 12-layer model's tree step sit where bench/skinny-probe.ts's sweep found its best (about 2 workgroups an SM, 8 lanes, the subgroup reduction)", () => {
    for (const M of [5, 17]) {
      for (const [N, K, fusion] of [[2304, 768, QKV], [768, 768, RESIDUAL], [8192, 768, GATE_UP], [768, 2048, RESIDUAL], [32000, 768, M <= 8 ? { ...HEAD, epilogue: 'argmax' as const } : HEAD]] as const) {
        const k = matmulKernel(H200_SUBGROUPS, { M, N, K, transposeB: true, fusion });
        expect(k.path, k.kernel).toBe('lanes');
        expect(k.tuning.lanes?.lanes, k.kernel).toBe(8);
        expect(k.tuning.lanes?.reduce, k.kernel).toBe('subgroup');
        expect(k.workgroups[0], k.kernel).toBeGreaterThanOrEqual(192);
        expect(k.workgroups[0], k.kernel).toBeLessThanOrEqual(288);
        // x staged at 5 rows and for the LM head's 128 columns a workgroup, from memory otherwise.
        expect(k.tuning.lanes?.x, k.kernel).toBe(M <= 8 || N === 32000 ? 'shared' : 'global');
      }
    }
  });
});

describe("the lanes kernel's rows over workgroups (lanesRowGroups) on an H200", () => {
  const H200_SUBGROUPS = { ...H200, subgroupSize: 32 };
  it('none up to 48 rows; above, the wide projections split their rows over the grid, o and down only above 96 rows', () => {
    const pick = (M: number, N: number, K: number, fusion?: MatmulFusion) => matmulKernel(H200_SUBGROUPS, { M, N, K, transposeB: true, ...(fusion && { fusion }) });
    for (const M of [1, 5, 17, 32, 40, 48]) for (const [N, K, f] of [[2304, 768, QKV], [4096, 768, GATE_UP], [768, 2048, RESIDUAL], [32000, 768, HEAD]] as const) expect(pick(M, N, K, f).workgroups[1]).toBe(1);
    expect(pick(65, 2304, 768, QKV).workgroups[1]).toBe(3);
    expect(pick(65, 4096, 768, GATE_UP).workgroups[1]).toBe(4);
    expect(pick(49, 4096, 768, GATE_UP).workgroups[1]).toBe(4);
    expect(pick(65, 32000, 768, HEAD).workgroups[1]).toBe(3);
    expect(pick(65, 768, 2048, RESIDUAL).workgroups[1]).toBe(1);
    expect(pick(128, 768, 768, RESIDUAL).workgroups[1]).toBe(2);
    // Every row is some workgroup's: G row groups of RB·TM rows cover M and none is empty.
    for (let M = 49; M <= 128; M++) {
      for (const [N, K, f] of [[2304, 768, QKV], [4096, 768, GATE_UP], [768, 2048, RESIDUAL], [32000, 768, HEAD]] as const) {
        const k = pick(M, N, K, f);
        const v = k.tuning.lanes!;
        const rows = v.rowBlocks! * Math.ceil(M / (v.rowBlocks! * k.workgroups[1]));
        expect(rows * k.workgroups[1], k.kernel).toBeGreaterThanOrEqual(M);
        expect(rows * (k.workgroups[1] - 1), k.kernel).toBeLessThan(M);
      }
    }
  });

  it("the H200's picks at 65 rows (and o's at 128), run with a stand-in's columns and K, equal the float64 formula", async () => {
    const cases = [[2304, 768, QKV, 3 * 23], [4096, 768, GATE_UP, 2 * 37], [32000, 768, HEAD, 97]] as const;
    for (const [M, seed, shapes] of [[65, 1100, cases], [128, 1200, [[768, 768, RESIDUAL, 29]]]] as const) {
      for (const [N, K, f, n] of shapes) {
        const t = matmulKernel(H200_SUBGROUPS, { M, N, K, transposeB: true, fusion: f }).tuning.lanes!;
        // K: two load groups of the pick's steps.
        const plan = await checkFusedMatmul(M, n, 2 * 4 * t.slices! * t.lanes! * t.depth!, f, seed + N, lanes(t));
        expect(plan.workgroups[1], plan.kernel).toBe(t.rowGroups);
      }
    }
  });
});
