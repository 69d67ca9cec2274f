// Medusa heads trained on the GPU on a frozen base model (`linattn train-medusa`); medusa-grad.ts writes the same
// math in float64. A micro-batch is b windows of T = t + M tokens, one submit:
//
//   base (no gradient)  the model's inference forward over the windows (gpu-step-plan.ts, the variant's chunked
//                       form from a zero state, any variant); xn = rmsnorm(x)·norm at every row; --target self:
//                       the base LM head over xn in blocks of rows and each row's argmax (the greedy picks);
//                       a base LM head over one buffer's limit (weight-parts.ts) is one matmul per part, each
//                       writing its column range of the block's logits (the matmul's window), so the argmax
//                       reads the whole vocabulary as from one matmul
//   rows                x' and every head's targets (backends/wgsl/train-medusa.ts)
//   per head n          u = x'·Pᵀ, r = x' + silu(u); per block of rows: z = r·Lᵀ → loss and dz in place →
//                       dL += dzᵀ·r, dr = dz·L; then du = dr ⊙ silu′(u), dP += duᵀ·x'
//   loss                the mean over heads and rows into the micro-batch's slot
//
// The heads' proj and lm_head live in GpuFlatOptimizer's flat buffers (param-layout.ts's medusaLayout), so the
// step ends like the base trainer's: one norm reduction and one AdamW dispatch, clipped, no atomics anywhere
// (runs repeat bit for bit). Evaluation also writes each head's mean loss and top-1 accuracy.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import { crossEntropyParams } from '../../../backends/wgsl/train-loss.ts';
import { floatRange, type Binding, type BufferRange } from '../../runtime/buffer-range.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from '../../runtime/device.ts';
import type { GpuAttention, GpuAttentionFactory, GpuAttentionState } from '../../runtime/gpu-attention.ts';
import { bindMedusaResidual, bindMedusaResidualBackward, bindMedusaRows, bindRowArgmax, bindRowHits, compileMedusaTrainKernels, type MedusaTrainKernels } from '../../runtime/medusa-train-kernels.ts';
import { compileModelKernels, destroyDispatch, encodeDispatch, samplingConfigBuffer, type BoundDispatch, type ModelKernels } from '../../runtime/model-kernels.ts';
import { stepResources } from './step-resources.ts';
import { bindCrossEntropy, bindMatmulRanges, bindNormRows, bindSumBlocks, compileTrainKernels, type TrainKernels } from '../../runtime/train-kernels.ts';
import type { TensorData } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { buildStepPlan, destroyStepPlan, encodeStepWith, type BatchBuffers, type StepPlan } from '../gpu-step-plan.ts';
import { createExactTensor, destroyModelWeights, uploadModelWeights, type GpuModelWeights } from '../gpu-weights.ts';
import type { RowParts } from '../weight-parts.ts';
import type { MedusaHeadWeights, ModelWeights } from '../weights.ts';
import { GpuFlatOptimizer, LOSS_SLOTS } from './gpu-flat-optimizer.ts';
import { forwardMatmulOp, inputGradOp, lmHeadBlockRows, splitPartialFloats, trainMatmulCache, weightGradOps, type TrainContext } from './gpu-train-step.ts';
import { checkIds, weightGradSplits, type GpuTrainerOptions } from './gpu-trainer.ts';
import type { MedusaTarget } from './medusa-grad.ts';
import { medusaLayout, packFlat } from './param-layout.ts';
import type { Evaluation, OptimizerMoments, StepResult, TokenBatch, Trainer, TrainerSnapshot } from './trainer.ts';

export interface MedusaGpuTrainerOptions extends GpuTrainerOptions {
  /** Bytes one buffer of the frozen base's weights may hold, below the adapter's limits (tests split its LM head with it). */
  readonly maxWeightBuffer?: number;
}

/** One shape (b windows of T tokens): the base's plan and the heads' dispatches. */
interface MedusaStepPlan {
  readonly b: number;
  readonly T: number;
  /** Heads' rows: b·(T − M). */
  readonly rows: number;
  readonly base: StepPlan;
  readonly states: readonly GpuAttentionState[];
  /** u32 [b·T]: the windows' next tokens (uploaded for --target data). */
  readonly next: GPUBuffer;
  /** u32 [M·rows]: the heads' targets; f32 [M·rows]: each row's loss and top-1 hit. */
  readonly targets: GPUBuffer;
  /** Base rows to heads' rows and targets: the norm, (self) the greedy picks, the gather. */
  readonly prologue: readonly BoundDispatch[];
  readonly train: readonly BoundDispatch[];
  readonly evaluate: readonly BoundDispatch[];
  /** The training cross-entropies' uniforms, rewritten for the number of micro-batches. */
  readonly setMicroBatches: (n: number) => void;
  readonly lossSum: (slot: number) => readonly BoundDispatch[];
  readonly metricsSum: (slot: number) => readonly BoundDispatch[];
  readonly buffers: readonly GPUBuffer[];
  readonly dispatches: readonly BoundDispatch[];
}

export class MedusaGpuTrainer implements Trainer {
  private readonly plans = new Map<string, Promise<MedusaStepPlan>>();
  private readonly batches = new Map<number, BatchBuffers & { readonly states: GpuAttentionState[] }>();
  private readonly heads: number;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly target: MedusaTarget,
    private readonly base: GpuModelWeights,
    private readonly modelKernels: ModelKernels,
    private readonly medusaKernels: MedusaTrainKernels,
    private readonly attention: readonly GpuAttention[],
    private readonly ctx: TrainContext,
    private readonly optimizer: GpuFlatOptimizer,
    /** f32 [LOSS_SLOTS, 2·M]: per evaluation batch each head's mean loss, then each head's top-1 accuracy. */
    private readonly metrics: GPUBuffer,
    private readonly samplingConfig: GPUBuffer,
    private readonly destroyMatmuls: () => Promise<void>,
  ) {
    this.heads = config.medusa!.numHeads;
  }

  /**
   * Uploads the frozen `base` model and the `heads` (config.medusa's count) into the flat buffers (moments zero),
   * compiles the kernels and makes the base's attention layers through `factory` (forward only: any variant).
   */
  static async create(
    gpu: Gpu,
    config: ModelConfig,
    base: ModelWeights<TensorData>,
    heads: readonly MedusaHeadWeights<TensorData>[],
    target: MedusaTarget,
    factory: GpuAttentionFactory,
    options: MedusaGpuTrainerOptions = {},
  ): Promise<MedusaGpuTrainer> {
    const M = config.medusa?.numHeads ?? 0;
    if (M < 1 || heads.length !== M) throw new Error(`${config.file}: ${heads.length} Medusa heads given for "medusa": {"num_heads": ${M}}`);
    const layout = medusaLayout(config, Math.max(256, gpu.limits.minStorageBufferOffsetAlignment));
    const tensors = new Map<string, { data: ArrayLike<number> }>();
    heads.forEach((h, n) => {
      tensors.set(`medusa.${n}.proj.weight`, h.proj);
      tensors.set(`medusa.${n}.lm_head.weight`, h.lmHead);
    });
    const dims = { hidden: config.hiddenSize, vocab: config.vocabSize };
    const modelKernels = await compileModelKernels(gpu, { ...dims, intermediate: config.intermediateSize, eps: config.rmsNormEps });
    const trainKernels: TrainKernels = await compileTrainKernels(gpu, { ...dims, eps: config.rmsNormEps });
    const medusaKernels = await compileMedusaTrainKernels(gpu, dims);
    const onGpu = uploadModelWeights(gpu, config, base, options.maxWeightBuffer === undefined ? {} : { maxWeightBuffer: options.maxWeightBuffer });
    let optimizer: GpuFlatOptimizer | undefined;
    try {
      const attention = onGpu.layers.map((l, n) => {
        const a = factory(n, Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, t.buffer])));
        if (a.heads !== config.numHeads || a.headDim !== config.headDim) {
          throw new Error(`attention layer ${n} has ${a.heads} heads of ${a.headDim}, but ${config.file} has num_attention_heads ${config.numHeads}, head_dim ${config.headDim}`);
        }
        return a;
      });
      optimizer = GpuFlatOptimizer.create(gpu, trainKernels, layout, packFlat(layout, tensors), {}, { maxBinding: options.maxParamBinding });
      const metrics = gpu.device.createBuffer({ label: 'Medusa evaluation metrics', size: 4 * LOSS_SLOTS * 2 * M, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
      const matmuls = trainMatmulCache(gpu);
      const ctx: TrainContext = {
        gpu, config, model: modelKernels, kernels: trainKernels, layout: optimizer.layout, params: optimizer.params, grads: optimizer.grads, losses: optimizer.losses,
        splits: weightGradSplits(gpu, options.splitK),
        logitsBudget: Math.floor((options.logitsBlockBytes ?? 64 * 2 ** 20) / 4),
        matmul: matmuls.get,
      };
      return new MedusaGpuTrainer(gpu, config, target, onGpu, modelKernels, medusaKernels, attention, ctx, optimizer, metrics, samplingConfigBuffer(gpu.device), matmuls.destroy);
    } catch (e) {
      destroyModelWeights(onGpu);
      optimizer?.destroy();
      throw e;
    }
  }

  get layout() {
    return this.optimizer.layout;
  }

  get step(): number {
    return this.optimizer.step;
  }

  /** Buffers the frozen base's LM head is stored in (more than one over the weight limit). */
  get baseHeadParts(): number {
    return this.base.lmHead.parts.length;
  }

  trainStep(micro: readonly TokenBatch[], adam: AdamWStep): Promise<StepResult> {
    return this.optimizer.trainStep(micro.length, adam, () => this.accumulate(micro));
  }

  /** The flat gradient of the heads' mean loss over `micro` (no update) and the loss: for tests. */
  gradient(micro: readonly TokenBatch[]): Promise<{ loss: number; grads: Float32Array }> {
    return this.optimizer.gradient(micro.length, () => this.accumulate(micro));
  }

  /** The heads' targets of one batch as the GPU made them, [M][rows]: for tests (self: the GPU's greedy picks). */
  async targetsOf(batch: TokenBatch): Promise<number[][]> {
    await this.optimizer.idle();
    const plan = await this.plan(batch.b, batch.t);
    this.upload(plan, batch);
    this.submit(plan, plan.prologue, 'targets');
    const ids = new Uint32Array(await this.readBack(plan.targets, 4 * this.heads * plan.rows));
    return Array.from({ length: this.heads }, (_, n) => Array.from(ids.subarray(n * plan.rows, (n + 1) * plan.rows)));
  }

  async evaluate(batches: readonly TokenBatch[]): Promise<number> {
    return (await this.evaluateMetrics(batches)).loss;
  }

  /** The heads' mean loss over `batches` and, per head n, its loss and top-1 accuracy (`head<n>_loss`, `head<n>_top1`). */
  async evaluateMetrics(batches: readonly TokenBatch[]): Promise<Evaluation> {
    await this.optimizer.idle();
    if (batches.length === 0) throw new Error('evaluate: no batches');
    const M = this.heads;
    const loss = new Array<number>(M).fill(0);
    const top1 = new Array<number>(M).fill(0);
    let rows = 0;
    for (let at = 0; at < batches.length; at += LOSS_SLOTS) {
      const chunk = batches.slice(at, at + LOSS_SLOTS);
      const sizes: number[] = [];
      for (const [i, batch] of chunk.entries()) {
        const plan = await this.plan(batch.b, batch.t);
        this.upload(plan, batch);
        this.submit(plan, [...plan.prologue, ...plan.evaluate, ...plan.metricsSum(i)], `evaluation batch ${at + i}`);
        sizes.push(plan.rows);
      }
      const m = new Float32Array(await this.readBack(this.metrics, 4 * chunk.length * 2 * M));
      sizes.forEach((r, i) => {
        for (let n = 0; n < M; n++) {
          loss[n] += m[i * 2 * M + n] * r;
          top1[n] += m[i * 2 * M + M + n] * r;
        }
        rows += r;
      });
    }
    const metrics: Record<string, number> = {};
    for (let n = 0; n < M; n++) {
      metrics[`head${n}_loss`] = loss[n] / rows;
      metrics[`head${n}_top1`] = top1[n] / rows;
    }
    return { loss: loss.reduce((a, b) => a + b, 0) / rows / M, metrics };
  }

  snapshot(): Promise<TrainerSnapshot> {
    return this.optimizer.snapshot();
  }

  setOptimizerState(moments: OptimizerMoments, steps: number): void {
    this.optimizer.setOptimizerState(moments, steps);
  }

  async destroy(): Promise<void> {
    await this.optimizer.idle();
    for (const p of this.plans.values()) {
      const plan = await p;
      destroyStepPlan(plan.base);
      for (const b of plan.buffers) b.destroy();
      for (const d of plan.dispatches) destroyDispatch(d);
    }
    this.plans.clear();
    for (const batch of this.batches.values()) for (const b of [batch.nextTokens, batch.random, batch.logits.buffer]) b.destroy();
    this.batches.clear();
    this.metrics.destroy();
    this.samplingConfig.destroy();
    this.optimizer.destroy();
    destroyModelWeights(this.base);
    await this.destroyMatmuls();
  }

  private async accumulate(micro: readonly TokenBatch[]): Promise<void> {
    const { b, t } = micro[0];
    for (const m of micro) if (m.b !== b || m.t !== t) throw new Error(`micro-batches of one step must share a shape: [${b}, ${t}] and [${m.b}, ${m.t}]`);
    const plan = await this.plan(b, t);
    plan.setMicroBatches(micro.length);
    for (const [i, batch] of micro.entries()) {
      this.upload(plan, batch);
      this.submit(plan, [...plan.prologue, ...plan.train, ...plan.lossSum(i)], `micro-batch ${i}`);
    }
  }

  private upload(plan: MedusaStepPlan, batch: TokenBatch): void {
    const n = plan.b * plan.T;
    checkIds('batch inputs', batch.inputs, n, this.config.vocabSize, batch);
    checkIds('batch targets', batch.targets, n, this.config.vocabSize, batch);
    const q = this.gpu.device.queue;
    q.writeBuffer(plan.base.ids, 0, Uint32Array.from(batch.inputs));
    if (this.target === 'data') q.writeBuffer(plan.next, 0, Uint32Array.from(batch.targets));
  }

  /** The base's forward, then `ops`, in one pass and one submit. */
  private submit(plan: MedusaStepPlan, ops: readonly BoundDispatch[], label: string): void {
    const encoder = this.gpu.device.createCommandEncoder({ label });
    const pass = encoder.beginComputePass({ label });
    encodeStepWith(pass, plan.base, (p, n, io) => this.attention[n].encodeForward(p, io, plan.states[n], plan.b, plan.T), 'ids', 'none');
    for (const d of ops) encodeDispatch(pass, d);
    pass.end();
    this.gpu.device.queue.submit([encoder.finish()]);
  }

  private async readBack(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const { device } = this.gpu;
    const staging = device.createBuffer({ label: `readback of ${buffer.label}`, size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const encoder = device.createCommandEncoder({ label: `readback of ${buffer.label}` });
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MapMode.READ);
      const out = staging.getMappedRange().slice(0);
      staging.unmap();
      throwIfDeviceErrors(this.gpu, `reading ${buffer.label}`);
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** The buffers every plan of b windows shares (the step plan's last-row logits and picks, unused here) and the attention states. */
  private batch(b: number) {
    let batch = this.batches.get(b);
    if (!batch) {
      const { device } = this.gpu;
      batch = {
        b,
        nextTokens: device.createBuffer({ label: `chosen tokens [b=${b}]`, size: 4 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST }),
        random: device.createBuffer({ label: `uniform draws [b=${b}]`, size: 4 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST }),
        logits: createExactTensor(this.gpu, `last logits [b=${b}]`, [b, this.config.vocabSize]),
        samplingConfig: this.samplingConfig,
        // Never advanced: every forward starts from position 0 (a zero state, the chunked prefill).
        states: this.attention.map((a) => a.createState(b)),
      };
      this.batches.set(b, batch);
    }
    return batch;
  }

  private plan(b: number, T: number): Promise<MedusaStepPlan> {
    const key = `${b}:${T}`;
    let plan = this.plans.get(key);
    if (!plan) {
      plan = this.buildPlan(b, T);
      this.plans.set(key, plan);
      plan.catch(() => this.plans.delete(key));
    }
    return plan;
  }

  private async buildPlan(b: number, T: number): Promise<MedusaStepPlan> {
    const { gpu, config, ctx } = this;
    const M = this.heads;
    const t = T - M;
    if (t < 1) throw new Error(`Medusa training: windows of ${T} tokens leave no position for ${M} heads`);
    const R = b * t;
    const baseRows = b * T;
    const H = config.hiddenSize;
    const V = config.vocabSize;
    const tag = `b=${b} T=${T}`;
    const res = stepResources(gpu, tag);
    const { made, dispatches, buffer, bound } = res;
    const batch = this.batch(b);
    const base = await buildStepPlan(gpu, config, this.modelKernels, this.base, batch, T, false);
    try {
      const xn = buffer('final-normed hidden states', baseRows * H);
      const next = buffer('next tokens', baseRows);
      const picks = buffer('base greedy picks', baseRows);
      const x = buffer('heads input', R * H);
      const targets = buffer('heads targets', M * R);
      const u = buffer('proj output', R * H);
      const r = buffer('residual output', R * H);
      const dr = buffer('d residual', R * H);
      const rowLoss = buffer('row losses', M * R);
      const hits = buffer('row hits', M * R);
      const blockRows = lmHeadBlockRows(R, V, ctx.logitsBudget);
      const baseBlockRows = lmHeadBlockRows(baseRows, V, ctx.logitsBudget);
      const logits = buffer('logits block', Math.max(blockRows, baseBlockRows) * V);
      const partialFloats = splitPartialFloats(ctx, [[V, H, blockRows], [V, H, R % blockRows || blockRows], [H, H, R]]);
      const partials = partialFloats > 0 ? buffer('split-K partials', partialFloats) : undefined;
      const lossPartials = buffer('loss partials', Math.ceil((M * R) / 1024));
      const slot = (name: string) => ctx.layout.byName.get(name)!;
      const param = (name: string): Binding => floatRange(ctx.params[slot(name).group], slot(name).groupOffset, slot(name).size);
      const grad = (name: string): Binding => floatRange(ctx.grads[slot(name).group], slot(name).groupOffset, slot(name).size);

      // Base rows → heads' rows: every row normed; for self, the base LM head block by block and its argmax.
      const prologue: BoundDispatch[] = [bound(bindNormRows(gpu, this.modelKernels, { x: base.x.buffer, gain: this.base.norm.buffer, y: xn }, baseRows, `final norm, every row [${tag}]`))];
      if (this.target === 'self') {
        for (let row0 = 0; row0 < baseRows; row0 += baseBlockRows) {
          const n = Math.min(baseBlockRows, baseRows - row0);
          const z = floatRange(logits, 0, n * V);
          prologue.push(
            ...(await baseHeadOps(ctx, this.base.lmHead, floatRange(xn, row0 * H, n * H), z, n)).map(bound),
            bound(bindRowArgmax(gpu, this.medusaKernels, { z, picks }, { rows: n, row0 }, `base greedy picks, rows ${row0}.. [${tag}]`)),
          );
        }
      }
      prologue.push(bound(bindMedusaRows(gpu, this.medusaKernels, { xn, src: this.target === 'self' ? picks : next, x, targets }, { b, T, t, M }, `medusa rows [${tag}]`)));

      const train: BoundDispatch[] = [];
      const evaluate: BoundDispatch[] = [];
      const lossUniforms: { buffer: GPUBuffer; rows: number; row0: number }[] = [];
      for (let n = 0; n < M; n++) {
        const P = `medusa.${n}.proj.weight`;
        const L = `medusa.${n}.lm_head.weight`;
        const head = `head ${n}`;
        const forward = [
          bound(await forwardMatmulOp(ctx, x, param(P), u, R, H, H)),
          bound(bindMedusaResidual(gpu, this.medusaKernels, { x, u, r }, R * H, `${head} residual [${tag}]`)),
        ];
        train.push(...forward);
        evaluate.push(...forward);
        for (let row0 = 0; row0 < R; row0 += blockRows) {
          const rr = Math.min(blockRows, R - row0);
          const rBlock = floatRange(r, row0 * H, rr * H);
          const z = floatRange(logits, 0, rr * V);
          const what = `${head} rows ${row0}..${row0 + rr - 1}`;
          const logitsOp = bound(await forwardMatmulOp(ctx, rBlock, param(L), z, rr, H, V));
          evaluate.push(
            logitsOp,
            bound(bindRowHits(gpu, this.medusaKernels, { z, targets, hits }, { rows: rr, row0: n * R + row0 }, `${what} hits [${tag}]`)),
            bound(bindCrossEntropy(gpu, ctx.kernels, { z, targets, loss: rowLoss }, { rows: rr, row0: n * R + row0, scale: undefined }, `${what} loss [${tag}]`)),
          );
          const lossAndGrad = bound(bindCrossEntropy(gpu, ctx.kernels, { z, targets, loss: rowLoss }, { rows: rr, row0: n * R + row0, scale: 1 / (R * M) }, `${what} loss and dlogits [${tag}]`));
          lossUniforms.push({ buffer: lossAndGrad.owned[0], rows: rr, row0: n * R + row0 });
          train.push(
            logitsOp,
            lossAndGrad,
            ...(await weightGradOps(ctx, partials, z, rBlock, grad(L), rr, H, V, `${what} lm_head K splits [${tag}]`)).map(bound),
            bound(await inputGradOp(ctx, z, param(L), floatRange(dr, row0 * H, rr * H), rr, H, V, false)),
          );
        }
        train.push(
          bound(bindMedusaResidualBackward(gpu, this.medusaKernels, { u, d: dr }, R * H, `${head} residual backward [${tag}]`)),
          ...(await weightGradOps(ctx, partials, dr, x, grad(P), R, H, H, `${head} proj K splits [${tag}]`)).map(bound),
        );
      }

      // The mean over heads and rows into a loss slot; per head, its mean loss and top-1 into a metrics slot.
      const perBlock = 1024;
      const partialCount = Math.ceil((M * R) / perBlock);
      const sumRowLosses = bound(bindSumBlocks(gpu, ctx.kernels, { x: rowLoss, out: lossPartials }, { count: M * R, perBlock, outIndex: 0, scale: 1, square: false }, `row losses [${tag}]`));
      const lossSlots = new Map<number, readonly BoundDispatch[]>();
      const lossSum = (s: number): readonly BoundDispatch[] => {
        let ops = lossSlots.get(s);
        if (!ops) {
          const mean = bindSumBlocks(gpu, ctx.kernels, { x: lossPartials, out: ctx.losses }, { count: partialCount, perBlock: partialCount, outIndex: s, scale: 1 / (M * R), square: false }, `mean loss → slot ${s} [${tag}]`);
          lossSlots.set(s, (ops = [sumRowLosses, bound(mean)]));
        }
        return ops;
      };
      const metricSlots = new Map<number, readonly BoundDispatch[]>();
      const metricsSum = (s: number): readonly BoundDispatch[] => {
        let ops = metricSlots.get(s);
        if (!ops) {
          ops = [
            bound(bindSumBlocks(gpu, ctx.kernels, { x: rowLoss, out: this.metrics }, { count: M * R, perBlock: R, outIndex: s * 2 * M, scale: 1 / R, square: false }, `head losses → slot ${s} [${tag}]`)),
            bound(bindSumBlocks(gpu, ctx.kernels, { x: hits, out: this.metrics }, { count: M * R, perBlock: R, outIndex: s * 2 * M + M, scale: 1 / R, square: false }, `head top-1 → slot ${s} [${tag}]`)),
          ];
          metricSlots.set(s, ops);
        }
        return ops;
      };
      let micro = 1;
      const setMicroBatches = (count: number) => {
        if (count === micro) return;
        for (const l of lossUniforms) gpu.device.queue.writeBuffer(l.buffer, 0, crossEntropyParams(l.rows, l.row0, 1 / (R * M * count), true));
        micro = count;
      };
      return {
        b, T, rows: R, base, states: batch.states, next, targets, prologue, train, evaluate, setMicroBatches, lossSum, metricsSum,
        buffers: made, dispatches,
      };
    } catch (e) {
      destroyStepPlan(base);
      res.destroy();
      throw e;
    }
  }
}

/**
 * z[n, V] = xn·lm_headᵀ for the base's LM head stored in parts of whole rows: one matmul per part, part p's
 * columns [first, first + rows) of z through the matmul's window. One part is exactly the unsplit matmul.
 */
async function baseHeadOps(ctx: TrainContext, head: RowParts, xn: BufferRange, z: BufferRange, n: number): Promise<BoundDispatch[]> {
  const [V, H] = head.shape;
  if (head.parts.length === 1) return [await forwardMatmulOp(ctx, xn, head.parts[0].tensor.buffer, z, n, H, V)];
  const ops: BoundDispatch[] = [];
  for (const p of head.parts) {
    const plan = await ctx.matmul({ M: n, N: p.rows, K: H, transposeB: true, fusion: { window: { stride: V, offset: p.first, first: p.first } } });
    ops.push(bindMatmulRanges(ctx.gpu, plan, { a: xn, w: p.tensor.buffer, c: z }));
  }
  return ops;
}
