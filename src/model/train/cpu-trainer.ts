// Training with the float64 CPU model (`linattn train --device cpu`): the gradient of cpu-grad.ts with the
// variant's own float64 gradient oracle as the attention's VJP, averaged over micro-batches, and AdamW of
// adamw.ts. Slow (the oracle walks every pair of positions), for tiny models and for checking the GPU. The state
// is float32 values, as a checkpoint stores it, so a resumed run continues with the numbers it had.
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { cpuModel } from '../cpu-forward.ts';
import type { ModelVariant } from '../variant.ts';
import { weightsFromTensors, weightsToTensors, type ModelWeights } from '../weights.ts';
import { cpuAttentionGradFromVariant } from './cpu-attention-grad.ts';
import { CpuFlatTrainer, type MicroGrad } from './cpu-flat-trainer.ts';
import { cpuLoss, cpuLossAndGrad } from './cpu-grad.ts';
import { packFlat, paramLayout, unpackFlat } from './param-layout.ts';
import type { TokenBatch } from './trainer.ts';

export class CpuTrainer extends CpuFlatTrainer {
  constructor(readonly config: ModelConfig, weights: ModelWeights<TensorData>, private readonly variant: ModelVariant) {
    if (config.medusa) throw new Error(`${config.file}: linattn train trains the base model; remove "medusa" from the config (Medusa heads are trained by linattn train-medusa)`);
    const layout = paramLayout(config, variant.params);
    super(layout, packFlat(layout, weightsToTensors(config, weights, variant.params)));
  }

  protected microGrad(): MicroGrad {
    const { cpu, attention } = this.model();
    return (batch) => {
      const { loss, grads } = cpuLossAndGrad(cpu, rowsOf(batch.inputs, batch), rowsOf(batch.targets, batch), attention);
      return { loss, grads: weightsToTensors(this.config, grads, this.variant.params) };
    };
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
