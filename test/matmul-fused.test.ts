import { describe, expect, it } from 'vitest';
import { matmulKernel, TILE_128_SWIGLU, TILE_64_PAIRED, type MatmulOptions } from '../backends/wgsl/matmul.ts';
import { TILE_128, TILE_64, type MatmulTile } from '../backends/wgsl/matmul-tiled.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { bindArgmaxPartials, encodeDispatch } from '../src/runtime/model-kernels.ts';
import { fusedMatmulReference, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { checkFusedMatmul, EPS } from './helpers/fused-matmul.ts';
import { H200 } from './helpers/projections.ts';

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };

describe('fused small-M matmuls equal the float64 formula', () => {
  for (let M = 1; M <= 8; M++) {
    it(`M = ${M}: rmsnorm(x)·[W_q; W_k; W_v]ᵀ split into q, k, v (odd head size, vec4 loads)`, async () => {
      await checkFusedMatmul(M, 3 * 21, 44, QKV, 100 + M);
    });
    it(`M = ${M}: swiglu(rmsnorm(x)·[W_gate; W_up]ᵀ) (odd intermediate size, scalar loads)`, async () => {
      await checkFusedMatmul(M, 2 * 19, 37, GATE_UP, 200 + M);
    });
    it(`M = ${M}: x += a·Wᵀ (residual accumulate)`, async () => {
      await checkFusedMatmul(M, 29, 52, RESIDUAL, 300 + M);
    });
  }

  it('rmsnorm prologue with a plain store (the LM head), and a split without the norm', async () => {
    await checkFusedMatmul(2, 75, 40, { rmsnorm: { eps: EPS } }, 400);
    await checkFusedMatmul(3, 2 * 17, 24, { epilogue: { split: 2 } }, 401);
  });

  it("the Medusa heads' residual blocks y + silu(rmsnorm(x)·[proj_0; …]ᵀ + bias), head-major: vec4 and scalar loads, 1 to 4 columns per thread, rows in blocks", async () => {
    const HEADS: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'heads residual' };
    await checkFusedMatmul(1, 3 * 20, 20, HEADS, 480);
    await checkFusedMatmul(3, 2 * 17, 17, HEADS, 481);
    for (const cols of [2, 4]) await checkFusedMatmul(5, 4 * 12, 12, HEADS, 482 + cols, { smallMCols: cols });
    await checkFusedMatmul(13, 2 * 16, 16, HEADS, 487);
  });

  it('is correct with 1 to 4 output columns per thread, also when they do not divide N', async () => {
    for (const cols of [1, 2, 3, 4]) {
      await checkFusedMatmul(5, 3 * 7, 36, QKV, 450 + cols, { smallMCols: cols });
      await checkFusedMatmul(8, 2 * 13 + 1, 52, RESIDUAL, 460 + cols, { smallMCols: cols });
      await checkFusedMatmul(1, 37, 20, { rmsnorm: { eps: EPS } }, 470 + cols, { smallMCols: cols, smallMLanes: 4 });
    }
  });

  it('is correct for every lane count and unroll, including unrolls that overrun the row', async () => {
    for (const [lanes, unroll] of [[1, 1], [4, 3], [8, 8], [32, 2], [256, 1]] as const) {
      await checkFusedMatmul(3, 3 * 9, 68, QKV, 500 + lanes, { smallMLanes: lanes, smallMUnroll: unroll });
      await checkFusedMatmul(2, 2 * 9, 68, GATE_UP, 600 + lanes, { smallMLanes: lanes, smallMUnroll: unroll });
    }
  });

  it('a row longer than 2048 (LLaMA-7B\'s K): the default takes 32 lanes and 4 loads a thread, from 4 rows 4 columns', async () => {
    for (const [M, N, fusion, cols] of [[1, 3 * 13, QKV, ''], [5, 2 * 11, GATE_UP, ''], [5, 37, RESIDUAL, ' × 4 columns']] as const) {
      const plan = await checkFusedMatmul(M, N, 2080, fusion, 800 + M + N);
      expect(plan.kernel).toContain(`32 lanes × 4 loads${cols}`);
    }
  });

  it('many workgroups: a long row (K = 2048, the down projection), and many [gate, up] pairs', async () => {
    for (const [N, K, fusion] of [[260, 2048, RESIDUAL], [2 * 150, 64, GATE_UP], [3 * 70, 64, QKV]] as const) {
      const plan = await checkFusedMatmul(2, N, K, fusion, 700 + N);
      expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(1);
    }
  });
});

describe('the small-M Wᵀ kernel above 8 rows (draft trees): blocks of rows in one workgroup, each weight read once', () => {
  it('M = 13 and 65: every fusion, all rows in one workgroup row, the last block partial', async () => {
    for (const M of [13, 65]) {
      for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 1000], [2 * 19, 37, GATE_UP, 1100], [29, 52, RESIDUAL, 1200]] as const) {
        const plan = await checkFusedMatmul(M, N, K, fusion, seed + M);
        expect(plan.path).toBe('small-m');
        expect(plan.workgroups[1], plan.kernel).toBe(1);
      }
    }
  });

  it('fewer blocks per workgroup than the rows need put the rest on the grid (M = 13 one block, M = 64 three)', async () => {
    for (const [M, rowBlocks, gridRows] of [[13, 1, 2], [64, 3, 3]] as const) {
      for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 1300], [2 * 19, 37, GATE_UP, 1400], [29, 52, RESIDUAL, 1500]] as const) {
        const plan = await checkFusedMatmul(M, N, K, fusion, seed + M, { smallMRowBlocks: rowBlocks });
        expect(plan.workgroups[1], plan.kernel).toBe(gridRows);
      }
    }
  });
});

describe('the rows kernel (9–128 rows, wide Wᵀ: the LM head, gate|up and q|k|v of a tree): every row in every workgroup', () => {
  // Few cases: lavapipe compiles this kernel slowly (seconds each; a sum per row and column in registers).
  it('M = 9 with every fusion, M = 65 in three blocks, and the default path for a wide LM head', async () => {
    for (const [M, N, K, fusion, seed] of [[9, 3 * 21, 44, QKV, 2000], [9, 2 * 19, 36, GATE_UP, 2100], [9, 29, 52, RESIDUAL, 2200], [65, 2 * 19, 36, GATE_UP, 2300]] as const) {
      const plan = await checkFusedMatmul(M, N, K, fusion, seed, { path: 'rows' });
      expect(plan.path).toBe('rows');
    }
    const plan = await checkFusedMatmul(17, 1024, 64, { rmsnorm: { eps: EPS } }, 2400);
    // A software adapter's chooser takes the rows kernel here; a hardware adapter's with fixed subgroups (the H200's 32)
    // the lanes kernel (matmul-picks-lanes-h200.test.ts), which checkFusedMatmul has just checked all the same.
    if ((await gpu()).isSoftware) expect(plan.path, plan.kernel).toBe('rows');
    else expect(['rows', 'lanes'], plan.kernel).toContain(plan.path);
    expect(plan.workgroups[1]).toBe(1);
  });

  it('is correct for blocks, slices, loads per tile and columns per thread, ragged, and reduced a row per round', async () => {
    await checkFusedMatmul(13, 3 * 23, 76, QKV, 2500, { path: 'rows', rows: { blocks: 3, slices: 8, unroll: 2, cols: 4, colsPerThread: 3 } });
    await checkFusedMatmul(11, 31, 28, RESIDUAL, 2600, { path: 'rows', rows: { blocks: 1, slices: 1, unroll: 1, cols: 64, colsPerThread: 2 } });
  });
});

describe('the argmax epilogue (an LM head whose logits are never written)', () => {
  /** Each row's token from rmsnorm(x)·Wᵀ with the argmax epilogue and the partials' argmax dispatch. */
  async function tokens(M: number, N: number, K: number, w: Float64Array, seed: number, opts: MatmulOptions = {}): Promise<{ got: Uint32Array; logits: Float64Array; parts: number }> {
    const g = await gpu();
    const fusion: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'argmax' };
    const plan = await planMatmul(g, { M, N, K, transposeB: true, fusion }, { label: 'argmax test', ...opts });
    expect(plan.path).toBe(opts.path ?? 'rows');
    const a = randn([M, K], seed, 2);
    const gain = randn([K], seed + 2);
    const made = [uploadTensor(g, 'x', a), uploadTensor(g, 'w', { shape: [N, K], data: w }), uploadTensor(g, 'gain', gain), allocTensor(g, 'partials', [M, 2 * plan.workgroups[0]])];
    const ids = allocTensor(g, 'tokens', [M]);
    made.push(ids);
    const reduce = await bindArgmaxPartials(g, { partials: made[3].buffer, tokens: ids.buffer }, M, plan.workgroups[0]);
    const encoder = g.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeMatmul(pass, plan, bindMatmul(g, plan, made[0], made[1], made[3], { gain: made[2] }));
    encodeDispatch(pass, reduce);
    pass.end();
    g.device.queue.submit([encoder.finish()]);
    const got = new Uint32Array((await downloadTensor(g, ids)).buffer);
    for (const t of made) releaseTensor(g, t);
    const [logits] = fusedMatmulReference(a.data, w, { M, N, K }, { rmsnorm: { eps: EPS } }, { gain: gain.data });
    return { got, logits, parts: plan.workgroups[0] };
  }

  it('picks each row\'s largest logit across many workgroups, and the lowest column among exact ties', async () => {
    const N = 300;
    const K = 64;
    // The rows kernel's own choice at 17 rows (a hardware adapter's chooser takes the skinny kernel there), and slices
    // along K (their partial sums reduced before the argmax) at 9.
    for (const [M, opts] of [[17, { path: 'rows' }], [9, { path: 'rows', rows: { slices: 4, cols: 8 } }]] as const) {
      const { got, logits, parts } = await tokens(M, N, K, randn([N, K], 3100).data, 3000 + M, opts);
      expect(parts).toBeGreaterThan(1);
      for (let m = 0; m < M; m++) {
        const row = logits.subarray(m * N, (m + 1) * N);
        const best = Math.max(...row);
        expect(row[got[m]], `M ${M} row ${m}: token ${got[m]} has logit ${row[got[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
      }
    }
    const M = 17;
    // Every weight row alike: every column ties, in every workgroup; the first column wins.
    const one = randn([K], 3200).data;
    const same = new Float64Array(N * K);
    for (let n = 0; n < N; n++) same.set(one, n * K);
    expect(Array.from((await tokens(M, N, K, same, 3300, { path: 'rows' })).got)).toEqual(new Array(M).fill(0));
  });

  it('the small-M kernel\'s argmax (a hardware decode step\'s head, 1–8 rows): each row\'s largest logit over many workgroups, 1, 2 and 4 columns a thread, and the lowest column among ties', async () => {
    const N = 300;
    const K = 72;
    for (const [M, opts] of [
      [1, { path: 'small-m', smallMLanes: 8, smallMUnroll: 2 }],
      [3, { path: 'small-m', smallMLanes: 4, smallMUnroll: 3, smallMCols: 2 }],
      [8, { path: 'small-m', smallMLanes: 8, smallMUnroll: 2, smallMCols: 4 }],
    ] as const) {
      const { got, logits, parts } = await tokens(M, N, K, randn([N, K], 3150 + M).data, 3050 + M, opts);
      expect(parts).toBeGreaterThan(1);
      for (let m = 0; m < M; m++) {
        const row = logits.subarray(m * N, (m + 1) * N);
        const best = Math.max(...row);
        expect(row[got[m]], `M ${M} row ${m}: token ${got[m]} has logit ${row[got[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
      }
      // Every weight row alike: every column ties in every workgroup and thread; the first column wins.
      const one = randn([K], 3250 + M).data;
      const same = new Float64Array(N * K);
      for (let n = 0; n < N; n++) same.set(one, n * K);
      expect(Array.from((await tokens(M, N, K, same, 3350 + M, opts)).got), `M ${M}, all tied`).toEqual(new Array(M).fill(0));
    }
  });

  it("the H200's pick for the greedy decode step's head (M 1 and 8, 32000 × 768) picks each row's float64 argmax on a 300-column stand-in", async () => {
    const g = await gpu();
    const target = { ...H200, limits: { ...H200.limits, maxComputeWorkgroupStorageSize: Math.min(H200.limits.maxComputeWorkgroupStorageSize, g.limits.maxComputeWorkgroupStorageSize) } };
    for (const [M, cols, groups] of [[1, 1, 1000], [8, 4, 250]] as const) {
      const head = { M, N: 32000, K: 768, transposeB: true, fusion: { rmsnorm: { eps: EPS }, epilogue: 'argmax' as const } };
      // On the H200: the small-M kernel, 8 lanes × 2 loads, `cols` columns per thread, whose workgroups' pairs one dispatch reduces.
      const h200 = matmulKernel(H200, head);
      expect(h200.tuning, `M ${M}: ${h200.kernel}`).toEqual({ path: 'small-m', smallMLanes: 8, smallMUnroll: 2, smallMRowBlocks: 1, smallMCols: cols });
      expect(h200.workgroups).toEqual([groups, 1, 1]);
      const pick = matmulKernel(target, head);
      const [N, K] = [300, 4 * (pick.tuning.smallMLanes! * pick.tuning.smallMUnroll! + 3)];
      const { got, logits, parts } = await tokens(M, N, K, randn([N, K], 3400 + M).data, 3500 + M, pick.tuning);
      // Several workgroups, the last one partial (300 is no multiple of 32 or 64 column groups × `cols`).
      expect(parts, 'workgroups of the stand-in').toBe(matmulKernel(target, { ...head, N, K }, pick.tuning).workgroups[0]);
      expect(parts).toBeGreaterThan(2);
      for (let m = 0; m < M; m++) {
        const row = logits.subarray(m * N, (m + 1) * N);
        const best = Math.max(...row);
        expect(row[got[m]], `M ${M} row ${m}: token ${got[m]} has logit ${row[got[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
      }
    }
  });
});

describe('the tiled matmul takes the split and accumulate epilogues (prefill-sized M)', () => {
  it('M = 13 and 70: q | k | v split and residual accumulate at ragged tiles', async () => {
    for (const M of [13, 70]) {
      expect((await checkFusedMatmul(M, 3 * 21, 44, { epilogue: { split: 3 } }, 800 + M, { path: 'tiled' })).path).toBe('tiled');
      expect((await checkFusedMatmul(M, 29, 52, RESIDUAL, 900 + M, { path: 'tiled' })).path).toBe('tiled');
    }
  });

  it('refuses the argmax epilogue, and swiglu on a tile whose threads hold one column group', async () => {
    const g = await gpu();
    await expect(planMatmul(g, { M: 13, N: 8, K: 8, transposeB: true, fusion: GATE_UP }, { path: 'tiled', tile: TILE_64 })).rejects.toThrow(/TN is a multiple of 8/);
    await expect(planMatmul(g, { M: 129, N: 8, K: 8, transposeB: true, fusion: { rmsnorm: { eps: EPS }, epilogue: 'argmax' } })).rejects.toThrow(/rows and skinny paths \(A·Wᵀ, M ≤ 128, K a multiple of 4\) and the small-m path \(M ≤ 8\) only/);
    await expect(planMatmul(g, { M: 2, N: 9, K: 8, transposeB: true, fusion: { epilogue: 'swiglu' } })).rejects.toThrow(/even N/);
  });
});

describe('the tiled matmul takes the rmsnorm prologue and the swiglu epilogue (the prefill\'s norms and SwiGLU)', () => {
  // A small tile that pairs columns (4×8 per thread, 32 threads), so that few rows still span several tiles.
  const SMALL: MatmulTile = { BM: 32, BN: 32, BK: 16, TM: 4, TN: 8 };

  it('M, N, K not multiples of the tile: rmsnorm + q|k|v split, rmsnorm + swiglu, rmsnorm alone, swiglu alone', async () => {
    for (const tile of [SMALL, TILE_64_PAIRED]) {
      for (const M of [13, 70]) {
        for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 3400], [2 * 19, 37, GATE_UP, 3500], [75, 40, { rmsnorm: { eps: EPS } }, 3600], [2 * 23, 36, { epilogue: 'swiglu' }, 3700]] as const) {
          const plan = await checkFusedMatmul(M, N, K, fusion, seed + M, { path: 'tiled', tile });
          expect(plan.path).toBe('tiled');
        }
      }
    }
  });

  it('M, N, K multiples of the tile (no bounds checks), several tiles along each, and rmsnorm with the residual epilogue', async () => {
    for (const [N, fusion, seed] of [[128, GATE_UP, 3800], [96, QKV, 3900], [64, { rmsnorm: { eps: EPS }, epilogue: 'accumulate' }, 4000]] as const) {
      const plan = await checkFusedMatmul(64, N, 48, fusion, seed, { path: 'tiled', tile: SMALL });
      expect(plan.workgroups[0] * plan.workgroups[1], plan.kernel).toBeGreaterThan(3);
    }
  });

  it('the tiles a 2048-token prefill runs: 64×64 8×4 (q|k|v, o, down) and 128×128×8 8×8 (gate|up), ragged', async () => {
    for (const [tile, N, K, fusion, seed] of [[TILE_64, 3 * 21, 44, QKV, 4200], [TILE_64, 29, 52, { rmsnorm: { eps: EPS }, epilogue: 'accumulate' }, 4300], [TILE_128_SWIGLU, 2 * 70, 44, GATE_UP, 4400], [TILE_128, 2 * 70, 40, GATE_UP, 4450], [TILE_128, 3 * 45, 36, QKV, 4500]] as const) {
      const plan = await checkFusedMatmul(130, N, K, fusion, seed, { path: 'tiled', tile });
      expect(plan.tuning.tile).toEqual(tile);
    }
  });

  it('the default tile for swiglu above 128 rows pairs columns', async () => {
    const plan = await checkFusedMatmul(130, 2 * 40, 20, GATE_UP, 4100);
    expect(plan.path).toBe('tiled');
    expect(plan.tuning.tile).toEqual(TILE_64_PAIRED);
  });
});
