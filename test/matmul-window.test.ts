// The LM head over a weight stored in parts of whole rows (lm-head-parts.ts, the matmul's column window): on each
// matmul path the parts' products together equal the float64 A·Wᵀ of the whole weight, every column written by
// its part; the argmax-fused head over parts picks each row's float64 argmax.
import { describe, expect, it } from 'vitest';
import type { MatmulPath } from '../backends/wgsl/matmul.ts';
import { fusedMatmulReference, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { bindHead, encodeHead, planHead } from '../src/model/lm-head-parts.ts';
import { createExactTensor, uploadExactTensor } from '../src/model/exact-tensor.ts';
import { uploadRowParts } from '../src/model/weight-parts.ts';
import { downloadTensor } from '../src/runtime/gpu-tensor.ts';
import { bindArgmaxPartials, destroyDispatch, encodeDispatch } from '../src/runtime/model-kernels.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const K = 32;
const NORM: MatmulFusion = { rmsnorm: { eps: 1e-5 } };

async function run(M: number, N: number, rowsPerPart: number, fusion: MatmulFusion | undefined, seed: number, hardware = false, path?: MatmulPath) {
  const sw = await gpu();
  // `hardware`: the paths a hardware adapter's chooser takes (matmulPathFor), on this adapter's device.
  const g = hardware ? { ...sw, isSoftware: false } : sw;
  const a = randn([M, K], seed, 2);
  const w = randn([N, K], seed + 1);
  const gain = randn([K], seed + 2);
  const head = uploadRowParts(g, 'head', w, rowsPerPart * K * 4);
  const plans = await planHead(g, head, M, K, fusion, 'windowed head', path ? { path } : {});
  const out = createExactTensor(g, 'out', [M, plans.columns]);
  g.device.queue.writeBuffer(out.buffer, 0, new Float32Array(M * plans.columns).fill(Number.NaN));
  const x = uploadExactTensor(g, 'x', a);
  const gt = uploadExactTensor(g, 'gain', gain);
  const tokens = createExactTensor(g, 'tokens', [M]);
  const pick = fusion?.epilogue === 'argmax' ? await bindArgmaxPartials(g, { partials: out.buffer, tokens: tokens.buffer }, M, plans.columns / 2) : undefined;
  const encoder = g.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  encodeHead(pass, plans, bindHead(g, plans, head, x, out, fusion?.rmsnorm ? gt : undefined));
  if (pick) encodeDispatch(pass, pick);
  pass.end();
  g.device.queue.submit([encoder.finish()]);
  const want = fusedMatmulReference(a.data, w.data, { M, N, K }, fusion, { gain: gain.data })[0];
  const got = await downloadTensor(g, pick ? tokens : out);
  for (const t of [out, x, gt, tokens, ...head.parts.map((p) => p.tensor)]) t.buffer.destroy();
  for (const p of plans.plans) p.params.destroy();
  if (pick) destroyDispatch(pick);
  return { head, plans, got, want };
}

describe('a head in parts of whole rows equals the float64 product of the whole weight', () => {
  it.each([
    [3, 37, 13, 'small-m'],
    [3, 37, 13, 'small-m', NORM],
    [130, 37, 16, 'tiled'],
    [9, 2100, 1100, 'rows', NORM],
  ] as const)('M=%i N=%i in parts of ≤ %i rows (%s path) %o', async (M, N, per, path, fusion?: MatmulFusion) => {
    const { head, plans, got, want } = await run(M, N, per, fusion, M + N, false, path);
    expect(head.parts.length).toBeGreaterThanOrEqual(2);
    for (const p of plans.plans) expect(p.path).toBe(path);
    expectRelClose(got, want, 2e-5, `M=${M} N=${N}, ${head.parts.length} parts`);
  });

  it('the argmax-fused head over 3 parts picks every row\'s float64 argmax', async () => {
    const { head, got, want } = await run(17, 300, 100, { ...NORM, epilogue: 'argmax' }, 77);
    expect(head.parts.length).toBe(3);
    expect(Array.from(new Uint32Array(got.buffer, got.byteOffset, got.length))).toEqual(Array.from(want));
  });

  it("the argmax-fused head over 3 parts on a hardware adapter's path (the lanes kernel at 1 and 5 rows where subgroups are fixed, else small-M) picks every row's float64 argmax", async () => {
    const sg = (await gpu()).subgroupSize;
    for (const M of [1, 5]) {
      const { head, plans, got, want } = await run(M, 300, 100, { ...NORM, epilogue: 'argmax' }, 78 + M, true);
      expect(head.parts.length).toBe(3);
      for (const p of plans.plans) expect(p.path).toBe(sg !== undefined && sg % 8 === 0 ? 'lanes' : 'small-m');
      expect(Array.from(new Uint32Array(got.buffer, got.byteOffset, got.length)), `M ${M}`).toEqual(Array.from(want));
    }
  });
});
