// What the training loop (train-loop.ts) asks of a trainer, on the GPU (gpu-trainer.ts) or in float64 on the
// CPU (cpu-trainer.ts): a step of AdamW over micro-batches, the loss of batches, and the state a checkpoint saves.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import type { ParamLayout } from './param-layout.ts';

/** b token sequences of t: inputs[s·t + i] predicts targets[s·t + i]. */
export interface TokenBatch {
  readonly b: number;
  readonly t: number;
  readonly inputs: ArrayLike<number>;
  readonly targets: ArrayLike<number>;
}

export interface StepResult {
  /** Mean cross-entropy over the step's micro-batches, nats per token. */
  readonly loss: number;
  /** The global gradient norm before clipping. */
  readonly gradNorm: number;
  /** The norm was not finite and AdamW left every parameter as it was. */
  readonly skipped: boolean;
}

/** AdamW's first and second moments, each tensor by its checkpoint name. */
export interface OptimizerMoments {
  readonly m: ReadonlyMap<string, { readonly data: ArrayLike<number> }>;
  readonly v: ReadonlyMap<string, { readonly data: ArrayLike<number> }>;
}

/** Parameters and AdamW moments (flat, the layout's) after `step` updates. */
export interface TrainerSnapshot {
  readonly params: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly step: number;
}

export interface Trainer {
  readonly layout: ParamLayout;
  /** Updates taken so far. */
  readonly step: number;
  /** One AdamW step (adam.step = step + 1) on the mean loss of the micro-batches (equal shapes). */
  trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult>;
  /** Mean cross-entropy of batches, forward only. */
  evaluate(batches: readonly TokenBatch[]): Promise<number>;
  snapshot(): Promise<TrainerSnapshot>;
  /** AdamW's moments by tensor name and the steps taken, of a saved run (the parameters come with its weights). */
  setOptimizerState(moments: OptimizerMoments, steps: number): void;
  destroy(): Promise<void>;
}
