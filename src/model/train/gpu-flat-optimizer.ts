// What every GPU trainer keeps and does around its own forward and backward: the flat parameter, gradient and
// AdamW moment buffers of one layout (param-layout.ts), the step that ends with one gradient-norm reduction and
// one AdamW dispatch per group, and the readbacks. A layout over one storage binding is cut into groups
// (groupLayout), a buffer of each kind per group: the squares of every group's gradient go into one partials
// buffer, reduced to one global norm² before any group's AdamW reads it, so clipping stays global. gpu-trainer.ts (the decoder LM) and medusa-gpu-trainer.ts (Medusa heads
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
import { groupLayout, packFlat, type ParamLayout } from './param-layout.ts';
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

export interface FlatOptimizerOptions {
  /** Bytes one group's buffer may hold, below the adapter's binding limit (tests cut a tiny layout into groups). */
  readonly maxBinding?: number;
}

/** Makes f32 storage buffers (copy source and destination) of `floats` floats, each pushed onto `owned` for its owner to destroy. */
export function flatBuffers(device: GPUDevice, owned: GPUBuffer[]): (label: string, floats: number) => GPUBuffer {
  return (label, floats) => {
    const b = device.createBuffer({ label, size: floats * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    owned.push(b);
    return b;
  };
}

export class GpuFlatOptimizer {
  private readonly staging: GPUBuffer[];
  private readonly pending: (Promise<unknown> | undefined)[] = [undefined, undefined];
  private steps = 0;
  /** Settles when the last trainStep called has been submitted. */
  private submission: Promise<void> = Promise.resolve();
  private readonly normDispatches: BoundDispatch[];
  private readonly adamw: BoundDispatch[];

  private constructor(
    readonly gpu: Gpu,
    /** The layout grouped for this adapter: a kernel binds slot s in params[s.group] at s.groupOffset. */
    readonly layout: ParamLayout,
    /** One buffer per layout group. */
    readonly params: readonly GPUBuffer[],
    readonly grads: readonly GPUBuffer[],
    /** f32 [LOSS_SLOTS]: the mean loss of each micro-batch (or evaluation batch) of a round. */
    readonly losses: GPUBuffer,
    private readonly m: readonly GPUBuffer[],
    private readonly v: readonly GPUBuffer[],
    private readonly stats: GPUBuffer,
    /** AdamW's uniform per group (its float count and tensor count differ). */
    private readonly adamUniforms: readonly GPUBuffer[],
    private readonly owned: GPUBuffer[],
    kernels: TrainKernels,
    private readonly hooks: OptimizerHooks,
  ) {
    const { device } = gpu;
    this.staging = [0, 1].map((i) => device.createBuffer({ label: `step readback ${i}`, size: 4 * (LOSS_SLOTS + 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }));
    const total = layout.totalFloats;
    const perBlock = Math.max(4096, Math.ceil(total / NORM_BLOCKS_MAX / 256) * 256);
    // Each group's squares fill its own run of blocks of one partials buffer; one reduction sums them all.
    const firstBlock: number[] = [];
    let blocks = 0;
    for (const g of layout.groups) {
      firstBlock.push(blocks);
      blocks += Math.ceil(g.floats / perBlock);
    }
    const partials = device.createBuffer({ label: 'gradient norm partials', size: 4 * blocks, usage: BufferUsage.STORAGE });
    owned.push(partials);
    this.normDispatches = [
      ...layout.groups.map((g, i) =>
        bindSumBlocks(gpu, kernels, { x: grads[i], out: partials }, { count: g.floats, perBlock, outIndex: firstBlock[i], scale: 1, square: true }, `gradient squares, group ${i}`)),
      bindSumBlocks(gpu, kernels, { x: partials, out: stats }, { count: blocks, perBlock: blocks, outIndex: 0, scale: 1, square: false }, 'gradient norm²'),
    ];
    this.adamw = layout.groups.map((g, i) => {
      const slots = layout.slots.filter((s) => s.group === i);
      const table = device.createBuffer({ label: `parameter table, group ${i}`, size: 12 * slots.length, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      device.queue.writeBuffer(table, 0, Uint32Array.from(slots.flatMap((s) => [s.groupOffset, s.groupOffset + s.size, s.decay ? 1 : 0])));
      owned.push(table);
      return bindAdamW(gpu, kernels, { p: params[i], g: grads[i], m: m[i], v: v[i], table, stats, params: adamUniforms[i] }, g.floats, `AdamW, group ${i}`);
    });
  }

  /** The flat buffers of `layout` with the parameters `initial` (packed, the layout's) and zero moments. */
  static create(
    gpu: Gpu, kernels: TrainKernels, flatLayout: ParamLayout, initial: Float32Array<ArrayBuffer>, hooks: OptimizerHooks = {}, options: FlatOptimizerOptions = {},
  ): GpuFlatOptimizer {
    if (initial.length !== flatLayout.totalFloats) throw new Error(`optimizer: ${initial.length} initial floats for a layout of ${flatLayout.totalFloats}`);
    const maxBind = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize, options.maxBinding ?? Infinity);
    const layout = groupLayout(flatLayout, maxBind);
    const { device } = gpu;
    const owned: GPUBuffer[] = [];
    const flat = flatBuffers(device, owned);
    try {
      const perGroup = (label: string) => layout.groups.map((g, i) => flat(layout.groups.length > 1 ? `${label}, group ${i}` : label, g.floats));
      const params = perGroup('parameters');
      layout.groups.forEach((g, i) => device.queue.writeBuffer(params[i], 0, initial, g.start, g.floats)); // offset and size in elements
      const grads = perGroup('gradients');
      const m = perGroup('AdamW m');
      const v = perGroup('AdamW v');
      const stats = flat('gradient norm²', 4);
      const losses = flat('micro-batch losses', LOSS_SLOTS);
      const adamUniforms = layout.groups.map((_, i) => {
        const u = device.createBuffer({ label: `AdamW step, group ${i}`, size: 48, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
        owned.push(u);
        return u;
      });
      return new GpuFlatOptimizer(gpu, layout, params, grads, losses, m, v, stats, adamUniforms, owned, kernels, hooks);
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
    this.layout.groups.forEach((g, i) => {
      const tensors = this.layout.slots.filter((s) => s.group === i).length;
      device.queue.writeBuffer(this.adamUniforms[i], 0, adamwParams(adam, g.floats, tensors));
    });
    const encoder = device.createCommandEncoder({ label: `optimiser step ${adam.step}` });
    this.hooks.gatherGrads?.(encoder);
    const pass = encoder.beginComputePass({ label: `gradient norm and AdamW, step ${adam.step}` });
    for (const d of this.normDispatches) encodeDispatch(pass, d);
    for (const d of this.adamw) encodeDispatch(pass, d);
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
    const [m, v] = [packFlat(this.layout, moments.m), packFlat(this.layout, moments.v)];
    this.layout.groups.forEach((g, i) => {
      this.gpu.device.queue.writeBuffer(this.m[i], 0, m, g.start, g.floats);
      this.gpu.device.queue.writeBuffer(this.v[i], 0, v, g.start, g.floats);
    });
    this.steps = steps;
  }

  /** Frees the buffers; call after idle(). */
  destroy(): void {
    for (const b of [...this.owned, ...this.staging]) b.destroy();
    for (const d of [...this.normDispatches, ...this.adamw]) destroyDispatch(d);
  }

  /** Zeroes the flat gradient, then lets the caller submit `count` micro-batches into it. */
  private async zeroThen(count: number, accumulate: () => Promise<void>): Promise<void> {
    if (count < 1 || count > LOSS_SLOTS) throw new Error(`a step takes 1..${LOSS_SLOTS} micro-batches, got ${count}`);
    const clear = this.gpu.device.createCommandEncoder({ label: 'zero gradients' });
    for (const g of this.grads) clear.clearBuffer(g);
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

  /** The groups' buffers of one kind (parameters, gradients or a moment) read back and packed in layout order. */
  async readFlat(buffers: readonly GPUBuffer[]): Promise<Float32Array> {
    const { device } = this.gpu;
    const out = new Float32Array(this.layout.totalFloats);
    // One group at a time: a staging buffer never exceeds the largest group.
    for (const [i, g] of this.layout.groups.entries()) {
      const buffer = buffers[i];
      const staging = device.createBuffer({ label: `readback of ${buffer.label}`, size: g.floats * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      try {
        const encoder = device.createCommandEncoder({ label: `readback of ${buffer.label}` });
        encoder.copyBufferToBuffer(buffer, 0, staging, 0, g.floats * 4);
        device.queue.submit([encoder.finish()]);
        await staging.mapAsync(MapMode.READ);
        out.set(new Float32Array(staging.getMappedRange()), g.start);
        staging.unmap();
        throwIfDeviceErrors(this.gpu, `reading ${buffer.label}`);
      } finally {
        staging.destroy();
      }
    }
    return out;
  }
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
