// The gradient kernels' default schedule on an adapter (chunk × value columns × threads), and on a hardware GPU
// the grid-fill rule that narrows the value columns when a batch's chunk kernels would leave compute units idle.
//
// Why a rule at all: a backward chunk kernel (backends/wgsl/chunked/sections.ts) puts one workgroup on each
// (batch, head, column tile) and walks the chunks of the sequence in turn inside it, so its grid does not grow with
// t. At b 4, h 16, d 64 and 32 columns that is 128 workgroups; the H100/H200 have 132 SMs. A grid far below one
// workgroup per SM leaves SMs idle for the whole kernel, and halving the columns doubles the grid (each tile redoes
// its chunk's C×C scores, which is the price).
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import type { GradPlan } from '../../backends/wgsl/grad-lower.ts';
import type { Gpu } from './device.ts';

/**
 * The compute units a hardware adapter is assumed to have: WebGPU does not report them, and the figures this rule
 * was set from are an H200's (132 SMs, as the H100's).
 */
export const ASSUMED_COMPUTE_UNITS = 132;

/** The narrowest column tile the fill rule goes to: below it the redone score tiles cost more than the SMs gain. */
const MIN_FILL_COLS = 8;

/**
 * The gradient kernels' schedule on an adapter before the grid-fill rule.
 *
 * Hardware: chunk 16, 32 value columns, 512 threads. Measured on the H200 (elu_dwconv, b 4, h 16, t 4096, d 64,
 * float32, `bench/kernels.ts --backward --grad-schedules`): forward+backward (fused, normalisers kept) took 10.2 ms
 * there against 14.5 ms at the earlier default chunk 32, 32 columns, 256 threads (the forward alone 8.77 ms). A
 * smaller chunk halves each chunk's C×C score work and the workgroup memory a fused kernel stages; 512 threads
 * keep an SM that holds one such workgroup busier. Note the grids: at chunk 32 the heavy reverse kernel (dv, dψ
 * and the convolution's dv) did not fit 32 columns in 48 KB and ran 16 (fitSchedule), 256 workgroups; at chunk 16
 * it keeps 32, 128 workgroups — so the faster schedule has fewer, wider workgroups, which is why fillGrid below
 * narrows only a grid well under one workgroup per SM.
 *
 * Software (lavapipe, llvmpipe): chunk 8, every column in one workgroup, 64 threads, unchanged — a CPU core gains
 * nothing from more invocations, and lavapipe's shader compiler takes minutes over a variant's backward kernels at
 * chunk 16 or more (retnet's, cold, 6 s at chunk 4, 17 s at 8, 40 s at 16); CI's timings depend on it.
 */
export function gradSchedule(gpu: Pick<Gpu, 'isSoftware'> & { readonly limits?: Pick<GPUSupportedLimits, 'maxComputeInvocationsPerWorkgroup'> }): ChunkSchedule {
  if (gpu.isSoftware) return { chunk: 8, cols: 64, threads: 64 };
  const most = gpu.limits?.maxComputeInvocationsPerWorkgroup ?? 512;
  return { chunk: 16, cols: 32, threads: Math.min(512, most) };
}

/** The most workgroups one chunk launch of the plan puts on the GPU for a batch of b (the widest grid it has). */
export function widestChunkGrid(plan: GradPlan, b: number): number {
  const grids = plan.kernels.filter((k) => k.launch?.kind === 'fixed').map((k) => {
    const [x, y, z] = k.workgroups(b, plan.schedule.chunk);
    return x * y * z;
  });
  return Math.max(0, ...grids);
}

/**
 * The grid-fill rule: lower at `base`; while the widest chunk launch for a batch of b has fewer workgroups than half
 * the compute units, halve the value columns (not below MIN_FILL_COLS), keeping a narrower plan only when its grid
 * grew. Half, not the 2× one might expect: at b 4, h 16, d 64 the 128 workgroups of 32 columns (under one per SM)
 * measured faster than anything narrower swept so far, so the rule acts only where most SMs would idle (b 1, or
 * few heads); the threshold is to be refined by the sweep DEVELOPERS.md gives.
 */
export function fillGrid(lower: (s: ChunkSchedule) => GradPlan, base: ChunkSchedule, b: number, units = ASSUMED_COMPUTE_UNITS): GradPlan {
  let plan = lower(base);
  for (let cols = base.cols >> 1; cols >= MIN_FILL_COLS && widestChunkGrid(plan, b) < units / 2; cols >>= 1) {
    const narrower = lower({ ...base, cols });
    if (widestChunkGrid(narrower, b) <= widestChunkGrid(plan, b)) break;
    plan = narrower;
  }
  return plan;
}
