import { describe, expect, it } from 'vitest';
import { matmulReference, type MatmulPath, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { bindMatmul, encodeMatmul, matmul, planMatmul } from '../src/runtime/matmul.ts';
import { TILE_128, TILE_64 } from '../backends/wgsl/matmul-tiled.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu, withTensors } from './helpers/gpu.ts';

async function check(
  p: MatmulProblem,
  seed: number,
  opts: { path?: MatmulPath; tile?: typeof TILE_64; smallMLanes?: number } = {},
) {
  const g = await gpu();
  const a = randn([p.M, p.K], seed);
  const b = randn(p.transposeB ? [p.N, p.K] : [p.K, p.N], seed + 1);
  const expected = matmulReference(a.data, b.data, p);
  const got = await withTensors(g, { a, b }, ({ a: ga, b: gb }) =>
    matmul(g, ga, gb, { transposeB: p.transposeB, ...opts }),
  );
  expectRelClose(got, expected, 1e-5, `seed ${seed}, ${JSON.stringify(p)}, ${JSON.stringify(opts)}`);
}

describe('tiled matmul equals the float64 reference', () => {
  for (const transposeB of [false, true]) {
    const layout = transposeB ? 'A·Wᵀ' : 'A·B';
    it(`${layout} at odd M, N, K (64×64 tiles, every bound checked)`, async () => {
      await check({ M: 67, N: 45, K: 83, transposeB }, 11, { path: 'tiled' });
    });
    it(`${layout} at tile multiples (no bounds checks) and several K tiles`, async () => {
      await check({ M: 128, N: 64, K: 48, transposeB }, 12, { path: 'tiled', tile: TILE_64 });
    });
    it(`${layout} with 128×128 tiles at ragged edges`, async () => {
      await check({ M: 130, N: 129, K: 37, transposeB }, 13, { path: 'tiled', tile: TILE_128 });
    });
    it(`${layout} with M = 9 (first size above the small-M path) and K = 1`, async () => {
      await check({ M: 9, N: 5, K: 1, transposeB }, 14);
    });
  }
});

describe('small-M matmul equals the float64 reference', () => {
  for (const transposeB of [false, true]) {
    const layout = transposeB ? 'x·Wᵀ' : 'x·B';
    for (const M of [1, 3, 8]) {
      it(`${layout}, M = ${M}, vec4 loads (K, N multiples of 4)`, async () => {
        await check({ M, N: 100, K: 72, transposeB }, 20 + M, { path: 'small-m' });
      });
    }
    it(`${layout}, M = 2, scalar loads (K, N odd)`, async () => {
      await check({ M: 2, N: 33, K: 41, transposeB }, 30, { path: 'small-m' });
    });
    it(`${layout}, M = 1 with many columns (several workgroups)`, async () => {
      await check({ M: 1, N: 2052, K: 20, transposeB }, 31, { path: 'small-m' });
    });
  }

  for (const transposeB of [false, true]) {
    it(`${transposeB ? 'x·Wᵀ' : 'x·B'} is correct for every lane count (threads per dot product)`, async () => {
      for (const lanes of [4, 16, 64, 256]) {
        await check({ M: 5, N: 36, K: 52, transposeB }, 50 + lanes, { path: 'small-m', smallMLanes: lanes });
      }
    });
  }

  it('is the default path for M ≤ 128 with Wᵀ (blocks of 8 rows in one workgroup), M ≤ 8 with B, and tiled above', async () => {
    const g = await gpu();
    expect((await planMatmul(g, { M: 8, N: 16, K: 16, transposeB: true })).path).toBe('small-m');
    expect((await planMatmul(g, { M: 128, N: 16, K: 16, transposeB: true })).path).toBe('small-m');
    expect((await planMatmul(g, { M: 129, N: 16, K: 16, transposeB: true })).path).toBe('tiled');
    expect((await planMatmul(g, { M: 8, N: 16, K: 16, transposeB: false })).path).toBe('small-m');
    expect((await planMatmul(g, { M: 9, N: 16, K: 16, transposeB: false })).path).toBe('tiled');
  });
});

describe('matmul launcher', () => {
  it('encodes several dispatches into one compute pass', async () => {
    const g = await gpu();
    const p: MatmulProblem = { M: 20, N: 12, K: 16, transposeB: true };
    const x = randn([p.M, p.K], 40);
    const w1 = randn([p.N, p.K], 41);
    const w2 = randn([p.N, p.K], 42);
    const plan = await planMatmul(g, p, { label: 'two projections' });
    const gx = uploadTensor(g, 'x', x);
    const g1 = uploadTensor(g, 'w1', w1);
    const g2 = uploadTensor(g, 'w2', w2);
    const y1 = allocTensor(g, 'y1', [p.M, p.N]);
    const y2 = allocTensor(g, 'y2', [p.M, p.N]);
    const encoder = g.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeMatmul(pass, plan, bindMatmul(g, plan, gx, g1, y1));
    encodeMatmul(pass, plan, bindMatmul(g, plan, gx, g2, y2));
    pass.end();
    g.device.queue.submit([encoder.finish()]);
    expectRelClose(await downloadTensor(g, y1), matmulReference(x.data, w1.data, p), 1e-5, 'first dispatch');
    expectRelClose(await downloadTensor(g, y2), matmulReference(x.data, w2.data, p), 1e-5, 'second dispatch');
    for (const t of [gx, g1, g2, y1, y2]) releaseTensor(g, t);
  });

  it('rejects operands whose shape does not match the plan, naming the tensor', async () => {
    const g = await gpu();
    const plan = await planMatmul(g, { M: 4, N: 8, K: 16, transposeB: true });
    const x = allocTensor(g, 'hidden', [4, 16]);
    const w = allocTensor(g, 'q_proj.weight', [16, 8]); // [in, out]: the wrong layout for Wᵀ
    const y = allocTensor(g, 'q', [4, 8]);
    expect(() => bindMatmul(g, plan, x, w, y)).toThrow(/W 'q_proj\.weight' has shape \[16, 8\], expected \[8, 16\]/);
    for (const t of [x, w, y]) releaseTensor(g, t);
  });
});
