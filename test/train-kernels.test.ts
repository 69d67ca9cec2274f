// Every kernel of a training step against its float64 formula, at sizes that divide nothing: the weight-gradient
// matmul (Aᵀ·B, split K with the fixed-order sum), the input-gradient matmul accumulating, residual + RMSNorm and
// its backward, SwiGLU both ways, the blocked softmax cross-entropy, column and block sums, the embedding's
// CSR backward and the fused AdamW with global-norm clipping.
import { describe, expect, it } from 'vitest';
import { matmulReference, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { TILE_64 } from '../backends/wgsl/matmul-tiled.ts';
import { compileModelKernels } from '../src/runtime/model-kernels.ts';
import { adamwParams } from '../backends/wgsl/train-adamw.ts';
import { tokenRows } from '../backends/wgsl/train-embedding.ts';
import { floatRange, uniformBuffer } from '../src/runtime/buffer-range.ts';
import { BufferUsage, type Gpu } from '../src/runtime/device.ts';
import { planMatmul } from '../src/runtime/matmul.ts';
import { encodeDispatch, type BoundDispatch } from '../src/runtime/model-kernels.ts';
import {
  bindAdamW, bindColumnSum, bindCrossEntropy, bindEmbeddingBackward, bindMatmulRanges, bindNormRows, bindResidualNorm,
  bindRmsnormBackward, bindSumBlocks, bindSwigluBackward, bindSwigluForward, columnSumScratch, compileTrainKernels, type TrainKernels,
} from '../src/runtime/train-kernels.ts';
import { adamwStep } from '../src/model/train/adamw.ts';
import { crossEntropy, rmsNormBackward } from '../src/model/train/cpu-grad.ts';
import { rmsNorm, silu } from '../src/model/cpu-forward.ts';
import type { ParamLayout } from '../src/model/train/param-layout.ts';
import { downloadTensor } from '../src/runtime/gpu-tensor.ts';
import { randn, rng } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const EPS = 1e-5;
let kernels: TrainKernels | undefined;
async function setup(): Promise<{ g: Gpu; k: TrainKernels }> {
  const g = await gpu();
  kernels ??= await compileTrainKernels(g, { hidden: 37, vocab: 301, eps: EPS });
  return { g, k: kernels };
}

function buffer(g: Gpu, label: string, data: Float32Array | Uint32Array | number): GPUBuffer {
  const n = typeof data === 'number' ? data : data.length;
  const b = g.device.createBuffer({ label, size: Math.max(4, n * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  if (typeof data !== 'number') g.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}
const f32 = (n: number, seed: number, scale = 1) => Float32Array.from(randn([n], seed, scale).data);

async function run(g: Gpu, dispatches: readonly BoundDispatch[]): Promise<void> {
  const enc = g.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const d of dispatches) encodeDispatch(pass, d);
  pass.end();
  g.device.queue.submit([enc.finish()]);
}
const read = (g: Gpu, b: GPUBuffer, n: number) => downloadTensor(g, { name: b.label, shape: [n], bytes: n * 4, buffer: b });

describe('training matmuls', () => {
  it('dW = dYᵀ·X (A stored [K, M]) at odd sizes, whole and with K split in 3 summed in a fixed order', async () => {
    const { g, k } = await setup();
    const p: MatmulProblem = { M: 37, N: 45, K: 83, transposeB: false, transposeA: true };
    const a = f32(p.K * p.M, 1);
    const b = f32(p.K * p.N, 2);
    const before = f32(p.M * p.N, 3);
    const want = matmulReference(a, b, p).map((x, i) => x + before[i]);
    const whole = await planMatmul(g, { ...p, fusion: { epilogue: 'accumulate' } }, { tile: TILE_64 });
    const cWhole = buffer(g, 'c whole', before);
    const split = await planMatmul(g, { ...p, splitK: 3 }, { tile: TILE_64 });
    expect(split.splits).toBe(3);
    const partials = buffer(g, 'partials', split.splits * p.M * p.N);
    const cSplit = buffer(g, 'c split', before);
    const A = buffer(g, 'a', a);
    const B = buffer(g, 'b', b);
    await run(g, [
      bindMatmulRanges(g, whole, { a: A, w: B, c: cWhole }),
      bindMatmulRanges(g, split, { a: A, w: B, c: partials }),
      ...bindColumnSum(g, k, { x: partials, target: cSplit }, split.splits, p.M * p.N, 'sum of K splits'),
    ]);
    expectRelClose(await read(g, cWhole, p.M * p.N), want, 2e-6, 'Aᵀ·B accumulated');
    expectRelClose(await read(g, cSplit, p.M * p.N), want, 2e-6, 'Aᵀ·B split in 3');
  });

  it('dX += dY·W (W [N, K] read as B) accumulates into a range of a larger buffer', async () => {
    const { g } = await setup();
    const p: MatmulProblem = { M: 67, N: 45, K: 29, transposeB: false };
    const a = f32(p.M * p.K, 4);
    const w = f32(p.K * p.N, 5);
    const before = f32(p.M * p.N, 6);
    const want = matmulReference(a, w, p).map((x, i) => x + before[i]);
    const plan = await planMatmul(g, { ...p, fusion: { epilogue: 'accumulate' } }, { path: 'tiled' });
    const big = buffer(g, 'big', 64 + p.M * p.N); // C lives at float 64 (256 bytes in)
    g.device.queue.writeBuffer(big, 256, before);
    await run(g, [bindMatmulRanges(g, plan, { a: buffer(g, 'a', a), w: buffer(g, 'w', w), c: floatRange(big, 64, p.M * p.N) })]);
    expectRelClose((await read(g, big, 64 + p.M * p.N)).subarray(64), want, 2e-6, 'dY·W accumulated');
  });
});

describe('position-wise training kernels', () => {
  it('residual + RMSNorm forward, and RMSNorm backward with the gain gradient summed over rows', async () => {
    const { g, k } = await setup();
    const g0 = await gpu();
    const mk = await compileModelKernels(g0, { hidden: 37, intermediate: 5, vocab: 301, eps: EPS });
    const H = 37;
    const rows = 5;
    const xp = f32(rows * H, 7);
    const dl = f32(rows * H, 8);
    const gain = f32(H, 9);
    const dy = f32(rows * H, 10);
    const dxBefore = f32(rows * H, 11);
    const xNew = Float64Array.from(xp, (x, i) => Math.fround(x + dl[i]));
    const wantY = rmsNorm(xNew, Float64Array.from(gain), EPS);
    const dGain = new Float64Array(H);
    const wantDx = rmsNormBackward(xNew, Float64Array.from(gain), EPS, Float64Array.from(dy), dGain).map((x, i) => x + dxBefore[i]);
    const b = {
      xp: buffer(g, 'x prev', xp), dl: buffer(g, 'delta', dl), gain: buffer(g, 'gain', gain), xn: buffer(g, 'x new', rows * H),
      y: buffer(g, 'y', rows * H), y2: buffer(g, 'y plain', rows * H), dy: buffer(g, 'dy', dy), dx: buffer(g, 'dx', dxBefore), gp: buffer(g, 'gp', rows * H),
      dGain: buffer(g, 'dgain', new Float32Array(H).fill(0.5)),
    };
    await run(g, [
      bindResidualNorm(g, k, { xPrev: b.xp, delta: b.dl, gain: b.gain, xNew: b.xn, y: b.y }, rows, 'residual norm'),
      bindNormRows(g, mk, { x: b.xn, gain: b.gain, y: b.y2 }, rows, 'plain norm'),
      bindRmsnormBackward(g, k, { x: b.xn, gain: b.gain, dy: b.dy, dx: b.dx, gp: b.gp }, rows, true, 'norm backward'),
      ...bindColumnSum(g, k, { x: b.gp, target: b.dGain }, rows, H, 'gain gradient'),
    ]);
    expectRelClose(await read(g, b.xn, rows * H), xNew, 1e-7, 'x_new');
    expectRelClose(await read(g, b.y, rows * H), wantY, 2e-6, 'y');
    expectRelClose(await read(g, b.y2, rows * H), wantY, 2e-6, 'y (model kernel)');
    expectRelClose(await read(g, b.dx, rows * H), wantDx, 2e-6, 'dx accumulated');
    expectRelClose(await read(g, b.dGain, H), dGain.map((x) => x + 0.5), 2e-6, 'dgain');
  });

  it('SwiGLU forward and backward', async () => {
    const { g, k } = await setup();
    const n = 1001;
    const [gate, up, dact] = [f32(n, 12, 2), f32(n, 13), f32(n, 14)];
    const b = { g: buffer(g, 'g', gate), u: buffer(g, 'u', up), d: buffer(g, 'dact', dact), act: buffer(g, 'act', n), dg: buffer(g, 'dg', n), du: buffer(g, 'du', n) };
    await run(g, [
      bindSwigluForward(g, k, { g: b.g, u: b.u, act: b.act }, n, 'swiglu'),
      bindSwigluBackward(g, k, { g: b.g, u: b.u, dact: b.d, dg: b.dg, du: b.du }, n, 'swiglu backward'),
    ]);
    const sig = (z: number) => 1 / (1 + Math.exp(-z));
    expectRelClose(await read(g, b.act, n), Float64Array.from(gate, (z, i) => silu(z) * up[i]), 2e-6, 'act');
    expectRelClose(await read(g, b.dg, n), Float64Array.from(gate, (z, i) => dact[i] * up[i] * sig(z) * (1 + z * (1 - sig(z)))), 2e-6, 'dg');
    expectRelClose(await read(g, b.du, n), Float64Array.from(gate, (z, i) => dact[i] * silu(z)), 2e-6, 'du');
  });

  it('cross-entropy over two row blocks: per-row losses and (softmax − onehot)·scale in place', async () => {
    const { g, k } = await setup();
    const V = 301;
    const rows = 7;
    const z = f32(rows * V, 15, 3);
    const r = rng(16);
    const targets = Uint32Array.from({ length: rows }, () => Math.floor(r() * V));
    const scale = 1 / 11;
    // Rows 0..3 as one block, 4..6 as another; each block's logits are bound from their own buffer.
    const b = { z0: buffer(g, 'logits 0..3', z.subarray(0, 4 * V)), z1: buffer(g, 'logits 4..6', z.subarray(4 * V)), t: buffer(g, 'targets', targets), loss: buffer(g, 'loss', rows) };
    await run(g, [
      bindCrossEntropy(g, k, { z: b.z0, targets: b.t, loss: b.loss }, { rows: 4, row0: 0, scale }, 'block 0'),
      bindCrossEntropy(g, k, { z: b.z1, targets: b.t, loss: b.loss }, { rows: 3, row0: 4, scale }, 'block 1'),
    ]);
    const losses = await read(g, b.loss, rows);
    const grads = new Float32Array(rows * V);
    grads.set(await read(g, b.z0, 4 * V));
    grads.set(await read(g, b.z1, 3 * V), 4 * V);
    for (let i = 0; i < rows; i++) {
      const ref = crossEntropy(Float64Array.from(z.subarray(i * V, (i + 1) * V)), [targets[i]], V);
      expect(Math.abs(losses[i] - ref.loss), `row ${i} loss`).toBeLessThan(1e-5 * Math.max(1, ref.loss));
      expectRelClose(grads.subarray(i * V, (i + 1) * V), ref.dlogits.map((x) => x * scale), 2e-6, `row ${i} dlogits`);
    }
  });
});

describe('deterministic reductions', () => {
  it('column sums in one pass and in two (more rows than one block)', async () => {
    const { g, k } = await setup();
    for (const [rows, cols] of [[7, 70], [1100, 70]] as const) {
      const x = f32(rows * cols, 17 + rows);
      const want = new Float64Array(cols).fill(1);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] += x[r * cols + c];
      const target = buffer(g, 'target', new Float32Array(cols).fill(1));
      const scratch = columnSumScratch(rows, cols);
      await run(g, bindColumnSum(g, k, { x: buffer(g, 'x', x), target, ...(scratch > 0 && { scratch: buffer(g, 'scratch', scratch) }) }, rows, cols, 'column sum'));
      expectRelClose(await read(g, target, cols), want, 1e-6, `column sums of [${rows}, ${cols}]`);
    }
  });

  it('sum of squares and scaled sum in two stages', async () => {
    const { g, k } = await setup();
    const n = 5003;
    const x = f32(n, 19);
    const partial = buffer(g, 'partials', 8);
    const out = buffer(g, 'out', 4);
    const xb = buffer(g, 'x', x);
    await run(g, [
      bindSumBlocks(g, k, { x: xb, out: partial }, { count: n, perBlock: 1024, outIndex: 0, scale: 1, square: true }, 'squares'),
      bindSumBlocks(g, k, { x: partial, out }, { count: 5, perBlock: 5, outIndex: 1, scale: 1, square: false }, 'squares total'),
      bindSumBlocks(g, k, { x: xb, out: partial }, { count: n, perBlock: 1024, outIndex: 0, scale: 1, square: false }, 'sums'),
      bindSumBlocks(g, k, { x: partial, out }, { count: 5, perBlock: 5, outIndex: 2, scale: 0.25, square: false }, 'sums total'),
    ]);
    const got = await read(g, out, 4);
    const sq = x.reduce((s, v) => s + v * v, 0);
    const sum = x.reduce((s, v) => s + v, 0);
    expect(Math.abs(got[1] - sq) / sq).toBeLessThan(1e-6);
    expect(Math.abs(got[2] - 0.25 * sum)).toBeLessThan(1e-4);
  });

  it('embedding backward from a CSR of the rows each token id reads', async () => {
    const { g, k } = await setup();
    const V = 13;
    const H = 37;
    const rows = 300; // ~30 rows per id: the unrolled loop and its tail both run
    const r = rng(20);
    const ids = Array.from({ length: rows }, () => Math.floor(r() * (V - 3))); // ids 10..12 unused
    const dx = f32(rows * H, 21);
    const before = f32(V * H, 22);
    const want = Float64Array.from(before);
    ids.forEach((id, row) => {
      for (let c = 0; c < H; c++) want[id * H + c] += dx[row * H + c];
    });
    const csr = tokenRows(ids, V);
    const dE = buffer(g, 'dE', before);
    await run(g, [bindEmbeddingBackward(g, k, { starts: buffer(g, 'starts', csr.starts), rows: buffer(g, 'rows', csr.rows), dx: buffer(g, 'dx', dx), dE }, V, 'embedding backward')]);
    expectRelClose(await read(g, dE, V * H), want, 1e-6, 'dE');
  });
});

describe('AdamW', () => {
  const layout: ParamLayout = (() => {
    const slots = [
      { name: 'a', shape: [5, 7], offset: 0, size: 35, decay: true, group: 0, groupOffset: 0 },
      { name: 'gain', shape: [9], offset: 64, size: 9, decay: false, group: 0, groupOffset: 64 },
      { name: 'b', shape: [100], offset: 128, size: 100, decay: true, group: 0, groupOffset: 128 },
    ];
    return { slots, totalFloats: 256, alignFloats: 64, byName: new Map(slots.map((s) => [s.name, s])), groups: [{ start: 0, floats: 256 }] };
  })();
  const inside = (i: number) => layout.slots.some((s) => i >= s.offset && i < s.offset + s.size);
  const state = (seed: number) => {
    const mask = (a: Float32Array) => a.map((x, i) => (inside(i) ? x : 0));
    return { p: mask(f32(256, seed)), g: mask(f32(256, seed + 1, 0.5)), m: mask(f32(256, seed + 2, 0.1)), v: mask(f32(256, seed + 3, 0.1).map(Math.abs)) };
  };
  const step = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, maxNorm: 1 };

  it('one fused update equals the float64 AdamW with clipping; a non-finite norm leaves everything unchanged', async () => {
    const { g, k } = await setup();
    for (const n2 of [undefined, Infinity, NaN]) {
      const s = state(30);
      const table = Uint32Array.from(layout.slots.flatMap((x) => [x.offset, x.offset + x.size, x.decay ? 1 : 0]));
      const sq = s.g.reduce((a, x) => a + x * x, 0);
      const stats = buffer(g, 'stats', Float32Array.of(n2 ?? sq));
      const b = { p: buffer(g, 'p', s.p), g: buffer(g, 'g', s.g), m: buffer(g, 'm', s.m), v: buffer(g, 'v', s.v) };
      const params = uniformBuffer(g, 'adamw params', adamwParams(step, layout.totalFloats, layout.slots.length));
      await run(g, [bindAdamW(g, k, { ...b, table: buffer(g, 'table', table), stats, params }, layout.totalFloats, 'adamw')]);
      const want = { p: s.p.slice(), m: s.m.slice(), v: s.v.slice() };
      const res = adamwStep(layout, want.p, s.g, want.m, want.v, step, n2 ?? sq);
      expect(res.skipped).toBe(n2 !== undefined);
      if (n2 === undefined) expect(Math.sqrt(sq)).toBeGreaterThan(step.maxNorm); // clipping is exercised
      for (const key of ['p', 'm', 'v'] as const) {
        const got = await read(g, b[key], 256);
        expectRelClose(got, want[key], 1e-6, `${key} (norm² ${n2 ?? 'finite'})`);
        for (let i = 0; i < 256; i++) if (!inside(i)) expect(got[i], `${key}[${i}] between tensors`).toBe(0);
      }
    }
  });
});
