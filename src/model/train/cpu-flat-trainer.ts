// What the float64 CPU trainers (cpu-trainer.ts: the model; medusa-cpu-trainer.ts: Medusa heads) share: float32
// parameters and AdamW moments over a flat layout, as a checkpoint stores them, so a resumed run continues with the
// numbers it had; a step averages the micro-batches' gradients, flattened by the layout, and takes adamw.ts's step.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import { adamwStep } from './adamw.ts';
import { packFlat, type ParamLayout } from './param-layout.ts';
import type { OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

/** One micro-batch's mean loss and its gradient, tensors by checkpoint name. */
export type MicroGrad = (batch: TokenBatch) => { readonly loss: number; readonly grads: ReadonlyMap<string, { readonly data: ArrayLike<number> }> };

export abstract class CpuFlatTrainer implements Trainer {
  private m: Float32Array;
  private v: Float32Array;
  private steps = 0;

  constructor(readonly layout: ParamLayout, protected readonly p: Float32Array<ArrayBuffer>) {
    this.m = new Float32Array(layout.totalFloats);
    this.v = new Float32Array(layout.totalFloats);
  }

  get step(): number {
    return this.steps;
  }

  /** The loss and gradient of a micro-batch at the current parameters (asked once a step, after its checks). */
  protected abstract microGrad(): MicroGrad;

  abstract evaluate(batches: readonly TokenBatch[]): Promise<number>;

  async trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    if (adam.step !== this.steps + 1) throw new Error(`trainStep: AdamW step ${adam.step} after ${this.steps} steps`);
    if (micro.length === 0) throw new Error('trainStep: no micro-batches');
    const lossAndGrad = this.microGrad();
    const g = new Float64Array(this.layout.totalFloats);
    let loss = 0;
    for (const batch of micro) {
      const r = lossAndGrad(batch);
      loss += r.loss / micro.length;
      const flat = packFlat(this.layout, r.grads, new Float64Array(this.layout.totalFloats));
      for (let i = 0; i < g.length; i++) g[i] += flat[i] / micro.length;
    }
    const { gradNorm, skipped } = adamwStep(this.layout, this.p, g, this.m, this.v, adam);
    this.steps++;
    return { loss, gradNorm, skipped };
  }

  async snapshot(): Promise<TrainerSnapshot> {
    return { params: this.p.slice(), m: this.m.slice(), v: this.v.slice(), step: this.steps };
  }

  setOptimizerState(moments: OptimizerMoments, steps: number): void {
    this.m = packFlat(this.layout, moments.m);
    this.v = packFlat(this.layout, moments.v);
    this.steps = steps;
  }

  async destroy(): Promise<void> {}
}
