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
import { adamwParams, type AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import { tokenRows } from '../../../backends/wgsl/train-embedding.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from '../../runtime/device.ts';
import { isTrainable, type GpuAttentionFactory, type TrainableGpuAttention } from '../../runtime/gpu-attention.ts';
import { compileModelKernels, encodeDispatch, type BoundDispatch, type ModelKernels } from '../../runtime/model-kernels.ts';
import { bindAdamW, bindSumBlocks, compileTrainKernels, type TrainKernels } from '../../runtime/train-kernels.ts';
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { weightsToTensors, type AttentionParamSpec, type ModelWeights } from '../weights.ts';
import { buildTrainStep, destroyTrainStep, trainMatmulCache, type TrainContext, type TrainOp, type TrainStepPlan } from './gpu-train-step.ts';
import { packFlat, paramLayout, type ParamLayout, type ParamSlot } from './param-layout.ts';
import type { OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

export interface GpuTrainerOptions {
  /** K splits of a weight gradient: 'auto' (default) aims at about 1024 workgroups; 1 never splits. */
  readonly splitK?: number | 'auto';
  /** The most bytes of logits one LM-head block holds (default 64 MiB). */
  readonly logitsBlockBytes?: number;
}

/** An attention layer that is not a TrainableGpuAttention: its variant has no GPU backward (yet). */
export class NoBackwardError extends Error {
  constructor(readonly layer: number, file: string) {
    super(`attention layer ${layer} of ${file} has no backward (encodeTrainForward/encodeBackward); the variant cannot be trained on the GPU yet`);
    this.name = 'NoBackwardError';
  }
}

/** Micro-batch losses one readback holds (and evaluation batches per submit round). */
const LOSS_SLOTS = 256;
const NORM_BLOCKS_MAX = 4096;

interface AttentionParam {
  readonly name: string;
  readonly slot: ParamSlot;
  readonly value: GPUBuffer;
  readonly grad: GPUBuffer;
}

export class GpuTrainer implements Trainer {
  private readonly plans = new Map<string, Promise<TrainStepPlan>>();
  private readonly staging: GPUBuffer[];
  private readonly pending: (Promise<unknown> | undefined)[] = [undefined, undefined];
  private steps = 0;
  /** Settles when the last trainStep called has been submitted. */
  private submission: Promise<void> = Promise.resolve();
  private readonly normDispatches: BoundDispatch[];
  private readonly adamw: BoundDispatch;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly layout: ParamLayout,
    private readonly ctx: TrainContext,
    private readonly m: GPUBuffer,
    private readonly v: GPUBuffer,
    private readonly stats: GPUBuffer,
    private readonly adamUniform: GPUBuffer,
    private readonly owned: GPUBuffer[],
    readonly attention: readonly TrainableGpuAttention[],
    private readonly attentionParams: readonly (readonly AttentionParam[])[],
    private readonly destroyMatmuls: () => Promise<void>,
  ) {
    const { device } = gpu;
    this.staging = [0, 1].map((i) => device.createBuffer({ label: `step readback ${i}`, size: 4 * (LOSS_SLOTS + 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }));
    const total = layout.totalFloats;
    const perBlock = Math.max(4096, Math.ceil(total / NORM_BLOCKS_MAX / 256) * 256);
    const blocks = Math.ceil(total / perBlock);
    const partials = device.createBuffer({ label: 'gradient norm partials', size: 4 * blocks, usage: BufferUsage.STORAGE });
    owned.push(partials);
    const k = ctx.kernels;
    this.normDispatches = [
      bindSumBlocks(gpu, k, { x: ctx.grads, out: partials }, { count: total, perBlock, outIndex: 0, scale: 1, square: true }, 'gradient squares'),
      bindSumBlocks(gpu, k, { x: partials, out: stats }, { count: blocks, perBlock: blocks, outIndex: 0, scale: 1, square: false }, 'gradient norm²'),
    ];
    const table = device.createBuffer({ label: 'parameter table', size: 12 * layout.slots.length, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    device.queue.writeBuffer(table, 0, Uint32Array.from(layout.slots.flatMap((s) => [s.offset, s.offset + s.size, s.decay ? 1 : 0])));
    owned.push(table);
    this.adamw = bindAdamW(gpu, k, { p: ctx.params, g: ctx.grads, m, v, table, stats, params: adamUniform }, total, 'AdamW');
  }

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
    if (config.medusa) throw new Error(`${config.file}: training Medusa heads is not supported; remove "medusa" from the config to train the base model`);
    const layout = paramLayout(config, attentionParams, Math.max(256, gpu.limits.minStorageBufferOffsetAlignment));
    const { device } = gpu;
    const owned: GPUBuffer[] = [];
    const flat = (label: string, floats: number) => {
      const b = device.createBuffer({ label, size: floats * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
      owned.push(b);
      return b;
    };
    try {
      const maxBind = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
      if (layout.totalFloats * 4 > maxBind) {
        throw new Error(`the model's ${layout.totalFloats} parameters (${(layout.totalFloats * 4 / 2 ** 20).toFixed(1)} MiB) exceed one storage binding on ${gpu.adapterName} (${maxBind} bytes)`);
      }
      const tensors = weightsToTensors(config, weights, attentionParams);
      const host = packFlat(layout, tensors);
      const params = flat('parameters', layout.totalFloats);
      device.queue.writeBuffer(params, 0, host);
      const grads = flat('gradients', layout.totalFloats);
      const m = flat('AdamW m', layout.totalFloats);
      const v = flat('AdamW v', layout.totalFloats);
      const stats = flat('gradient norm²', 4);
      const losses = flat('micro-batch losses', LOSS_SLOTS);
      const adamUniform = device.createBuffer({ label: 'AdamW step', size: 48, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      owned.push(adamUniform);
      const model: ModelKernels = await compileModelKernels(gpu, { hidden: config.hiddenSize, intermediate: config.intermediateSize, vocab: config.vocabSize, eps: config.rmsNormEps });
      const kernels: TrainKernels = await compileTrainKernels(gpu, { hidden: config.hiddenSize, vocab: config.vocabSize, eps: config.rmsNormEps });

      const layerParams: AttentionParam[][] = [];
      const attention: TrainableGpuAttention[] = [];
      for (let l = 0; l < config.numLayers; l++) {
        const ps = attentionParams.map((spec) => {
          const name = `model.layers.${l}.self_attn.${spec.name}`;
          const slot = layout.byName.get(name)!;
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
      const splitK = options.splitK ?? 'auto';
      const matmuls = trainMatmulCache(gpu);
      const ctx: TrainContext = {
        gpu, config, model, kernels, layout, params, grads, losses,
        splits: (out, inDim, rows) => {
          if (splitK !== 'auto') return Math.max(1, Math.min(splitK, Math.floor(rows / 16)));
          if (gpu.isSoftware) return 1;
          const tiles = Math.ceil(out / 64) * Math.ceil(inDim / 64);
          return Math.max(1, Math.min(Math.ceil(1024 / tiles), Math.floor(rows / 512)));
        },
        logitsBudget: Math.floor((options.logitsBlockBytes ?? 64 * 2 ** 20) / 4),
        matmul: matmuls.get,
      };
      return new GpuTrainer(gpu, config, layout, ctx, m, v, stats, adamUniform, owned, attention, layerParams, matmuls.destroy);
    } catch (e) {
      for (const b of owned) b.destroy();
      throw e;
    }
  }

  /** Steps taken (AdamW's t); set when resuming. */
  get step(): number {
    return this.steps;
  }

  /**
   * One optimiser step over `micro` (equal shapes): the mean loss's gradient accumulated over the micro-batches,
   * clipped, applied by AdamW with `adam` (its `step` must be this.step + 1). Resolves once the step's losses
   * are read back; a next step may be submitted before that.
   */
  trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    if (adam.step !== this.steps + 1) return Promise.reject(new Error(`trainStep: AdamW step ${adam.step} after ${this.steps} steps`));
    this.steps++;
    // Steps are submitted in call order: each waits for the previous one's submission (not its completion).
    const submitted = this.submission.then(() => this.submitStep(micro, adam));
    this.submission = submitted.then(() => undefined, () => undefined);
    return submitted.then((read) => read());
  }

  private async submitStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<() => Promise<StepResult>> {
    const ring = adam.step % 2;
    await this.pending[ring];
    await this.accumulate(micro);
    const { device } = this.gpu;
    device.queue.writeBuffer(this.adamUniform, 0, adamwParams(adam, this.layout.totalFloats, this.layout.slots.length));
    const encoder = device.createCommandEncoder({ label: `optimiser step ${adam.step}` });
    this.gatherAttentionGrads(encoder);
    const pass = encoder.beginComputePass({ label: `gradient norm and AdamW, step ${adam.step}` });
    for (const d of this.normDispatches) encodeDispatch(pass, d);
    encodeDispatch(pass, this.adamw);
    pass.end();
    for (const layer of this.attentionParams) {
      for (const p of layer) encoder.copyBufferToBuffer(this.ctx.params, p.slot.offset * 4, p.value, 0, p.slot.size * 4);
    }
    const staging = this.staging[ring];
    encoder.copyBufferToBuffer(this.ctx.losses, 0, staging, 0, 4 * micro.length);
    encoder.copyBufferToBuffer(this.stats, 0, staging, 4 * LOSS_SLOTS, 4);
    device.queue.submit([encoder.finish()]);
    const result = this.read(staging, micro.length, `training step ${adam.step}`).then(({ losses, norm2 }) => ({
      loss: mean(losses),
      gradNorm: Math.sqrt(norm2),
      skipped: !Number.isFinite(norm2),
    }));
    this.pending[ring] = result.catch(() => undefined);
    return () => result;
  }

  /** The flat gradient of the mean loss over `micro` (no update) and the mean loss: for tests. */
  async gradient(micro: readonly TokenBatch[]): Promise<{ loss: number; grads: Float32Array }> {
    await this.idle();
    await this.accumulate(micro);
    const encoder = this.gpu.device.createCommandEncoder({ label: 'gradient' });
    this.gatherAttentionGrads(encoder);
    this.gpu.device.queue.submit([encoder.finish()]);
    const grads = await this.readFlat(this.ctx.grads);
    const { losses } = await this.read(this.staging[0], micro.length, 'gradient', true);
    return { loss: mean(losses), grads };
  }

  /** Mean cross-entropy over `batches` (equal shapes), forward only. */
  async evaluate(batches: readonly TokenBatch[]): Promise<number> {
    await this.idle();
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
      const { losses } = await this.read(this.staging[0], chunk.length, 'evaluation', true);
      chunk.forEach((batch, i) => {
        total += losses[i] * batch.b * batch.t;
        tokens += batch.b * batch.t;
      });
    }
    return total / tokens;
  }

  /** The parameters, flat (the layout's). */
  async readParams(): Promise<Float32Array> {
    await this.idle();
    return this.readFlat(this.ctx.params);
  }

  /** AdamW's moments, flat. */
  async readMoments(): Promise<{ m: Float32Array; v: Float32Array }> {
    await this.idle();
    return { m: await this.readFlat(this.m), v: await this.readFlat(this.v) };
  }

  async snapshot(): Promise<TrainerSnapshot> {
    const params = await this.readParams();
    const { m, v } = await this.readMoments();
    return { params, m, v, step: this.steps };
  }

  /** Restores the optimiser (resume): its moments and the number of steps taken. */
  setOptimizerState(moments: OptimizerMoments, steps: number): void {
    if (!(Number.isInteger(steps) && steps >= 0)) throw new Error(`optimizer state: ${steps} steps`);
    this.gpu.device.queue.writeBuffer(this.m, 0, packFlat(this.layout, moments.m));
    this.gpu.device.queue.writeBuffer(this.v, 0, packFlat(this.layout, moments.v));
    this.steps = steps;
  }

  async destroy(): Promise<void> {
    await this.idle();
    for (const p of this.plans.values()) destroyTrainStep(await p);
    this.plans.clear();
    for (const b of [...this.owned, ...this.staging]) b.destroy();
    for (const d of [...this.normDispatches, this.adamw]) for (const b of d.owned) b.destroy();
    await this.destroyMatmuls();
  }

  /** Every step called so far submitted and read back. */
  private async idle(): Promise<void> {
    await this.submission;
    await Promise.all(this.pending);
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

  /** Zeroes the gradients, then runs forward, loss and backward of each micro-batch (one submit each). */
  private async accumulate(micro: readonly TokenBatch[]): Promise<void> {
    if (micro.length === 0 || micro.length > LOSS_SLOTS) throw new Error(`a step takes 1..${LOSS_SLOTS} micro-batches, got ${micro.length}`);
    const { b, t } = micro[0];
    for (const m of micro) if (m.b !== b || m.t !== t) throw new Error(`micro-batches of one step must share a shape: [${b}, ${t}] and [${m.b}, ${m.t}]`);
    const plan = await this.plan(b, t);
    plan.setMicroBatches(micro.length);
    const clear = this.gpu.device.createCommandEncoder({ label: 'zero gradients' });
    clear.clearBuffer(this.ctx.grads);
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
    const check = (what: string, a: ArrayLike<number>) => {
      if (a.length !== rows) throw new Error(`${what}: ${a.length} ids for [${batch.b}, ${batch.t}]`);
      for (let i = 0; i < rows; i++) {
        if (!(Number.isInteger(a[i]) && a[i] >= 0 && a[i] < V)) throw new Error(`${what}: token ${a[i]} at row ${i} is outside [0, ${V})`);
      }
    };
    check('batch inputs', batch.inputs);
    check('batch targets', batch.targets);
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

  private gatherAttentionGrads(encoder: GPUCommandEncoder): void {
    for (const layer of this.attentionParams) {
      for (const p of layer) encoder.copyBufferToBuffer(p.grad, 0, this.ctx.grads, p.slot.offset * 4, p.slot.size * 4);
    }
  }

  private async read(staging: GPUBuffer, count: number, what: string, copy = false): Promise<{ losses: number[]; norm2: number }> {
    if (copy) {
      const encoder = this.gpu.device.createCommandEncoder({ label: `${what} readback` });
      encoder.copyBufferToBuffer(this.ctx.losses, 0, staging, 0, 4 * count);
      encoder.copyBufferToBuffer(this.stats, 0, staging, 4 * LOSS_SLOTS, 4);
      this.gpu.device.queue.submit([encoder.finish()]);
    }
    try {
      await staging.mapAsync(MapMode.READ);
    } catch (e) {
      throwIfDeviceErrors(this.gpu, what);
      throw new Error(`${what}: reading the losses back failed: ${(e as Error).message}`);
    }
    const data = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    throwIfDeviceErrors(this.gpu, what);
    return { losses: Array.from(data.subarray(0, count)), norm2: data[LOSS_SLOTS] };
  }

  private async readFlat(buffer: GPUBuffer): Promise<Float32Array> {
    const { device } = this.gpu;
    const bytes = this.layout.totalFloats * 4;
    const staging = device.createBuffer({ label: `readback of ${buffer.label}`, size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const encoder = device.createCommandEncoder({ label: `readback of ${buffer.label}` });
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MapMode.READ);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      throwIfDeviceErrors(this.gpu, `reading ${buffer.label}`);
      return out;
    } finally {
      staging.destroy();
    }
  }
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
