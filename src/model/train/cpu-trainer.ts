// Training with the float64 CPU model (`linattn train --device cpu`): the gradient of cpu-grad.ts with the
// variant's own float64 gradient oracle as the attention's VJP, averaged over micro-batches, and AdamW of
// adamw.ts. Slow (the oracle walks every pair of positions), for tiny models and for checking the GPU. The state
// is float32 values, as a checkpoint stores it, so a resumed run continues with the numbers it had.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { cpuModel } from '../cpu-forward.ts';
import type { ModelVariant } from '../variant.ts';
import { weightsFromTensors, weightsToTensors, type ModelWeights } from '../weights.ts';
import { adamwStep } from './adamw.ts';
import { cpuAttentionGradFromVariant } from './cpu-attention-grad.ts';
import { cpuLoss, cpuLossAndGrad } from './cpu-grad.ts';
import { packFlat, paramLayout, unpackFlat, type ParamLayout } from './param-layout.ts';
import type { OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

export class CpuTrainer implements Trainer {
  readonly layout: ParamLayout;
  private readonly p: Float32Array;
  private m: Float32Array;
  private v: Float32Array;
  private steps = 0;

  constructor(readonly config: ModelConfig, weights: ModelWeights<TensorData>, private readonly variant: ModelVariant) {
    if (config.medusa) throw new Error(`${config.file}: training Medusa heads is not supported; remove "medusa" from the config to train the base model`);
    this.layout = paramLayout(config, variant.params);
    this.p = packFlat(this.layout, weightsToTensors(config, weights, variant.params));
    this.m = new Float32Array(this.layout.totalFloats);
    this.v = new Float32Array(this.layout.totalFloats);
  }

  get step(): number {
    return this.steps;
  }

  async trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    if (adam.step !== this.steps + 1) throw new Error(`trainStep: AdamW step ${adam.step} after ${this.steps} steps`);
    if (micro.length === 0) throw new Error('trainStep: no micro-batches');
    const { cpu, attention } = this.model();
    const g = new Float64Array(this.layout.totalFloats);
    let loss = 0;
    for (const batch of micro) {
      const { loss: l, grads } = cpuLossAndGrad(cpu, rowsOf(batch.inputs, batch), rowsOf(batch.targets, batch), attention);
      loss += l / micro.length;
      const flat = packFlat(this.layout, weightsToTensors(this.config, grads, this.variant.params), new Float64Array(this.layout.totalFloats));
      for (let i = 0; i < g.length; i++) g[i] += flat[i] / micro.length;
    }
    const { gradNorm, skipped } = adamwStep(this.layout, this.p, g, this.m, this.v, adam);
    this.steps++;
    return { loss, gradNorm, skipped };
  }

  async evaluate(batches: readonly TokenBatch[]): Promise<number> {
    if (batches.length === 0) throw new Error('evaluate: no batches');
    const { cpu, attention } = this.model();
    let total = 0;
    let tokens = 0;
    for (const batch of batches) {
      total += cpuLoss(cpu, rowsOf(batch.inputs, batch), rowsOf(batch.targets, batch), attention.forward) * batch.b * batch.t;
      tokens += batch.b * batch.t;
    }
    return total / tokens;
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

  /** The float64 model at the current parameters. */
  private model() {
    const weights = weightsFromTensors(this.config, unpackFlat(this.layout, this.p), this.variant.params, '(CPU trainer)');
    const cpu = cpuModel(this.config, weights);
    const attention = cpuAttentionGradFromVariant(this.variant.program, cpu.weights.layers.map((l) => l.attention));
    return { cpu, attention };
  }
}

function rowsOf(ids: ArrayLike<number>, batch: TokenBatch): number[][] {
  return Array.from({ length: batch.b }, (_, s) => Array.from({ length: batch.t }, (_, i) => ids[s * batch.t + i]));
}
