// A gradient plan: the kernels that compute d<name> for every input and parameter of a variant from its inputs
// and the output's cotangent, the buffers they bind (env.ts names them) and which stages of the gradient program
// each launch runs. Data only; src/runtime/grad-runner.ts runs it.
import type { ChunkSchedule } from '../chunked/analysis.ts';
import type { Sizes } from '../common.ts';
import type { Kernel, PlanBuffer } from '../plan.ts';

export interface GradKernel extends Kernel {
  /**
   * The launch's dims: t = T rounded up to a multiple of `pad` (a reverse-time stage with group masks runs over
   * a padded sequence; 1 elsewhere), pad = T, the length of every token tensor. `workgroups` takes that t.
   */
  readonly pad: number;
  /**
   * The gradient program's stages whose outputs the launch writes, in whole or in part (several in a fused kernel;
   * a map stage folded into a term kernel's epilogue is named there; one computed where it is read, nowhere).
   */
  readonly stages: readonly string[];
}

export interface GradPlan {
  readonly variant: string;
  readonly fused: boolean;
  readonly kernels: readonly GradKernel[];
  /** in:NAME and in:do (inputs), param:NAME, grad:dNAME (outputs), env:NAME (intermediates). */
  readonly buffers: readonly PlanBuffer[];
  /** Each gradient's tensor name (dq, dw, …) and buffer. */
  readonly gradients: readonly { readonly name: string; readonly buffer: string }[];
  readonly sizes: Sizes;
  readonly schedule: ChunkSchedule;
  /** Parameter gradients are added into their buffers rather than written (a trainer accumulates them). */
  readonly accumulate: boolean;
  /** The forward's normalised items whose n and z the plan reads from buffers the forward stored (not recomputed). */
  readonly stored: readonly number[];
}

/** dims.t of a launch of `k` for sequences of t tokens. */
export const paddedLength = (k: GradKernel, t: number) => Math.ceil(t / k.pad) * k.pad;
