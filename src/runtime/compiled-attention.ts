// A compiled variant as a model's attention layer (the GpuAttention seam of src/model/gpu-attention.ts):
// prefill from an empty state runs the fused chunked kernel, which also writes the decoding state; every
// later call (a decode step, or tokens appended to a started sequence) runs the recurrent kernel on that state.
import { lowerChunked } from '../../backends/wgsl/lower.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import { recurrentPlan } from '../../backends/wgsl/recurrent.ts';
import type { GpuAttention, GpuAttentionFactory, GpuAttentionState } from '../model/gpu-attention.ts';
import type { Program } from '../ir/types.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { chooseSchedule } from './schedule.ts';

interface State extends GpuAttentionState {
  position: number;
  readonly b: number;
  readonly buffers: Record<string, GPUBuffer>;
  readonly dims: GPUBuffer;
  readonly binds: Map<string, ReturnType<PlanRunner['bind']>>;
}

/** Compiles both plans once for the model's shapes; the factory then builds layers synchronously. */
export async function compiledAttentionFactory(gpu: Gpu, program: Program, heads: number, headDim: number): Promise<GpuAttentionFactory> {
  const names = program.inputs.map((d) => d.name).sort().join(',');
  if (names !== 'k,q,v') throw new Error(`variant ${program.name} declares inputs [${program.inputs.map((d) => d.name).join(', ')}]; a model layer supplies exactly q, k, v`);
  const sizes = variantAxisSizes(program, heads, headDim);
  const prefill: Plan = lowerChunked(program, sizes, { fuse: true, schedule: chooseSchedule(gpu, program, sizes), exportState: true });
  const step: Plan = recurrentPlan(program, sizes);
  const [prefillRunner, stepRunner] = await Promise.all([PlanRunner.create(gpu, prefill), PlanRunner.create(gpu, step)]);
  return (layer, params) => new CompiledAttention(gpu, program, layer, params, heads, headDim, prefillRunner, stepRunner);
}

/** The variant's axis sizes in a model: its own sizes, and each input's [heads, headDim] axes. */
export function variantAxisSizes(program: { readonly sizes: Readonly<Record<string, number>>; readonly inputs: readonly { readonly name: string; readonly axes: readonly string[] }[]; readonly name: string }, heads: number, headDim: number): Record<string, number> {
  const sizes: Record<string, number> = { ...program.sizes };
  for (const d of program.inputs) {
    if (d.axes.length !== 2) throw new Error(`variant ${program.name}: input ${d.name} must be [heads, headDim] per token (it is [${d.axes.join(', ')}])`);
    const [h, x] = d.axes;
    for (const [a, n] of [[h, heads], [x, headDim]] as const) {
      if (sizes[a] !== undefined && sizes[a] !== n) throw new Error(`variant ${program.name}: axis ${a} is ${sizes[a]} but the model needs ${n}`);
      sizes[a] = n;
    }
  }
  return sizes;
}

class CompiledAttention implements GpuAttention {
  constructor(
    private readonly gpu: Gpu,
    private readonly program: Program,
    private readonly layer: number,
    private readonly params: Record<string, GPUBuffer>,
    readonly heads: number,
    readonly headDim: number,
    private readonly prefill: PlanRunner,
    private readonly step: PlanRunner,
  ) {
    for (const d of program.params) if (!params[d.name]) throw new Error(`layer ${layer}: variant ${program.name} needs parameter '${d.name}'`);
  }

  createState(b: number): GpuAttentionState {
    const buffers: Record<string, GPUBuffer> = {};
    for (const buf of this.step.plan.buffers) {
      if (buf.role !== 'state') continue;
      const bytes = Math.max(4, buf.floats(b, 1) * 4);
      buffers[buf.name] = this.gpu.device.createBuffer({ label: `layer ${this.layer} ${buf.name}`, size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
      this.gpu.device.queue.writeBuffer(buffers[buf.name], 0, new Float32Array(bytes / 4));
    }
    const dims = this.gpu.device.createBuffer({ label: `layer ${this.layer} dims`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    const st: State = { position: 0, b, buffers, dims, binds: new Map() };
    return st;
  }

  encodeForward(pass: GPUComputePassEncoder, io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }, state: GpuAttentionState, b: number, t: number): void {
    const st = state as State;
    if (b !== st.b) throw new Error(`layer ${this.layer}: state was created for ${st.b} sequences, called with ${b}`);
    const runner = st.position === 0 && t > 1 ? this.prefill : this.step;
    const all: Record<string, GPUBuffer> = { 'in:q': io.q, 'in:k': io.k, 'in:v': io.v, 'out:o': io.o, ...st.buffers };
    for (const [k, v] of Object.entries(this.params)) all[`param:${k}`] = v;
    const ids = [io.q, io.k, io.v, io.o].map((x) => idOf(x)).join(',');
    const key = `${runner === this.prefill ? 'p' : 's'}:${ids}:${t}`;
    let bound = st.binds.get(key);
    if (!bound) {
      bound = runner.bind(all, b, t, st.position, st.dims);
      st.binds.set(key, bound);
    }
    this.gpu.device.queue.writeBuffer(st.dims, 0, Uint32Array.of(b, t, st.position, 0));
    runner.encode(pass, bound);
  }

  advance(state: GpuAttentionState, t: number): void {
    (state as State).position += t;
  }
}

const ids = new WeakMap<GPUBuffer, number>();
let nextId = 0;
function idOf(b: GPUBuffer): number {
  let id = ids.get(b);
  if (id === undefined) ids.set(b, (id = nextId++));
  return id;
}
