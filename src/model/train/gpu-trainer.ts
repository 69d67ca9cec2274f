// The decoder LM trained on the GPU. The weights live in one flat parameter buffer (param-layout.ts) beside the
// flat gradient and AdamW moment buffers; a step is one submit per micro-batch (gpu-train-step.ts: forward,
// loss, backward adding into the gradient) and one for the optimiser: the attention layers' parameter
// gradients join the flat buffer, the global gradient norm is reduced on the GPU, one AdamW dispatch updates
// every tensor (clipping by that norm, no readback in between), and the attention layers' parameter buffers
// receive their new values. The only readback is the step's losses and norm, which the host may read while
// the GPU already runs the next step.
//
// Attention layers are any TrainableGpuAttention (src/runtime/gpu-attention.ts); each gets its variant's
// parameters as buffers of their own (copies of their ranges of the flat buffer) and a gradient buffer per
// parameter that its backward adds into.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import { tokenRows } from '../../../backends/wgsl/train-embedding.ts';
import type { Gpu } from '../../runtime/device.ts';
import { isTrainable, type GpuAttentionFactory, type TrainableGpuAttention } from '../../runtime/gpu-attention.ts';
import { compileModelKernels, encodeDispatch, type ModelKernels } from '../../runtime/model-kernels.ts';
import { compileTrainKernels, type TrainKernels } from '../../runtime/train-kernels.ts';
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { weightsToTensors, type AttentionParamSpec, type ModelWeights } from '../weights.ts';
import { flatBuffers, GpuFlatOptimizer, LOSS_SLOTS } from './gpu-flat-optimizer.ts';
import { buildTrainStep, destroyTrainStep, trainMatmulCache, type TrainContext, type TrainOp, type TrainStepPlan } from './gpu-train-step.ts';
import { packFlat, paramLayout, type ParamLayout, type ParamSlot } from './param-layout.ts';
import type { OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

export interface GpuTrainerOptions {
  /** K splits of a weight gradient: 'auto' (default) aims at about 1024 workgroups; 1 never splits. */
  readonly splitK?: number | 'auto';
  /** The most bytes of logits one LM-head block holds (default 64 MiB). */
  readonly logitsBlockBytes?: number;
  /** Bytes one group of the flat optimizer's buffers may hold, below the adapter's limit (tests cut the layout into groups). */
  readonly maxParamBinding?: number;
}

/** An attention layer that is not a TrainableGpuAttention: its variant has no GPU backward (yet). */
export class NoBackwardError extends Error {
  constructor(readonly layer: number, file: string) {
    super(`attention layer ${layer} of ${file} has no backward (encodeTrainForward/encodeBackward); the variant cannot be trained on the GPU yet`);
    this.name = 'NoBackwardError';
  }
}

interface AttentionParam {
  readonly name: string;
  readonly slot: ParamSlot;
  readonly value: GPUBuffer;
  readonly grad: GPUBuffer;
}


/** Split-K layers for a weight gradient [out, in] over `rows`: 'auto' aims at about 1024 workgroups (none on a software adapter). */
export function weightGradSplits(gpu: Gpu, splitK: number | 'auto' = 'auto'): (out: number, inDim: number, rows: number) => number {
  return (out, inDim, rows) => {
    if (splitK !== 'auto') return Math.max(1, Math.min(splitK, Math.floor(rows / 16)));
    if (gpu.isSoftware) return 1;
    const tiles = Math.ceil(out / 64) * Math.ceil(inDim / 64);
    return Math.max(1, Math.min(Math.ceil(1024 / tiles), Math.floor(rows / 512)));
  };
}

export class GpuTrainer implements Trainer {
  private readonly plans = new Map<string, Promise<TrainStepPlan>>();

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly layout: ParamLayout,
    private readonly ctx: TrainContext,
    private readonly optimizer: GpuFlatOptimizer,
    private readonly owned: GPUBuffer[],
    readonly attention: readonly TrainableGpuAttention[],
    private readonly attentionParams: readonly (readonly AttentionParam[])[],
    private readonly destroyMatmuls: () => Promise<void>,
  ) {}

  /**
   * Uploads `weights` into the flat buffers (moments zero), compiles the kernels and makes each layer's attention
   * through `factory`, which must give TrainableGpuAttention layers.
   */
  static async create(
    gpu: Gpu,
    config: ModelConfig,
    weights: ModelWeights<TensorData>,
    attentionParams: readonly AttentionParamSpec[],
    factory: GpuAttentionFactory,
    options: GpuTrainerOptions = {},
  ): Promise<GpuTrainer> {
    if (config.medusa) throw new Error(`${config.file}: linattn train trains the base model; remove "medusa" from the config (Medusa heads are trained by linattn train-medusa)`);
    const layout = paramLayout(config, attentionParams, Math.max(256, gpu.limits.minStorageBufferOffsetAlignment));
    const { device } = gpu;
    const owned: GPUBuffer[] = [];
    const flat = flatBuffers(device, owned);
    let optimizer: GpuFlatOptimizer | undefined;
    try {
      const host = packFlat(layout, weightsToTensors(config, weights, attentionParams));
      const model: ModelKernels = await compileModelKernels(gpu, { hidden: config.hiddenSize, intermediate: config.intermediateSize, vocab: config.vocabSize, eps: config.rmsNormEps });
      const kernels: TrainKernels = await compileTrainKernels(gpu, { hidden: config.hiddenSize, vocab: config.vocabSize, eps: config.rmsNormEps });
      const layerParams: AttentionParam[][] = [];
      // The attention layers' parameters live in buffers of their own: their gradients join the flat buffer
      // before the norm, their new values leave it after AdamW.
      optimizer = GpuFlatOptimizer.create(gpu, kernels, layout, host, {
        gatherGrads: (encoder) => {
          for (const layer of layerParams) for (const p of layer) encoder.copyBufferToBuffer(p.grad, 0, optimizer!.grads[p.slot.group], p.slot.groupOffset * 4, p.slot.size * 4);
        },
        scatterParams: (encoder) => {
          for (const layer of layerParams) for (const p of layer) encoder.copyBufferToBuffer(optimizer!.params[p.slot.group], p.slot.groupOffset * 4, p.value, 0, p.slot.size * 4);
        },
      }, { maxBinding: options.maxParamBinding });
      const grouped = optimizer.layout;

      const attention: TrainableGpuAttention[] = [];
      for (let l = 0; l < config.numLayers; l++) {
        const ps = attentionParams.map((spec) => {
          const name = `model.layers.${l}.self_attn.${spec.name}`;
          const slot = grouped.byName.get(name)!;
          const value = flat(name, slot.size);
          device.queue.writeBuffer(value, 0, host, slot.offset, slot.size); // offset and size in elements
          return { name: spec.name, slot, value, grad: flat(`∂loss/∂${name}`, slot.size) };
        });
        const a = factory(l, Object.fromEntries(ps.map((p) => [p.name, p.value])));
        if (!isTrainable(a)) throw new NoBackwardError(l, config.file);
        if (a.heads !== config.numHeads || a.headDim !== config.headDim) {
          throw new Error(`attention layer ${l} has ${a.heads} heads of ${a.headDim}, but ${config.file} has num_attention_heads ${config.numHeads}, head_dim ${config.headDim}`);
        }
        layerParams.push(ps);
        attention.push(a);
      }
      const matmuls = trainMatmulCache(gpu);
      const ctx: TrainContext = {
        gpu, config, model, kernels, layout: grouped, params: optimizer.params, grads: optimizer.grads, losses: optimizer.losses,
        splits: weightGradSplits(gpu, options.splitK),
        logitsBudget: Math.floor((options.logitsBlockBytes ?? 64 * 2 ** 20) / 4),
        matmul: matmuls.get,
      };
      return new GpuTrainer(gpu, config, grouped, ctx, optimizer, owned, attention, layerParams, matmuls.destroy);
    } catch (e) {
      for (const b of owned) b.destroy();
      optimizer?.destroy();
      throw e;
    }
  }

  /** Steps taken (AdamW's t); set when resuming. */
  get step(): number {
    return this.optimizer.step;
  }

  /**
   * One optimiser step over `micro` (equal shapes): the mean loss's gradient accumulated over the micro-batches,
   * clipped, applied by AdamW with `adam` (its `step` must be this.step + 1). Resolves once the step's losses
   * are read back; a next step may be submitted before that.
   */
  trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    return this.optimizer.trainStep(micro.length, adam, () => this.accumulate(micro));
  }

  /** The flat gradient of the mean loss over `micro` (no update) and the mean loss: for tests. */
  gradient(micro: readonly TokenBatch[]): Promise<{ loss: number; grads: Float32Array }> {
    return this.optimizer.gradient(micro.length, () => this.accumulate(micro));
  }

  /** Mean cross-entropy over `batches` (equal shapes), forward only. */
  async evaluate(batches: readonly TokenBatch[]): Promise<number> {
    await this.optimizer.idle();
    if (batches.length === 0) throw new Error('evaluate: no batches');
    // Token-weighted: batches may differ in size (evaluation's last one).
    let total = 0;
    let tokens = 0;
    for (let at = 0; at < batches.length; at += LOSS_SLOTS) {
      const chunk = batches.slice(at, at + LOSS_SLOTS);
      for (const [i, batch] of chunk.entries()) {
        const plan = await this.plan(batch.b, batch.t);
        this.upload(plan, batch);
        this.submitOps(plan, plan.evaluate, i, `evaluation batch ${at + i}`);
      }
      const losses = await this.optimizer.readLosses(chunk.length, 'evaluation');
      chunk.forEach((batch, i) => {
        total += losses[i] * batch.b * batch.t;
        tokens += batch.b * batch.t;
      });
    }
    return total / tokens;
  }

  /** The parameters, flat (the layout's). */
  readParams(): Promise<Float32Array> {
    return this.optimizer.readParams();
  }

  /** AdamW's moments, flat. */
  readMoments(): Promise<{ m: Float32Array; v: Float32Array }> {
    return this.optimizer.readMoments();
  }

  snapshot(): Promise<TrainerSnapshot> {
    return this.optimizer.snapshot();
  }

  /** Restores the optimiser (resume): its moments and the number of steps taken. */
  setOptimizerState(moments: OptimizerMoments, steps: number): void {
    this.optimizer.setOptimizerState(moments, steps);
  }

  async destroy(): Promise<void> {
    await this.optimizer.idle();
    for (const p of this.plans.values()) destroyTrainStep(await p);
    this.plans.clear();
    for (const b of this.owned) b.destroy();
    this.optimizer.destroy();
    await this.destroyMatmuls();
  }

  private plan(b: number, t: number): Promise<TrainStepPlan> {
    const key = `${b}:${t}`;
    let plan = this.plans.get(key);
    if (!plan) {
      plan = buildTrainStep(this.ctx, b, t);
      this.plans.set(key, plan);
      plan.catch(() => this.plans.delete(key));
    }
    return plan;
  }

  /** Runs forward, loss and backward of each micro-batch (one submit each) into the zeroed gradients. */
  private async accumulate(micro: readonly TokenBatch[]): Promise<void> {
    const { b, t } = micro[0];
    for (const m of micro) if (m.b !== b || m.t !== t) throw new Error(`micro-batches of one step must share a shape: [${b}, ${t}] and [${m.b}, ${m.t}]`);
    const plan = await this.plan(b, t);
    plan.setMicroBatches(micro.length);
    const clear = this.gpu.device.createCommandEncoder({ label: 'zero attention gradients' });
    for (const layer of this.attentionParams) for (const p of layer) clear.clearBuffer(p.grad);
    this.gpu.device.queue.submit([clear.finish()]);
    for (const [i, batch] of micro.entries()) {
      this.upload(plan, batch);
      this.submitOps(plan, plan.train, i, `micro-batch ${i}`);
    }
  }

  private upload(plan: TrainStepPlan, batch: TokenBatch): void {
    const rows = plan.rows;
    const V = this.config.vocabSize;
    checkIds('batch inputs', batch.inputs, rows, V, batch);
    checkIds('batch targets', batch.targets, rows, V, batch);
    const ids = Uint32Array.from(batch.inputs);
    const csr = tokenRows(ids, V);
    const q = this.gpu.device.queue;
    q.writeBuffer(plan.ids, 0, ids);
    q.writeBuffer(plan.targets, 0, Uint32Array.from(batch.targets));
    q.writeBuffer(plan.starts, 0, csr.starts);
    q.writeBuffer(plan.csrRows, 0, csr.rows);
  }

  private submitOps(plan: TrainStepPlan, ops: readonly TrainOp[], slot: number, label: string): void {
    const encoder = this.gpu.device.createCommandEncoder({ label });
    const pass = encoder.beginComputePass({ label });
    for (const op of ops) {
      if (!('attention' in op)) {
        encodeDispatch(pass, op);
        continue;
      }
      const a = this.attention[op.layer];
      const { q, k, v, o } = plan.layers[op.layer];
      if (op.attention === 'forward') a.encodeTrainForward(pass, { q, k, v, o }, plan.b, plan.t);
      else {
        const grads = Object.fromEntries(this.attentionParams[op.layer].map((p) => [p.name, p.grad]));
        a.encodeBackward(pass, { q, k, v, o, do: plan.dO, dq: plan.dQ, dk: plan.dK, dv: plan.dV }, grads, plan.b, plan.t);
      }
    }
    for (const d of plan.lossSum(slot)) encodeDispatch(pass, d);
    pass.end();
    this.gpu.device.queue.submit([encoder.finish()]);
  }
}

/** Token ids of a [b, t] batch: `rows` of them, each an integer in [0, vocab). */
export function checkIds(what: string, a: ArrayLike<number>, rows: number, vocab: number, batch: { b: number; t: number }): void {
  if (a.length !== rows) throw new Error(`${what}: ${a.length} ids for [${batch.b}, ${batch.t}]`);
  for (let i = 0; i < rows; i++) {
    if (!(Number.isInteger(a[i]) && a[i] >= 0 && a[i] < vocab)) throw new Error(`${what}: token ${a[i]} at row ${i} is outside [0, ${vocab})`);
  }
}
