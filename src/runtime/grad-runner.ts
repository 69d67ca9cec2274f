// Runs a gradient plan (backends/wgsl/grad-lower.ts) on a device: compiles its kernels (cached), binds its
// buffers — each launch with its own dims (b, t padded for the launch, 0, t) — encodes every launch into one
// compute pass, and reads the gradients back.
import { paddedLength, type GradPlan } from '../../backends/wgsl/grad-lower.ts';
import { numel, type Tensor } from '../tensor.ts';
import { BufferUsage, throwIfDeviceErrors, type Gpu } from './device.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from './gpu-tensor.ts';
import { compileKernel } from './pipeline-cache.ts';

export interface BoundGrad {
  readonly b: number;
  readonly t: number;
  readonly groups: readonly GPUBindGroup[];
  readonly dims: readonly GPUBuffer[];
}

export class GradRunner {
  private constructor(
    readonly gpu: Gpu,
    readonly plan: GradPlan,
    private readonly pipelines: readonly GPUComputePipeline[],
  ) {}

  static async create(gpu: Gpu, plan: GradPlan): Promise<GradRunner> {
    const pipelines = await Promise.all(
      plan.kernels.map((k) =>
        compileKernel(gpu, { label: k.label, code: k.code, bindings: ['uniform', ...k.bindings.map((b) => (b.write ? 'storage' : 'read-only-storage') as 'storage' | 'read-only-storage')] }),
      ),
    );
    return new GradRunner(gpu, plan, pipelines);
  }

  /** Bind groups over the given buffers (every buffer a kernel binds must be present) for b sequences of t tokens. */
  bind(buffers: Readonly<Record<string, GPUBuffer>>, b: number, t: number): BoundGrad {
    const dimsOf = new Map<number, GPUBuffer>();
    const dims = (pad: number) => {
      let d = dimsOf.get(pad);
      if (!d) {
        d = this.gpu.device.createBuffer({ label: `${this.plan.variant} grad dims (pad ${pad})`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
        this.gpu.device.queue.writeBuffer(d, 0, Uint32Array.of(b, Math.ceil(t / pad) * pad, 0, t));
        dimsOf.set(pad, d);
      }
      return d;
    };
    const groups = this.plan.kernels.map((k, n) => {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: dims(k.pad) } }];
      k.bindings.forEach((bd, i) => {
        const buf = buffers[bd.buffer];
        if (!buf) throw new Error(`kernel ${k.label}: no buffer bound for '${bd.buffer}'`);
        entries.push({ binding: i + 1, resource: { buffer: buf } });
      });
      return this.gpu.device.createBindGroup({ label: k.label, layout: this.pipelines[n].getBindGroupLayout(0), entries });
    });
    return { b, t, groups, dims: [...dimsOf.values()] };
  }

  /** Records every launch of the plan into `pass` (or launch `only` alone: the bench times each one). */
  encode(pass: GPUComputePassEncoder, bound: BoundGrad, only?: number): void {
    this.plan.kernels.forEach((k, n) => {
      if (only !== undefined && n !== only) return;
      const [x, y, z] = k.workgroups(bound.b, paddedLength(k, bound.t));
      pass.setPipeline(this.pipelines[n]);
      pass.setBindGroup(0, bound.groups[n]);
      pass.dispatchWorkgroups(x, y, z);
    });
  }

  release(bound: BoundGrad): void {
    for (const d of bound.dims) d.destroy();
  }

  /**
   * Buffers for (b, t): inputs, `do` and parameters uploaded from host tensors (`tensors` by the variant's names,
   * plus `do`, and n.K, z.K for a plan reading what the forward kept), intermediates allocated, gradients zeroed;
   * buffers in `have` (a forward's, bound in the same pass) are taken as they are.
   */
  allocate(tensors: Readonly<Record<string, Tensor>>, b: number, t: number, have: Readonly<Record<string, GpuTensor>> = {}): Record<string, GpuTensor> {
    const out: Record<string, GpuTensor> = {};
    try {
      for (const buf of this.plan.buffers) {
        if (have[buf.name]) continue;
        const shape = buf.shape(b, t);
        if (buf.role === 'input' || buf.role === 'param') {
          const name = buf.name.slice(buf.name.indexOf(':') + 1);
          const host = tensors[name];
          if (!host) throw new Error(`missing ${buf.role === 'param' ? 'parameter' : 'input'} '${name}' [${shape.join(', ')}]`);
          if (host.shape.join() !== shape.join()) throw new Error(`'${name}' has shape [${host.shape.join(', ')}], expected [${shape.join(', ')}]`);
          out[buf.name] = uploadTensor(this.gpu, buf.name, host);
        } else {
          out[buf.name] = allocTensor(this.gpu, buf.name, numel(shape) > 0 ? shape : [1]);
          if (buf.role === 'output') this.gpu.device.queue.writeBuffer(out[buf.name].buffer, 0, new Float32Array(Math.max(1, numel(shape))));
        }
      }
    } catch (e) {
      for (const x of Object.values(out)) releaseTensor(this.gpu, x);
      throw e;
    }
    return out;
  }

  /** Frees buffers `allocate` made. */
  free(bufs: Record<string, GpuTensor>): void {
    for (const x of Object.values(bufs)) releaseTensor(this.gpu, x);
  }

  /** One full run: upload, one compute pass, read back every gradient (by its name: dq, dw, …). */
  async run(tensors: Readonly<Record<string, Tensor>>, b: number, t: number): Promise<Record<string, Tensor<Float32Array>>> {
    const bufs = this.allocate(tensors, b, t);
    try {
      const bound = this.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), b, t);
      const enc = this.gpu.device.createCommandEncoder({ label: `${this.plan.variant} gradient` });
      const pass = enc.beginComputePass({ label: `${this.plan.variant} gradient` });
      this.encode(pass, bound);
      pass.end();
      this.gpu.device.queue.submit([enc.finish()]);
      const grads: Record<string, Tensor<Float32Array>> = {};
      for (const g of this.plan.gradients) {
        const x = bufs[g.buffer];
        grads[g.name] = { shape: x.shape, data: await downloadTensor(this.gpu, x) };
      }
      throwIfDeviceErrors(this.gpu, `the gradient of ${this.plan.variant}`);
      this.release(bound);
      return grads;
    } finally {
      this.free(bufs);
    }
  }
}
