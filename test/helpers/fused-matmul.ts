// The fused matmul's check: runs A·Wᵀ with a fusion on the GPU and compares every output with the float64
// formula (matmul-fusion.ts's fusedMatmulReference), naming the seed, shape, options and kernel on failure.
import type { MatmulOptions, MatmulPath } from '../../backends/wgsl/matmul.ts';
import { fusedMatmulReference, outputColumns, outputCount, type MatmulFusion } from '../../backends/wgsl/matmul-fusion.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, writeTensor, type GpuTensor } from '../../src/runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../../src/runtime/matmul.ts';
import { randn } from '../../src/tensor.ts';
import { expectRelClose, gpu } from './gpu.ts';

export const EPS = 1e-5;

/** Runs A·Wᵀ with `fusion` on the GPU and compares every output with the float64 formula. */
export async function checkFusedMatmul(M: number, N: number, K: number, fusion: MatmulFusion | undefined, seed: number, opts: MatmulOptions & { path?: MatmulPath } = {}) {
  const g = await gpu();
  const what = `seed ${seed}, M=${M} N=${N} K=${K}, ${JSON.stringify(fusion)}, ${JSON.stringify(opts)}`;
  const a = randn([M, K], seed, 2);
  const w = randn([N, K], seed + 1);
  // 'heads residual' writes the heads' blocks of rows [N/K·M, K], its bias after the gain.
  const heads = fusion?.epilogue === 'heads residual';
  const gain = randn([heads ? K + N : K], seed + 2);
  const outShape = heads ? [(N / K) * M, K] : [M, outputColumns(fusion, N)];
  const c0 = randn([M, outputColumns(fusion, N)], seed + 3);
  const plan = await planMatmul(g, { M, N, K, transposeB: true, ...(fusion && { fusion }) }, { label: 'fused test', ...opts });
  const made: GpuTensor[] = [];
  const up = (name: string, t: typeof a) => {
    const x = uploadTensor(g, name, t);
    made.push(x);
    return x;
  };
  const outs = Array.from({ length: outputCount(fusion) }, (_, i) => {
    const t = allocTensor(g, `C${i}`, outShape);
    made.push(t);
    return t;
  });
  // C0 holds the residual an 'accumulate' adds to; the other outputs start as garbage that must be overwritten.
  if (!heads) writeTensor(g, outs[0], Float32Array.from(c0.data));
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

