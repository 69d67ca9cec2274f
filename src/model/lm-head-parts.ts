// The LM head over a weight stored in parts of whole rows (weight-parts.ts): one matmul per part, recorded one
// after another, each writing its own column range of the logits, or — with the argmax epilogue — its
// workgroups' (value, column) pairs at its own offset in one row of pairs, so the pick that follows reduces over
// every part's pairs as over one matmul's (columns ascend part after part, so ties still go to the lowest).
// A weight in one part gets exactly the unsplit matmul.
import { matmulKernel, type MatmulOptions } from '../../backends/wgsl/matmul.ts';
import type { MatmulFusion } from '../../backends/wgsl/matmul-fusion.ts';
import type { Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, matmulOptions, planMatmul, type AcceptedRowTrees, type MatmulPlan } from '../runtime/matmul.ts';
import type { RowParts } from './weight-parts.ts';

export interface HeadPlans {
  readonly plans: readonly MatmulPlan[];
  /** Columns of the output: the vocabulary, or 2 × every part's workgroups for the argmax epilogue. */
  readonly columns: number;
}

/**
 * Plans y[M, K]·headᵀ part by part with `fusion` (rmsnorm prologue; 'store' or 'argmax' epilogue). `opts` reach every
 * part's matmul (a test names the path; by default the adapter's chooser picks it per part).
 */
export async function planHead(gpu: Gpu, head: RowParts, M: number, K: number, fusion: MatmulFusion | undefined, label: string, opts: Omit<MatmulOptions, 'label'> = {}): Promise<HeadPlans> {
  const argmax = fusion?.epilogue === 'argmax';
  const problem = (N: number, f: MatmulFusion | undefined) => ({ M, N, K, transposeB: true, ...(f && { fusion: f }) });
  if (head.parts.length === 1) {
    const plan = await planMatmul(gpu, problem(head.shape[0], fusion), { ...opts, label });
    return { plans: [plan], columns: argmax ? 2 * plan.workgroups[0] : head.shape[0] };
  }
  // The pairs' layout needs every part's workgroup count first: the kernel choice, as data, without compiling.
  const groups = head.parts.map((p) => (argmax ? matmulKernel(gpu, problem(p.rows, fusion), matmulOptions(gpu, problem(p.rows, fusion), { ...opts, label })).workgroups[0] : 0));
  const columns = argmax ? 2 * groups.reduce((a, b) => a + b, 0) : head.shape[0];
  const plans: MatmulPlan[] = [];
  let pairs = 0;
  try {
    for (const [i, p] of head.parts.entries()) {
      const window = { stride: columns, offset: argmax ? pairs : p.first, first: p.first };
      pairs += 2 * groups[i];
      plans.push(await planMatmul(gpu, problem(p.rows, { ...fusion, window }), { ...opts, label: `${label}, rows [${p.first}, ${p.first + p.rows})` }));
    }
  } catch (e) {
    for (const p of plans) p.params.destroy();
    throw e;
  }
  return { plans, columns };
}

/** Each part's bind group: a [M, K] in, out [M, columns]; `gain` for the rmsnorm prologue, `trees` for the accepted-row one. */
export function bindHead(gpu: Gpu, h: HeadPlans, head: RowParts, a: GpuTensor, out: GpuTensor, gain?: GpuTensor, trees?: AcceptedRowTrees): GPUBindGroup[] {
  return h.plans.map((plan, i) => bindMatmul(gpu, plan, a, head.parts[i].tensor, out, { ...(gain && { gain }), ...(trees && { trees }) }));
}

export function encodeHead(pass: GPUComputePassEncoder, h: HeadPlans, groups: readonly GPUBindGroup[]): void {
  h.plans.forEach((plan, i) => encodeMatmul(pass, plan, groups[i]));
}
