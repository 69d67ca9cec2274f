// The register-blocked few-row kernel (matmul-skinny.ts) against the float64 formula (fusedMatmulReference) at odd
// sizes: M not a multiple of the rows per thread, N not a multiple of the workgroup's columns, K not a multiple of
// the K tile, for every fusion the tree step uses, with one slice (whole sums in registers) and several (partial sums
// reduced in workgroup memory, in rounds of rows). Small register blocks: lavapipe compiles each kernel for seconds.
import { describe, expect, it } from 'vitest';
import { matmulKernel, type MatmulOptions } from '../backends/wgsl/matmul.ts';
import { fusedMatmulReference, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, writeTensor } from '../src/runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { bindArgmaxPartials, destroyDispatch, encodeDispatch } from '../src/runtime/model-kernels.ts';
import { randn } from '../src/tensor.ts';
import { checkFusedMatmul, EPS } from './helpers/fused-matmul.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { H200 } from './helpers/projections.ts';

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };
const HEAD: MatmulFusion = { rmsnorm: { eps: EPS } };

/** 3 row threads of 2 rows (M 5: the last row padding), 4 column threads of 3 columns, one slice, tiles of 2 vec4. */
const ONE_SLICE: MatmulOptions = { path: 'skinny', skinny: { rowsPerThread: 2, colsPerThread: 3, cols: 4, slices: 1, unroll: 2 } };
/**
 * 17 rows as 3 row threads of 6 (one padding row), 8 slices of one vec4 per tile: the partial sums of 6 rows take
 * 2 rounds (3 for swiglu's 4 weight rows per thread), and a slice finishes rows s, s + 8, … of a round.
 */
const SLICED: MatmulOptions = { path: 'skinny', skinny: { rowsPerThread: 6, colsPerThread: 2, cols: 8, slices: 8, unroll: 1 } };

describe('the skinny matmul equals the float64 formula at ragged rows, columns and K tiles', () => {
  it('one slice: q|k|v (norm, split), gate|up (norm, swiglu), residual accumulate, the LM head (norm), plain', async () => {
    for (const [N, K, fusion, seed] of [[3 * 23, 44, QKV, 100], [2 * 19, 36, GATE_UP, 200], [29, 52, RESIDUAL, 300], [37, 28, HEAD, 400], [31, 20, undefined, 500]] as const) {
      const plan = await checkFusedMatmul(5, N, K, fusion, seed, ONE_SLICE);
      expect(plan.path).toBe('skinny');
      expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(1);
    }
  });

  it('eight slices reduced in rounds of rows: every fusion at 17 rows', async () => {
    for (const [N, K, fusion, seed] of [[3 * 23, 44, QKV, 600], [2 * 19, 36, GATE_UP, 700], [29, 52, RESIDUAL, 800], [37, 28, HEAD, 900]] as const) {
      const plan = await checkFusedMatmul(17, N, K, fusion, seed, SLICED);
      expect(plan.path).toBe('skinny');
      expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(1);
    }
  });
});

/**
 * The register form (stageWeights false: weights global → registers, only x staged) and with x read from memory too
 * (stageX false: nothing staged, the norm's scales from a pass before the loop), at 5 rows in one row thread (each
 * weight vec4 feeds one thread), 17 and 65 in several with padding rows (17 as 2 of 9 or 3 of 6, 65 as 6 of 11 or 4 of
 * 17: the design's block), N leaving a partial workgroup and K a partial step. Each runs q|k|v (norm, split), gate|up
 * (norm, swiglu) and the residual accumulate, at 5 rows also the LM head's norm and the plain product; `argmax` marks
 * the three that also run the argmax epilogue. Blocks of ≤ 34 sums at one or two loads: lavapipe compiles each kernel
 * in a second or two (more when the machine is busy).
 */
const REGISTERS: readonly (readonly [number, MatmulOptions, boolean])[] = [
  [5, { path: 'skinny', skinny: { rowsPerThread: 5, colsPerThread: 1, cols: 4, slices: 2, unroll: 2, stageWeights: false } }, false],
  [17, { path: 'skinny', skinny: { rowsPerThread: 9, colsPerThread: 1, cols: 4, slices: 4, unroll: 1, stageWeights: false } }, true],
  [65, { path: 'skinny', skinny: { rowsPerThread: 11, colsPerThread: 1, cols: 8, slices: 4, unroll: 1, stageWeights: false } }, false],
  [5, { path: 'skinny', skinny: { rowsPerThread: 5, colsPerThread: 2, cols: 2, slices: 4, unroll: 1, stageWeights: false, stageX: false } }, true],
  [17, { path: 'skinny', skinny: { rowsPerThread: 6, colsPerThread: 1, cols: 4, slices: 4, unroll: 2, stageWeights: false, stageX: false } }, false],
  [65, { path: 'skinny', skinny: { rowsPerThread: 17, colsPerThread: 1, cols: 4, slices: 2, unroll: 1, stageWeights: false, stageX: false } }, true],
];
const form = (o: MatmulOptions) => (o.skinny?.stageX === false ? 'x from memory' : 'x staged');

describe('the skinny matmul with its weights in registers equals the float64 formula at ragged rows, columns and K tiles', () => {
  for (const [M, opts] of REGISTERS) {
    const more = M === 5 ? ', the LM head (norm), plain' : '';
    it(`${M} rows, ${form(opts)}: q|k|v (norm, split), gate|up (norm, swiglu), residual accumulate${more}`, async () => {
      const cases: (readonly [number, number, MatmulFusion | undefined, number])[] = [[3 * 23, 44, QKV, 2000], [2 * 19, 36, GATE_UP, 2100], [29, 52, RESIDUAL, 2200]];
      if (M === 5) cases.push([37, 28, HEAD, 2300], [31, 20, undefined, 2400]);
      for (const [N, K, fusion, seed] of cases) {
        const plan = await checkFusedMatmul(M, N, K, fusion, seed + M + (opts.skinny?.stageX === false ? 1 : 0), opts);
        expect(plan.path).toBe('skinny');
        expect(plan.kernel).toContain('weights in registers');
        expect(plan.kernel.includes('x from memory')).toBe(opts.skinny?.stageX === false);
        expect(plan.workgroups[0], plan.kernel).toBeGreaterThan(1);
      }
    });
  }
});

/**
 * Runs the kernel with `fusion` into an output of `cols` columns (NaN before) and returns it (with 'argmax' and
 * `pickTokens`: each row's token, picked from the partials) with the float64 logits.
 */
async function runInto(M: number, N: number, K: number, fusion: MatmulFusion, cols: (workgroups: number) => number, seed: number, opts: MatmulOptions, o: { pickTokens?: boolean; w?: Float64Array } = {}) {
  const g = await gpu();
  const plan = await planMatmul(g, { M, N, K, transposeB: true, fusion }, { label: 'skinny test', ...opts });
  expect(plan.path).toBe('skinny');
  const a = randn([M, K], seed, 2);
  const w = o.w ? { shape: [N, K], data: o.w } : randn([N, K], seed + 1);
  const gain = randn([K], seed + 2);
  const width = cols(plan.workgroups[0]);
  const out = allocTensor(g, 'out', [M, width]);
  writeTensor(g, out, new Float32Array(M * width).fill(Number.NaN));
  const made = [uploadTensor(g, 'x', a), uploadTensor(g, 'w', w), uploadTensor(g, 'gain', gain), out];
  const tokens = allocTensor(g, 'tokens', [M]);
  made.push(tokens);
  const pick = fusion.epilogue === 'argmax' && (o.pickTokens ?? true) ? await bindArgmaxPartials(g, { partials: out.buffer, tokens: tokens.buffer }, M, width / 2) : undefined;
  const encoder = g.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  encodeMatmul(pass, plan, bindMatmul(g, plan, made[0], made[1], out, fusion.rmsnorm ? { gain: made[2] } : {}));
  if (pick) encodeDispatch(pass, pick);
  pass.end();
  g.device.queue.submit([encoder.finish()]);
  const got = await downloadTensor(g, pick ? tokens : out);
  if (pick) destroyDispatch(pick);
  for (const t of made) releaseTensor(g, t);
  plan.params.destroy();
  const logits = fusedMatmulReference(a.data, w.data, { M, N, K }, { ...(fusion.rmsnorm && { rmsnorm: fusion.rmsnorm }) }, { gain: gain.data })[0];
  return { got, logits, plan };
}

describe('the skinny matmul\'s argmax epilogue and column window', () => {
  /** The argmax epilogue at M rows: each row's float64 argmax, and (every weight row alike, all columns tie) the first column. */
  async function checkArgmax(M: number, opts: Parameters<typeof runInto>[6], seed: number, kernel?: string): Promise<void> {
    const N = 150;
    const { got, logits, plan } = await runInto(M, N, 28, { ...HEAD, epilogue: 'argmax' }, (wg) => 2 * wg, seed, opts);
    if (kernel) expect(plan.kernel).toContain(kernel);
    const tokens = new Uint32Array(got.buffer, got.byteOffset, M);
    for (let m = 0; m < M; m++) {
      const row = logits.subarray(m * N, (m + 1) * N);
      const best = Math.max(...row);
      expect(row[tokens[m]], `${plan.kernel} row ${m}: token ${tokens[m]} has ${row[tokens[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
    }
    const one = randn([28], seed + 50).data;
    const same = new Float64Array(N * 28);
    for (let n = 0; n < N; n++) same.set(one, n * 28);
    const tie = await runInto(M, N, 28, { ...HEAD, epilogue: 'argmax' }, (wg) => 2 * wg, seed, opts, { w: same });
    expect(Array.from(new Uint32Array(tie.got.buffer, tie.got.byteOffset, M)), tie.plan.kernel).toEqual(new Array(M).fill(0));
  }

  it('argmax: each row\'s float64 argmax through the partials\' pick, one slice and eight', async () => {
    for (const [M, opts, seed] of [[5, ONE_SLICE, 1000], [17, SLICED, 1100]] as const) await checkArgmax(M, opts, seed);
  });

  it("argmax with the weights in registers (x staged at 17 rows, from memory at 5 and 65): each row's float64 argmax, and ties to the first column", async () => {
    for (const [i, [M, opts, argmax]] of REGISTERS.entries()) if (argmax) await checkArgmax(M, opts, 2500 + 10 * i, 'weights in registers');
  });

  it("the H200's default pick for a greedy tree step's LM head (17 and 65 rows, 32000 × 768) picks each row's float64 argmax on a stand-in", async () => {
    const g = await gpu();
    const target = { ...H200, limits: { ...H200.limits, maxComputeWorkgroupStorageSize: Math.min(H200.limits.maxComputeWorkgroupStorageSize, g.limits.maxComputeWorkgroupStorageSize) } };
    const fusion: MatmulFusion = { ...HEAD, epilogue: 'argmax' };
    // The H200's best: at 17 rows the register form, 17×2 per thread × 64 column threads × 2 slices (250 workgroups;
    // bench/results/h200-small-m-skinny-reg.json), at 65 the staged 4×8 × 8 × 1 slice (500; h200-small-m-skinny.json);
    // 4 vec4 per slice per tile.
    const picks = [
      [17, { rowsPerThread: 17, colsPerThread: 2, cols: 64, slices: 2, unroll: 4, stageWeights: false }, 250, 1400],
      [65, { rowsPerThread: 4, colsPerThread: 8, cols: 8, slices: 1, unroll: 4, stageWeights: true }, 500, 1500],
    ] as const;
    for (const [M, knobs, workgroups, seed] of picks) {
      const head = { M, N: 32000, K: 768, transposeB: true, fusion };
      const h200 = matmulKernel(H200, head);
      expect(h200.path, h200.kernel).toBe('skinny');
      expect(h200.tuning.skinny, h200.kernel).toEqual(knobs);
      expect(h200.workgroups).toEqual([workgroups, 1, 1]);
      const pick = matmulKernel(target, head);
      const t = pick.tuning.skinny!;
      // Two full workgroups and a partial one; K over two tiles and a partial one.
      const [N, K] = [2 * t.cols! * t.colsPerThread! + 37, 4 * (2 * t.slices! * t.unroll! + 3)];
      const { got, logits, plan } = await runInto(M, N, K, fusion, (wg) => 2 * wg, seed, pick.tuning);
      expect(plan.workgroups[0], plan.kernel).toBe(3);
      const tokens = new Uint32Array(got.buffer, got.byteOffset, M);
      for (let m = 0; m < M; m++) {
        const row = logits.subarray(m * N, (m + 1) * N);
        const best = Math.max(...row);
        expect(row[tokens[m]], `${plan.kernel} row ${m}: token ${tokens[m]} has ${row[tokens[m]]}, the largest is ${best}`).toBeGreaterThan(best - 1e-4 * Math.abs(best));
      }
    }
  });

  it('window: a part of a wider output, stored at its columns (the rest untouched), and argmax naming columns from the part\'s first', async () => {
    const [M, N, K, stride, offset, first] = [5, 37, 28, 50, 9, 1000];
    const { got, logits } = await runInto(M, N, K, { ...HEAD, window: { stride, offset, first } }, () => stride, 1200, ONE_SLICE);
    for (let m = 0; m < M; m++) {
      const row = Array.from(got.subarray(m * stride, (m + 1) * stride));
      expect(row.slice(0, offset).every(Number.isNaN) && row.slice(offset + N).every(Number.isNaN), `row ${m} outside the window`).toBe(true);
      expectRelClose(Float32Array.from(row.slice(offset, offset + N)), logits.subarray(m * N, (m + 1) * N), 2e-5, `row ${m} in the window`);
    }
    // ONE_SLICE's workgroups take 12 columns: 4 of them, their pairs after `offset` columns left as they were.
    const w = await runInto(M, N, K, { ...HEAD, epilogue: 'argmax', window: { stride: offset + 8, offset, first } }, () => offset + 8, 1300, ONE_SLICE, { pickTokens: false });
    expect(w.plan.workgroups[0]).toBe(4);
    for (let m = 0; m < M; m++) {
      const row = Array.from(w.got.subarray(m * (offset + 8), (m + 1) * (offset + 8)));
      expect(row.slice(0, offset).every(Number.isNaN), `row ${m} before the window`).toBe(true);
      const logits = w.logits.subarray(m * N, (m + 1) * N);
      for (let g = 0; g < 4; g++) {
        const part = Array.from(logits.subarray(12 * g, Math.min(N, 12 * g + 12)));
        const best = part.indexOf(Math.max(...part));
        expect(row[offset + 2 * g + 1], `row ${m} workgroup ${g}'s column`).toBe(first + 12 * g + best);
        expect(Math.abs(row[offset + 2 * g] - part[best]), `row ${m} workgroup ${g}'s value`).toBeLessThan(1e-4 * (1 + Math.abs(part[best])));
      }
    }
  });
});
