// The scratch buffers of a plan (role 'scratch': a fused prefill's prologue features [b, t, …]) that every layer of
// one model shares: layers run one after another, and WebGPU orders a pass's dispatches, so a layer's feature
// kernels overwrite what the previous layer's chunk kernel has finished reading. Each buffer only grows: a call
// needing more than the largest so far gets a new one; the smaller ones stay alive while bind groups made for
// shorter calls (compiled-attention.ts caches them per t) still hold them.
import type { Plan } from '../../backends/wgsl/plan.ts';
import { BufferUsage, type Gpu } from './device.ts';

export class SharedScratch {
  private readonly current = new Map<string, { bytes: number; buffer: GPUBuffer }>();

  constructor(
    private readonly gpu: Gpu,
    private readonly plan: Plan,
  ) {}

  /** A buffer for each of the plan's scratch buffers, large enough for a call of b sequences of t tokens. */
  buffers(b: number, t: number): Record<string, GPUBuffer> {
    const out: Record<string, GPUBuffer> = {};
    for (const buf of this.plan.buffers) {
      if (buf.role !== 'scratch') continue;
      const bytes = Math.max(4, buf.floats(b, t) * 4);
      let cur = this.current.get(buf.name);
      if (!cur || cur.bytes < bytes) {
        cur = { bytes, buffer: this.gpu.device.createBuffer({ label: `shared ${buf.name}`, size: bytes, usage: BufferUsage.STORAGE }) };
        this.current.set(buf.name, cur);
      }
      out[buf.name] = cur.buffer;
    }
    return out;
  }
}
