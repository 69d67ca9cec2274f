// What every GPU trainer keeps and does around its own forward and backward: the flat parameter, gradient and
// AdamW moment buffers of one layout (param-layout.ts), the step that ends with one gradient-norm reduction and
// one AdamW dispatch, and the readbacks. gpu-trainer.ts (the decoder LM) and medusa-gpu-trainer.ts (Medusa heads
// on a frozen base) differ only in what a micro-batch records; both hand that to trainStep as `accumulate`.
//
// A step is submitted in call order: zero the gradients, each micro-batch's commands (the caller's, writing its
// mean loss into its slot of `losses`), then one submit for the optimiser: the hooks' copies into the gradient,
// the norm and AdamW, the hooks' copies out of the parameters, and the losses and norm into one of two staging
// buffers. The host may read step s's losses while step s + 1 already runs on the GPU.
import { adamwParams, type AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from '../../runtime/device.ts';
import { destroyDispatch, encodeDispatch, type BoundDispatch } from '../../runtime/model-kernels.ts';
import { bindAdamW, bindSumBlocks, type TrainKernels } from '../../runtime/train-kernels.ts';
import { packFlat, type ParamLayout } from './param-layout.ts';
import type { OptimizerMoments, StepResult, TrainerSnapshot } from './trainer.ts';

/** Micro-batch losses one readback holds (and evaluation batches per submit round). */
export const LOSS_SLOTS = 256;
const NORM_BLOCKS_MAX = 4096;

export interface OptimizerHooks {
  /** Records copies into the flat gradient before its norm is taken (gradients kept in buffers of their own). */
  readonly gatherGrads?: (encoder: GPUCommandEncoder) => void;
  /** Records copies out of the updated flat parameters (parameters kept in buffers of their own as well). */
  readonly scatterParams?: (encoder: GPUCommandEncoder) => void;
}

export class GpuFlatOptimizer {
  private readonly staging: GPUBuffer[];
  private readonly pending: (Promise<unknown> | undefined)[] = [undefined, undefined];
  private steps = 0;
  /** Settles when the last trainStep called has been submitted. */
  private submission: Promise<void> = Promise.resolve();
  private readonly normDispatches: BoundDispatch[];
  private readonly adamw: BoundDispatch;

  private constructor(
    readonly gpu: Gpu,
    readonly layout: ParamLayout,
    readonly params: GPUBuffer,
    readonly grads: GPUBuffer,
    /** f32 [LOSS_SLOTS]: the mean loss of each micro-batch (or evaluation batch) of a round. */
    readonly losses: GPUBuffer,
    private readonly m: GPUBuffer,
    private readonly v: GPUBuffer,
    private readonly stats: GPUBuffer,
    private readonly adamUniform: GPUBuffer,
    private readonly owned: GPUBuffer[],
    kernels: TrainKernels,
    private readonly hooks: OptimizerHooks,
  ) {
    const { device } = gpu;
    this.staging = [0, 1].map((i) => device.createBuffer({ label: `step readback ${i}`, size: 4 * (LOSS_SLOTS + 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }));
    const total = layout.totalFloats;
    const perBlock = Math.max(4096, Math.ceil(total / NORM_BLOCKS_MAX / 256) * 256);
    const blocks = Math.ceil(total / perBlock);
    const partials = device.createBuffer({ label: 'gradient norm partials', size: 4 * blocks, usage: BufferUsage.STORAGE });
    owned.push(partials);
    this.normDispatches = [
      bindSumBlocks(gpu, kernels, { x: grads, out: partials }, { count: total, perBlock, outIndex: 0, scale: 1, square: true }, 'gradient squares'),
      bindSumBlocks(gpu, kernels, { x: partials, out: stats }, { count: blocks, perBlock: blocks, outIndex: 0, scale: 1, square: false }, 'gradient norm²'),
    ];
    const table = device.createBuffer({ label: 'parameter table', size: 12 * layout.slots.length, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    device.queue.writeBuffer(table, 0, Uint32Array.from(layout.slots.flatMap((s) => [s.offset, s.offset + s.size, s.decay ? 1 : 0])));
    owned.push(table);
    this.adamw = bindAdamW(gpu, kernels, { p: params, g: grads, m, v, table, stats, params: adamUniform }, total, 'AdamW');
  }

  /** The flat buffers of `layout` with the parameters `initial` (packed, the layout's) and zero moments. */
  static create(gpu: Gpu, kernels: TrainKernels, layout: ParamLayout, initial: Float32Array<ArrayBuffer>, hooks: OptimizerHooks = {}): GpuFlatOptimizer {
    if (initial.length !== layout.totalFloats) throw new Error(`optimizer: ${initial.length} initial floats for a layout of ${layout.totalFloats}`);
    const maxBind = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    if (layout.totalFloats * 4 > maxBind) {
      throw new Error(`the model's ${layout.totalFloats} parameters (${(layout.totalFloats * 4 / 2 ** 20).toFixed(1)} MiB) exceed one storage binding on ${gpu.adapterName} (${maxBind} bytes)`);
    }
    const { device } = gpu;
    const owned: GPUBuffer[] = [];
    const flat = (label: string, floats: number) => {
      const b = device.createBuffer({ label, size: floats * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
      owned.push(b);
      return b;
    };
    try {
      const params = flat('parameters', layout.totalFloats);
      device.queue.writeBuffer(params, 0, initial);
      const grads = flat('gradients', layout.totalFloats);
      const m = flat('AdamW m', layout.totalFloats);
      const v = flat('AdamW v', layout.totalFloats);
      const stats = flat('gradient norm²', 4);
      const losses = flat('micro-batch losses', LOSS_SLOTS);
      const adamUniform = device.createBuffer({ label: 'AdamW step', size: 48, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      owned.push(adamUniform);
      return new GpuFlatOptimizer(gpu, layout, params, grads, losses, m, v, stats, adamUniform, owned, kernels, hooks);
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
   * One optimiser step over `count` micro-batches: `accumulate` zeroes nothing and submits each micro-batch's
   * gradient (added into `grads`, which this zeroes first) and mean loss (slot i of `losses`); then the clipped
   * AdamW update with `adam` (its `step` must be this.step + 1). Resolves once the step's losses are read back;
   * a next step may be submitted before that.
   */
  trainStep(count: number, adam: AdamWStep, accumulate: () => Promise<void>): Promise<StepResult> {
    if (adam.step !== this.steps + 1) return Promise.reject(new Error(`trainStep: AdamW step ${adam.step} after ${this.steps} steps`));
    this.steps++;
    // Steps are submitted in call order: each waits for the previous one's submission (not its completion).
    const submitted = this.submission.then(() => this.submitStep(count, adam, accumulate));
    this.submission = submitted.then(() => undefined, () => undefined);
    return submitted.then((read) => read());
  }

  private async submitStep(count: number, adam: AdamWStep, accumulate: () => Promise<void>): Promise<() => Promise<StepResult>> {
    const ring = adam.step % 2;
    await this.pending[ring];
    await this.zeroThen(count, accumulate);
    const { device } = this.gpu;
    device.queue.writeBuffer(this.adamUniform, 0, adamwParams(adam, this.layout.totalFloats, this.layout.slots.length));
    const encoder = device.createCommandEncoder({ label: `optimiser step ${adam.step}` });
    this.hooks.gatherGrads?.(encoder);
    const pass = encoder.beginComputePass({ label: `gradient norm and AdamW, step ${adam.step}` });
    for (const d of this.normDispatches) encodeDispatch(pass, d);
    encodeDispatch(pass, this.adamw);
    pass.end();
    this.hooks.scatterParams?.(encoder);
    const staging = this.staging[ring];
    encoder.copyBufferToBuffer(this.losses, 0, staging, 0, 4 * count);
    encoder.copyBufferToBuffer(this.stats, 0, staging, 4 * LOSS_SLOTS, 4);
    device.queue.submit([encoder.finish()]);
    const result = this.read(staging, count, `training step ${adam.step}`).then(({ losses, norm2 }) => ({
      loss: mean(losses),
      gradNorm: Math.sqrt(norm2),
      skipped: !Number.isFinite(norm2),
    }));
    this.pending[ring] = result.catch(() => undefined);
    return () => result;
  }

  /** The flat gradient of the mean loss over `count` micro-batches that `accumulate` submits (no update): for tests. */
  async gradient(count: number, accumulate: () => Promise<void>): Promise<{ loss: number; grads: Float32Array }> {
    await this.idle();
    await this.zeroThen(count, accumulate);
    const encoder = this.gpu.device.createCommandEncoder({ label: 'gradient' });
    this.hooks.gatherGrads?.(encoder);
    this.gpu.device.queue.submit([encoder.finish()]);
    const grads = await this.readFlat(this.grads);
    return { loss: mean(await this.readLosses(count, 'gradient')), grads };
  }

  /** The first `count` slots of `losses`, read after everything submitted so far (evaluation). */
  async readLosses(count: number, what: string): Promise<number[]> {
    return (await this.read(this.staging[0], count, what, true)).losses;
  }

  /** Every step called so far submitted and read back. */
  async idle(): Promise<void> {
    await this.submission;
    await Promise.all(this.pending);
  }

  /** The parameters, flat (the layout's). */
  async readParams(): Promise<Float32Array> {
    await this.idle();
    return this.readFlat(this.params);
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

  /** Frees the buffers; call after idle(). */
  destroy(): void {
    for (const b of [...this.owned, ...this.staging]) b.destroy();
    for (const d of [...this.normDispatches, this.adamw]) destroyDispatch(d);
  }

  /** Zeroes the flat gradient, then lets the caller submit `count` micro-batches into it. */
  private async zeroThen(count: number, accumulate: () => Promise<void>): Promise<void> {
    if (count < 1 || count > LOSS_SLOTS) throw new Error(`a step takes 1..${LOSS_SLOTS} micro-batches, got ${count}`);
    const clear = this.gpu.device.createCommandEncoder({ label: 'zero gradients' });
    clear.clearBuffer(this.grads);
    this.gpu.device.queue.submit([clear.finish()]);
    await accumulate();
  }

  private async read(staging: GPUBuffer, count: number, what: string, copy = false): Promise<{ losses: number[]; norm2: number }> {
    if (copy) {
      const encoder = this.gpu.device.createCommandEncoder({ label: `${what} readback` });
      encoder.copyBufferToBuffer(this.losses, 0, staging, 0, 4 * count);
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

  /** A whole flat buffer of the layout (parameters, gradients or a moment), read back. */
  async readFlat(buffer: GPUBuffer): Promise<Float32Array> {
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
