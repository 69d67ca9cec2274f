// Medusa heads trained in float64 on the CPU (`linattn train-medusa --device cpu`): the frozen base model's float64
// forward (the variant's parallel form), then medusa-grad.ts's loss and gradient, averaged over micro-batches, and
// AdamW of adamw.ts over the heads' flat layout. Slow; for tiny models and for checking the GPU.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { cpuAttentionFromVariant } from '../cpu-attention.ts';
import { cpuForward, cpuModel, type CpuAttention, type CpuModel } from '../cpu-forward.ts';
import type { ModelVariant } from '../variant.ts';
import type { MedusaHeadWeights, ModelWeights } from '../weights.ts';
import { adamwStep } from './adamw.ts';
import { greedyPicks, medusaEvaluate, medusaLossAndGrad, medusaRows, type MedusaRows, type MedusaTarget } from './medusa-grad.ts';
import { medusaLayout, packFlat, type ParamLayout } from './param-layout.ts';
import type { Evaluation, OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

export class MedusaCpuTrainer implements Trainer {
  readonly layout: ParamLayout;
  private readonly p: Float32Array<ArrayBuffer>;
  private m: Float32Array;
  private v: Float32Array;
  private steps = 0;
  private readonly base: CpuModel;
  private readonly attention: CpuAttention;
  private readonly M: number;

  constructor(readonly config: ModelConfig, base: ModelWeights<TensorData>, heads: readonly MedusaHeadWeights<TensorData>[], readonly target: MedusaTarget, variant: ModelVariant) {
    this.M = config.medusa?.numHeads ?? 0;
    if (this.M < 1 || heads.length !== this.M) throw new Error(`${config.file}: ${heads.length} Medusa heads given for "medusa": {"num_heads": ${this.M}}`);
    this.layout = medusaLayout(config);
    this.p = packFlat(this.layout, headTensors(heads));
    this.m = new Float32Array(this.layout.totalFloats);
    this.v = new Float32Array(this.layout.totalFloats);
    this.base = cpuModel(config, { ...base, medusa: [] });
    this.attention = cpuAttentionFromVariant(variant.program, this.base.weights.layers.map((l) => l.attention));
  }

  get step(): number {
    return this.steps;
  }

  /** The heads' rows and targets of a batch of windows: the base's forward (and, for self, its greedy picks). */
  rowsOf(batch: TokenBatch): MedusaRows {
    const windows = Array.from({ length: batch.b }, (_, s) => Array.from({ length: batch.t }, (_, i) => batch.inputs[s * batch.t + i]));
    const { logits, hidden } = cpuForward(this.base, windows, this.attention);
    const next = this.target === 'self' ? greedyPicks(logits.data, this.config.vocabSize) : batch.targets;
    return medusaRows(hidden.data, next, batch.b, batch.t, this.M, this.config.hiddenSize);
  }

  async trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    if (adam.step !== this.steps + 1) throw new Error(`trainStep: AdamW step ${adam.step} after ${this.steps} steps`);
    if (micro.length === 0) throw new Error('trainStep: no micro-batches');
    const heads = this.heads();
    const g = new Float64Array(this.layout.totalFloats);
    let loss = 0;
    for (const batch of micro) {
      const r = medusaLossAndGrad(heads, this.rowsOf(batch), this.config.vocabSize);
      loss += r.loss / micro.length;
      const flat = packFlat(this.layout, headTensors(r.grads), new Float64Array(this.layout.totalFloats));
      for (let i = 0; i < g.length; i++) g[i] += flat[i] / micro.length;
    }
    const { gradNorm, skipped } = adamwStep(this.layout, this.p, g, this.m, this.v, adam);
    this.steps++;
    return { loss, gradNorm, skipped };
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

  async snapshot(): Promise<TrainerSnapshot> {
    return { params: this.p.slice(), m: this.m.slice(), v: this.v.slice(), step: this.steps };
  }

  setOptimizerState(moments: OptimizerMoments, steps: number): void {
    this.m = packFlat(this.layout, moments.m);
    this.v = packFlat(this.layout, moments.v);
    this.steps = steps;
  }

  async destroy(): Promise<void> {}

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
