// A compiled variant as a trainable attention layer (TrainableGpuAttention, src/runtime/gpu-attention.ts): decoding
// as compiled-attention.ts does it, and for training
//   encodeTrainForward  the fused chunked forward from a zero state (keeping each normalised item's n and z when
//                       the backward reads them instead of recomputing them);
//   encodeBackward      the fused gradient plan (backends/wgsl/grad-lower.ts): dq, dk, dv written, each
//                       parameter's gradient added into the trainer's buffer.
// Scratch between the two (the gradient's intermediates, the kept normalisers) is the layer's own, one set per
// (b, t); bind groups are kept per set of buffers, as compiled-attention.ts keeps them.
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import { lowerChunked, normalisedItems } from '../../backends/wgsl/lower.ts';
import type { GradPlan } from '../../backends/wgsl/grad-lower.ts';
import { differentiate } from '../../passes/autodiff.ts';
import type { Program } from '../ir/types.ts';
import { compiledAttentionFactory, variantAxisSizes } from './compiled-attention.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import type { BackwardIo, GpuAttention, GpuAttentionFactory, GpuAttentionState, TrainableGpuAttention, TrainForwardIo } from './gpu-attention.ts';
import { GradRunner, type BoundGrad } from './grad-runner.ts';
import { gradPlanFor, trainForwardSchedule, type GradPlanRequest } from './gradient.ts';
import { bufferId } from './buffer-ids.ts';

export interface TrainableOptions {
  /**
   * Keep the normalisers in the forward for the backward (default) rather than recompute them in the backward
   * (fla's choice): DEVELOPERS.md has the measured trade.
   */
  readonly store?: boolean;
  /** The training kernels' chunk schedule (default: the forward's and the gradient's defaults for the adapter; on a software one the gradient's for both). */
  readonly schedule?: ChunkSchedule;
  /**
   * Sequences per micro-batch the layers train at (linattn train's --batch): without `schedule`, a hardware
   * adapter's gradient plan narrows its column tiles to fill the GPU for it (grad-schedule.ts fillGrid); a plan
   * built without it keeps the default columns whatever the batch, which at b 1 leaves most compute units idle.
   */
  readonly batch?: number;
}

/** The backward's plan request: fused, accumulating the parameters' gradients, at the training micro-batch. */
export function trainingGradRequest(opts: TrainableOptions, store: boolean): GradPlanRequest {
  return {
    fuse: true,
    accumulate: true,
    stored: store,
    ...(opts.schedule && { schedule: opts.schedule }),
    ...(opts.batch !== undefined && { batch: opts.batch }),
  };
}

/** Compiles the decoding, training-forward and backward plans once for the model's shapes. */
export async function trainableAttentionFactory(gpu: Gpu, program: Program, source: Program, heads: number, headDim: number, opts: TrainableOptions = {}): Promise<GpuAttentionFactory> {
  const decode = await compiledAttentionFactory(gpu, program, heads, headDim);
  const sizes = variantAxisSizes(source, heads, headDim);
  const store = (opts.store ?? true) && normalisedItems(program).length > 0;
  const forward = lowerChunked(program, sizes, { fuse: true, schedule: opts.schedule ?? trainForwardSchedule(gpu, program, sizes), keepNormalisers: store });
  const grad = gradPlanFor(gpu, differentiate(source), sizes, trainingGradRequest(opts, store));
  const [fwd, back] = await Promise.all([PlanRunner.create(gpu, forward), GradRunner.create(gpu, grad)]);
  return (layer, params) => new TrainableCompiledAttention(gpu, decode(layer, params), layer, params, fwd, back);
}

class TrainableCompiledAttention implements TrainableGpuAttention {
  private readonly scratch = new Map<string, Record<string, GPUBuffer>>();
  private readonly forwardBinds = new Map<string, ReturnType<PlanRunner['bind']>>();
  private readonly backwardBinds = new Map<string, BoundGrad>();

  constructor(
    private readonly gpu: Gpu,
    private readonly inner: GpuAttention,
    private readonly layer: number,
    private readonly params: Readonly<Record<string, GPUBuffer>>,
    private readonly forward: PlanRunner,
    private readonly backward: GradRunner,
  ) {}

  get heads(): number {
    return this.inner.heads;
  }

  get headDim(): number {
    return this.inner.headDim;
  }

  createState(b: number): GpuAttentionState {
    return this.inner.createState(b);
  }

  async prepareBatch(b: number): Promise<void> {
    await this.inner.prepareBatch?.(b);
  }

  encodeForward(pass: GPUComputePassEncoder, io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }, state: GpuAttentionState, b: number, t: number): void {
    this.inner.encodeForward(pass, io, state, b, t);
  }

  advance(state: GpuAttentionState, t: number): void {
    this.inner.advance(state, t);
  }

  encodeTrainForward(pass: GPUComputePassEncoder, io: TrainForwardIo, b: number, t: number): void {
    const key = `${[io.q, io.k, io.v, io.o].map(bufferId).join(',')}:${b}x${t}`;
    let bound = this.forwardBinds.get(key);
    if (!bound) {
      const all = { 'in:q': io.q, 'in:k': io.k, 'in:v': io.v, 'out:o': io.o, ...this.paramBuffers(), ...this.scratchFor(b, t) };
      this.forwardBinds.set(key, (bound = this.forward.bind(all, b, t)));
    }
    this.forward.encode(pass, bound);
  }

  encodeBackward(pass: GPUComputePassEncoder, io: BackwardIo, grads: Readonly<Record<string, GPUBuffer>>, b: number, t: number): void {
    const plan: GradPlan = this.backward.plan;
    const names = Object.keys(this.params).sort();
    for (const n of names) if (!grads[n]) throw new Error(`layer ${this.layer}: no gradient buffer for parameter '${n}'`);
    const key = `${[io.q, io.k, io.v, io.do, io.dq, io.dk, io.dv, ...names.map((n) => grads[n])].map(bufferId).join(',')}:${b}x${t}`;
    let bound = this.backwardBinds.get(key);
    if (!bound) {
      const all: Record<string, GPUBuffer> = { 'in:q': io.q, 'in:k': io.k, 'in:v': io.v, 'in:do': io.do, 'grad:dq': io.dq, 'grad:dk': io.dk, 'grad:dv': io.dv, ...this.paramBuffers(), ...this.scratchFor(b, t) };
      for (const n of names) all[`grad:d${n}`] = grads[n];
      for (const g of plan.gradients) if (!all[g.buffer]) throw new Error(`layer ${this.layer}: the gradient plan writes ${g.name}, which the seam has no buffer for`);
      this.backwardBinds.set(key, (bound = this.backward.bind(all, b, t)));
    }
    this.backward.encode(pass, bound);
  }

  private paramBuffers(): Record<string, GPUBuffer> {
    return Object.fromEntries(Object.entries(this.params).map(([k, v]) => [`param:${k}`, v]));
  }

  /** The layer's scratch for (b, t): the gradient's intermediates and the normalisers the forward keeps. */
  private scratchFor(b: number, t: number): Record<string, GPUBuffer> {
    const key = `${b}x${t}`;
    let s = this.scratch.get(key);
    if (!s) {
      s = {};
      const own = [...this.forward.plan.buffers.filter((x) => x.name.startsWith('keep:')), ...this.backward.plan.buffers.filter((x) => x.role === 'scratch')];
      for (const buf of own) {
        s[buf.name] = this.gpu.device.createBuffer({ label: `layer ${this.layer} ${buf.name} (${key})`, size: Math.max(4, buf.floats(b, t) * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
      }
      this.scratch.set(key, s);
    }
    return s;
  }
}

