// Medusa heads trained in float64 on the CPU (`linattn train-medusa --device cpu`): the frozen base model's float64
// forward (the variant's parallel form), then medusa-grad.ts's loss and gradient, averaged over micro-batches, and
// AdamW of adamw.ts over the heads' flat layout. Slow; for tiny models and for checking the GPU.
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { cpuAttentionFromVariant } from '../cpu-attention.ts';
import { cpuForward, cpuModel, type CpuAttention, type CpuModel } from '../cpu-forward.ts';
import type { ModelVariant } from '../variant.ts';
import type { MedusaHeadWeights, ModelWeights } from '../weights.ts';
import { CpuFlatTrainer, type MicroGrad } from './cpu-flat-trainer.ts';
import { greedyPicks, medusaEvaluate, medusaLossAndGrad, medusaRows, type MedusaRows, type MedusaTarget } from './medusa-grad.ts';
import { medusaLayout, packFlat } from './param-layout.ts';
import type { Evaluation, TokenBatch } from './trainer.ts';

export class MedusaCpuTrainer extends CpuFlatTrainer {
  private readonly base: CpuModel;
  private readonly attention: CpuAttention;
  private readonly M: number;

  constructor(readonly config: ModelConfig, base: ModelWeights<TensorData>, heads: readonly MedusaHeadWeights<TensorData>[], readonly target: MedusaTarget, variant: ModelVariant) {
    const M = config.medusa?.numHeads ?? 0;
    if (M < 1 || heads.length !== M) throw new Error(`${config.file}: ${heads.length} Medusa heads given for "medusa": {"num_heads": ${M}}`);
    const layout = medusaLayout(config);
    super(layout, packFlat(layout, headTensors(heads)));
    this.M = M;
    this.base = cpuModel(config, { ...base, medusa: [] });
    this.attention = cpuAttentionFromVariant(variant.program, this.base.weights.layers.map((l) => l.attention));
  }

  /** The heads' rows and targets of a batch of windows: the base's forward (and, for self, its greedy picks). */
  rowsOf(batch: TokenBatch): MedusaRows {
    const windows = Array.from({ length: batch.b }, (_, s) => Array.from({ length: batch.t }, (_, i) => batch.inputs[s * batch.t + i]));
    const { logits, hidden } = cpuForward(this.base, windows, this.attention);
    const next = this.target === 'self' ? greedyPicks(logits.data, this.config.vocabSize) : batch.targets;
    return medusaRows(hidden.data, next, batch.b, batch.t, this.M, this.config.hiddenSize);
  }

  protected microGrad(): MicroGrad {
    const heads = this.heads();
    return (batch) => {
      const r = medusaLossAndGrad(heads, this.rowsOf(batch), this.config.vocabSize);
      return { loss: r.loss, grads: headTensors(r.grads) };
    };
  }

  async evaluate(batches: readonly TokenBatch[]): Promise<number> {
    return (await this.evaluateMetrics(batches)).loss;
  }

  async evaluateMetrics(batches: readonly TokenBatch[]): Promise<Evaluation> {
    if (batches.length === 0) throw new Error('evaluate: no batches');
    const heads = this.heads();
    const loss = new Array<number>(this.M).fill(0);
    const top1 = new Array<number>(this.M).fill(0);
    let rows = 0;
    for (const batch of batches) {
      const data = this.rowsOf(batch);
      const e = medusaEvaluate(heads, data, this.config.vocabSize);
      for (let n = 0; n < this.M; n++) {
        loss[n] += e.headLosses[n] * data.rows;
        top1[n] += e.top1[n] * data.rows;
      }
      rows += data.rows;
    }
    const metrics: Record<string, number> = {};
    for (let n = 0; n < this.M; n++) {
      metrics[`head${n}_loss`] = loss[n] / rows;
      metrics[`head${n}_top1`] = top1[n] / rows;
    }
    return { loss: loss.reduce((a, b) => a + b, 0) / rows / this.M, metrics };
  }

  /** The heads at the current parameters, in float64. */
  private heads(): MedusaHeadWeights<Float64Array>[] {
    const H = this.config.hiddenSize;
    const V = this.config.vocabSize;
    return Array.from({ length: this.M }, (_, n) => {
      const at = (name: string) => {
        const s = this.layout.byName.get(name)!;
        return Float64Array.from(this.p.subarray(s.offset, s.offset + s.size));
      };
      return { proj: { shape: [H, H], data: at(`medusa.${n}.proj.weight`) }, lmHead: { shape: [V, H], data: at(`medusa.${n}.lm_head.weight`) } };
    });
  }
}

/** The heads by their checkpoint names. */
export function headTensors<D extends TensorData>(heads: readonly MedusaHeadWeights<D>[]): Map<string, { readonly shape: readonly number[]; readonly data: D }> {
  const out = new Map<string, { readonly shape: readonly number[]; readonly data: D }>();
  heads.forEach((h, n) => {
    out.set(`medusa.${n}.proj.weight`, h.proj);
    out.set(`medusa.${n}.lm_head.weight`, h.lmHead);
  });
  return out;
}
