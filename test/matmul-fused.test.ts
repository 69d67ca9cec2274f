import { describe, expect, it } from 'vitest';
import type { MatmulOptions, MatmulPath } from '../backends/wgsl/matmul.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { fusedMatmulReference, outputColumns, outputCount, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, writeTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const EPS = 1e-5;

/** Runs A·Wᵀ with `fusion` on the GPU and compares every output with the float64 formula. */
async function check(M: number, N: number, K: number, fusion: MatmulFusion | undefined, seed: number, opts: MatmulOptions & { path?: MatmulPath } = {}) {
  const g = await gpu();
  const what = `seed ${seed}, M=${M} N=${N} K=${K}, ${JSON.stringify(fusion)}, ${JSON.stringify(opts)}`;
  const a = randn([M, K], seed, 2);
  const w = randn([N, K], seed + 1);
  const gain = randn([K], seed + 2);
  const c0 = randn([M, outputColumns(fusion, N)], seed + 3);
  const plan = await planMatmul(g, { M, N, K, transposeB: true, ...(fusion && { fusion }) }, { label: 'fused test', ...opts });
  const made: GpuTensor[] = [];
  const up = (name: string, t: typeof a) => {
    const x = uploadTensor(g, name, t);
    made.push(x);
    return x;
  };
  const outs = Array.from({ length: outputCount(fusion) }, (_, i) => {
    const t = allocTensor(g, `C${i}`, [M, outputColumns(fusion, N)]);
    made.push(t);
    return t;
  });
  // C0 holds the residual an 'accumulate' adds to; the other outputs start as garbage that must be overwritten.
  writeTensor(g, outs[0], Float32Array.from(c0.data));
  for (const o of outs.slice(1)) writeTensor(g, o, new Float32Array(M * outputColumns(fusion, N)).fill(7));
  const bind = bindMatmul(g, plan, up('x', a), up('w', w), outs, fusion?.rmsnorm ? { gain: up('gain', gain) } : {});
  const encoder = g.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  encodeMatmul(pass, plan, bind);
  pass.end();
  g.device.queue.submit([encoder.finish()]);
  const want = fusedMatmulReference(a.data, w.data, { M, N, K }, fusion, { gain: gain.data, c0: c0.data });
  for (let i = 0; i < outs.length; i++) expectRelClose(await downloadTensor(g, outs[i]), want[i], 2e-5, `${what}: output ${i} (${plan.kernel})`);
  for (const t of made) releaseTensor(g, t);
  return plan;
}

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };

describe('fused small-M matmuls equal the float64 formula', () => {
  for (let M = 1; M <= 8; M++) {
    it(`M = ${M}: rmsnorm(x)·[W_q; W_k; W_v]ᵀ split into q, k, v (odd head size, vec4 loads)`, async () => {
      await check(M, 3 * 21, 44, QKV, 100 + M);
    });
    it(`M = ${M}: swiglu(rmsnorm(x)·[W_gate; W_up]ᵀ) (odd intermediate size, scalar loads)`, async () => {
      await check(M, 2 * 19, 37, GATE_UP, 200 + M);
    });
    it(`M = ${M}: x += a·Wᵀ (residual accumulate)`, async () => {
      await check(M, 29, 52, RESIDUAL, 300 + M);
    });
  }

  it('rmsnorm prologue with a plain store (the LM head), and a split without the norm', async () => {
    await check(2, 75, 40, { rmsnorm: { eps: EPS } }, 400);
    await check(3, 2 * 17, 24, { epilogue: { split: 2 } }, 401);
  });

  it('is correct with 1 to 4 output columns per thread, also when they do not divide N', async () => {
    for (const cols of [1, 2, 3, 4]) {
      await check(5, 3 * 7, 36, QKV, 450 + cols, { smallMCols: cols });
      await check(8, 2 * 13 + 1, 52, RESIDUAL, 460 + cols, { smallMCols: cols });
      await check(1, 37, 20, { rmsnorm: { eps: EPS } }, 470 + cols, { smallMCols: cols, smallMLanes: 4 });
    }
  });

  it('is correct for every lane count and unroll, including unrolls that overrun the row', async () => {
    for (const [lanes, unroll] of [[1, 1], [4, 3], [8, 8], [32, 2], [256, 1]] as const) {
      await check(3, 3 * 9, 68, QKV, 500 + lanes, { smallMLanes: lanes, smallMUnroll: unroll });
      await check(2, 2 * 9, 68, GATE_UP, 600 + lanes, { smallMLanes: lanes, smallMUnroll: unroll });
    }
  });

  it('many workgroups: a long row (K = 2048, the down projection), and many [gate, up] pairs', async () => {
    for (const [N, K, fusion] of [[260, 2048, RESIDUAL], [2 * 150, 64, GATE_UP], [3 * 70, 64, QKV]] as const) {
      const plan = await check(2, N, K, fusion, 700 + N);
      expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(1);
    }
  });
});

describe('the small-M Wᵀ kernel above 8 rows (draft trees): blocks of rows in one workgroup, each weight read once', () => {
  it('M = 13 and 65: every fusion, all rows in one workgroup row, the last block partial', async () => {
    for (const M of [13, 65]) {
      for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 1000], [2 * 19, 37, GATE_UP, 1100], [29, 52, RESIDUAL, 1200]] as const) {
        const plan = await check(M, N, K, fusion, seed + M);
        expect(plan.path).toBe('small-m');
        expect(plan.workgroups[1], plan.kernel).toBe(1);
      }
    }
  });

  it('fewer blocks per workgroup than the rows need put the rest on the grid (M = 13 one block, M = 64 three)', async () => {
    for (const [M, rowBlocks, gridRows] of [[13, 1, 2], [64, 3, 3]] as const) {
      for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 1300], [2 * 19, 37, GATE_UP, 1400], [29, 52, RESIDUAL, 1500]] as const) {
        const plan = await check(M, N, K, fusion, seed + M, { smallMRowBlocks: rowBlocks });
        expect(plan.workgroups[1], plan.kernel).toBe(gridRows);
      }
    }
  });
});

describe('the tiled matmul takes the split and accumulate epilogues (prefill-sized M)', () => {
  it('M = 13 and 70: q | k | v split and residual accumulate at ragged tiles', async () => {
    for (const M of [13, 70]) {
      expect((await check(M, 3 * 21, 44, { epilogue: { split: 3 } }, 800 + M, { path: 'tiled' })).path).toBe('tiled');
      expect((await check(M, 29, 52, RESIDUAL, 900 + M, { path: 'tiled' })).path).toBe('tiled');
    }
  });

  it('refuses the rmsnorm prologue and swiglu, which need a whole row in one thread', async () => {
    const g = await gpu();
    await expect(planMatmul(g, { M: 13, N: 8, K: 8, transposeB: true, fusion: GATE_UP }, { path: 'tiled' })).rejects.toThrow(/small-m path only/);
    await expect(planMatmul(g, { M: 129, N: 8, K: 8, transposeB: true, fusion: GATE_UP })).rejects.toThrow(/small-m path only/);
    await expect(planMatmul(g, { M: 2, N: 9, K: 8, transposeB: true, fusion: { epilogue: 'swiglu' } })).rejects.toThrow(/even N/);
  });
});
