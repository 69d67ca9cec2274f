// Projections of the models the small-M and rows choosers serve (the shapes bench/small-m.ts times, LLaMA-7B's,
// the Medusa heads'), an H200's limits to choose for, and small stand-ins that run a pick on lavapipe.
import { matmulKernel, type MatmulKernel, type MatmulOptions, type MatmulProblem } from '../../backends/wgsl/matmul.ts';
import type { MatmulFusion } from '../../backends/wgsl/matmul-fusion.ts';
import type { KernelTarget } from '../../backends/wgsl/kernel-source.ts';
import { expect } from 'vitest';
import { checkFusedMatmul, EPS } from './fused-matmul.ts';
import { gpu } from './gpu.ts';

/** An H200 as Dawn reports it on Vulkan (the limits that matter to the choosers). */
export const H200: KernelTarget = {
  adapterName: 'nvidia-h200 (limits only)',
  limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupsPerDimension: 65535 },
};
/** WebGPU's default limits: a browser's device unless it asks for more. */
export const WEBGPU_DEFAULT: KernelTarget = {
  adapterName: 'WebGPU defaults',
  limits: { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupsPerDimension: 65535 },
};

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };
const HEAD: MatmulFusion = { rmsnorm: { eps: EPS } };

export interface Projection {
  readonly name: string;
  readonly N: number;
  readonly K: number;
  readonly fusion?: MatmulFusion;
}

/** A decoder layer's fused matmuls and the LM head (gpu-step-plan.ts), heads × head size = hidden. */
export function decoder(hidden: number, intermediate: number, vocab: number): Projection[] {
  return [
    { name: 'q|k|v', N: 3 * hidden, K: hidden, fusion: QKV },
    { name: 'o', N: hidden, K: hidden, fusion: RESIDUAL },
    { name: 'gate|up', N: 2 * intermediate, K: hidden, fusion: GATE_UP },
    { name: 'down', N: hidden, K: intermediate, fusion: RESIDUAL },
    { name: 'lm head', N: vocab, K: hidden, fusion: HEAD },
  ];
}

/** Five Medusa heads stacked (gpu-heads.ts): their projections at `batch` rows, their LM heads at 5 × batch. */
function medusa(hidden: number, vocab: number): Projection[] {
  return [
    { name: 'medusa proj', N: 5 * hidden, K: hidden },
    { name: 'medusa lm heads', N: 5 * vocab, K: hidden },
  ];
}

export const SHAPES: readonly (readonly [string, Projection[]])[] = [
  ['bench model (hidden 768)', decoder(768, 2048, 32000)],
  ['LLaMA-7B', decoder(4096, 11008, 32000)],
  ['Medusa at hidden 768', medusa(768, 32000)],
  ['Medusa at 7B', medusa(4096, 32000)],
];
/** Decode batches and tree sizes up to the blocked kernels' 128 rows. */
export const ROWS = [1, 3, 5, 8, 9, 17, 33, 40, 65, 128];

export function problem(p: Projection, M: number): MatmulProblem {
  return { M, N: p.N, K: p.K, transposeB: true, ...(p.fusion && { fusion: p.fusion }) };
}

/**
 * Small stand-ins for a projection: N neither a multiple of 4 columns per thread nor of a workgroup's columns, K a
 * multiple of 4 (the rows kernel and vec4 loads need it) and longer than two of the pick's loop steps plus a tail.
 */
function standIn(p: Projection, k: MatmulKernel): { N: number; K: number } {
  const t = k.tuning;
  const step =
    t.path === 'rows' ? (t.rows?.slices ?? 1) * (t.rows?.unroll ?? 1)
    : t.path === 'skinny' ? (t.skinny?.slices ?? 1) * (t.skinny?.unroll ?? 1)
    : (t.smallMLanes ?? 1) * (t.smallMUnroll ?? 1);
  const f = p.fusion;
  return { N: typeof f?.epilogue === 'object' ? 3 * 23 : f?.epilogue === 'swiglu' ? 2 * 37 : 97, K: 4 * (2 * step + 3) };
}

/**
 * Runs `pick` (a kernel chosen for projection p at M rows) at M rows on the test's device with a stand-in's N and K
 * and checks it against the float64 formula; returns the plan.
 */
export async function checkPickAtStandIn(p: Projection, M: number, pick: MatmulKernel, seed: number) {
  const { N, K } = standIn(p, pick);
  return checkFusedMatmul(M, N, K, p.fusion, seed, pick.tuning);
}

/**
 * The H200's default pick for projection p at M rows (its workgroup memory capped at the test device's), run at a
 * stand-in's N and K against the float64 formula, on the path it was picked for (`opts`: what the pick was asked for,
 * e.g. a path).
 */
export async function checkH200Pick(p: Projection, M: number, seed: number, opts: MatmulOptions = {}): Promise<void> {
  const g = await gpu();
  const target = { ...H200, limits: { ...H200.limits, maxComputeWorkgroupStorageSize: Math.min(H200.limits.maxComputeWorkgroupStorageSize, g.limits.maxComputeWorkgroupStorageSize) } };
  const pick = matmulKernel(target, problem(p, M), opts);
  const plan = await checkPickAtStandIn(p, M, pick, seed);
  expect(plan.path, pick.kernel).toBe(pick.path);
}
