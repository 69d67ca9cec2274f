// Runs a compiled plan on a Dawn device: compiles its kernels (cached), binds buffers, encodes every launch
// into one compute pass, and reads the output back. Nothing here knows about attention.
import type { Kernel, Plan } from '../../backends/wgsl/plan.ts';
import { numel, type Tensor } from '../tensor.ts';
import { BufferUsage, throwIfDeviceErrors, type Gpu } from './device.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from './gpu-tensor.ts';
import { compileKernel } from './pipeline-cache.ts';

export interface Bound {
  readonly b: number;
  readonly t: number;
  readonly groups: readonly GPUBindGroup[];
  readonly dims: GPUBuffer;
}

export class PlanRunner {
  private constructor(
    readonly gpu: Gpu,
    readonly plan: Plan,
    private readonly pipelines: readonly GPUComputePipeline[],
  ) {}

  static async create(gpu: Gpu, plan: Plan): Promise<PlanRunner> {
    const pipelines = await Promise.all(
      plan.kernels.map((k) =>
        compileKernel(gpu, {
          label: k.label,
          code: k.code,
          bindings: ['uniform', ...k.bindings.map((b) => (b.write ? 'storage' : 'read-only-storage') as 'storage' | 'read-only-storage')],
        }),
      ),
    );
    return new PlanRunner(gpu, plan, pipelines);
  }

  /**
   * Bind groups for the plan's kernels over the given buffers (every plan buffer must be present). The dims uniform
   * is `dimsBuffer` (written here with b, t, pos0), or a buffer of its own; or, given a slot — 16 bytes at an offset
   * that is a multiple of 256 — those, which the GPU fills (chained speculation): nothing is written there, since a
   * write from the queue would land between submits already in flight and the GPU's own.
   */
  bind(buffers: Readonly<Record<string, GPUBuffer>>, b: number, t: number, pos0 = 0, dimsBuffer?: GPUBuffer | { readonly buffer: GPUBuffer; readonly offset: number }): Bound {
    const slot = dimsBuffer && 'offset' in dimsBuffer ? dimsBuffer : undefined;
    const dims = slot?.buffer ?? (dimsBuffer as GPUBuffer | undefined) ?? this.gpu.device.createBuffer({ label: `${this.plan.variant} dims`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    const dimsOffset = slot?.offset ?? 0;
    if (!slot) this.gpu.device.queue.writeBuffer(dims, 0, Uint32Array.of(b, t, pos0, 0));
    const groups = this.plan.kernels.map((k: Kernel, n) => {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: dims, offset: dimsOffset, size: 16 } }];
      k.bindings.forEach((bd, i) => {
        const buf = buffers[bd.buffer];
        if (!buf) throw new Error(`kernel ${k.label}: no buffer bound for '${bd.buffer}'`);
        entries.push({ binding: i + 1, resource: { buffer: buf } });
      });
      return this.gpu.device.createBindGroup({ label: k.label, layout: this.pipelines[n].getBindGroupLayout(0), entries });
    });
    return { b, t, groups, dims };
  }

  /** Records every launch of the plan into `pass`, but for those with an empty grid (recurrent-commit.ts at t = 1). */
  encode(pass: GPUComputePassEncoder, bound: Bound): void {
    this.plan.kernels.forEach((k, n) => {
      const [x, y, z] = k.workgroups(bound.b, bound.t);
      if (x * y * z === 0) return;
      pass.setPipeline(this.pipelines[n]);
      pass.setBindGroup(0, bound.groups[n]);
      pass.dispatchWorkgroups(x, y, z);
    });
  }

  /** Allocates the plan's buffers for (b, t), uploading inputs and params from host tensors. */
  allocate(tensors: Readonly<Record<string, Tensor>>, b: number, t: number): Record<string, GpuTensor> {
    const out: Record<string, GpuTensor> = {};
    for (const buf of this.plan.buffers) {
      const shape = buf.shape(b, t);
      if (buf.role === 'input' || buf.role === 'param') {
        const name = buf.name.slice(buf.name.indexOf(':') + 1);
        const host = tensors[name];
        if (!host) throw new Error(`missing ${buf.role} '${name}' [${shape.join(', ')}]`);
        if (host.shape.join() !== shape.join()) throw new Error(`${buf.role} '${name}' has shape [${host.shape.join(', ')}], expected [${shape.join(', ')}]`);
        out[buf.name] = uploadTensor(this.gpu, buf.name, host);
      } else {
        out[buf.name] = allocTensor(this.gpu, buf.name, numel(shape) > 0 ? shape : [1]);
        if (buf.role === 'state') this.gpu.device.queue.writeBuffer(out[buf.name].buffer, 0, new Float32Array(numel(shape)));
      }
    }
    return out;
  }

  release(tensors: Record<string, GpuTensor>): void {
    for (const t of Object.values(tensors)) releaseTensor(this.gpu, t);
  }

  /** One full run: upload, one compute pass, read back o. */
  async run(tensors: Readonly<Record<string, Tensor>>, b: number, t: number): Promise<Tensor<Float32Array>> {
    const bufs = this.allocate(tensors, b, t);
    try {
      const bound = this.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), b, t);
      const enc = this.gpu.device.createCommandEncoder({ label: this.plan.variant });
      const pass = enc.beginComputePass({ label: this.plan.variant });
      this.encode(pass, bound);
      pass.end();
      this.gpu.device.queue.submit([enc.finish()]);
      const o = bufs['out:o'];
      const data = await downloadTensor(this.gpu, o);
      throwIfDeviceErrors(this.gpu, `running ${this.plan.variant}`);
      bound.dims.destroy();
      return { shape: o.shape, data };
    } finally {
      this.release(bufs);
    }
  }
}
