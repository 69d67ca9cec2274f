// A compiled variant as a model's attention layer (the GpuAttention seam of src/runtime/gpu-attention.ts):
// prefill from an empty state runs the fused chunked kernel, which also writes the decoding state; every
// later call (a decode step, or tokens appended to a started sequence) runs the recurrent kernel on that state.
// Softmax attention's state is a key/value cache that grows with t: createState allocates it for the factory's
// maxLength positions at once (position-major, backends/wgsl/softmax-analysis.ts), and a call that would run past
// it is refused before anything is recorded.
//
// Recording a layer costs host time every token, so it is kept to the dispatches: each state remembers
// the bind groups of the buffers it was last called with, and the layers of one factory share the dims
// uniforms (b, t, position), which the first layer of a step writes and the others find already written.
// A write lands when it is encoded, before anything of the command buffer runs; so there is one uniform per
// slot of position mod DIMS_SLOTS, and up to DIMS_SLOTS consecutive steps of a state may share a command buffer
// (chainedSteps) — any other call must be submitted before the next is encoded.
// A noncausal variant (the leaky ablation) has no decoding form: its layers run whole sequences from position 0
// only (teacher-forced evaluation, training, and `eval --causal`'s prefixes), and refuse to continue one.
import { lowerChunked } from '../../backends/wgsl/lower.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import type { RecurrentSplit } from '../../backends/wgsl/recurrent-split.ts';
import type { GpuAttention, GpuAttentionFactory, GpuAttentionState } from './gpu-attention.ts';
import type { Program } from '../ir/types.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { DecodeSteps } from './decode-steps.ts';
import { PlanRunner } from './executor.ts';
import { choosePrefill, type PrefillScheduleRequest, type PrologueRequest } from './plan-choice.ts';
import { SharedScratch } from './scratch-buffers.ts';
import { bufferId } from './buffer-ids.ts';
import { TREE_SEQ } from '../../backends/wgsl/sequence-offsets.ts';

type Bound = ReturnType<PlanRunner['bind']>;

interface State extends GpuAttentionState {
  position: number;
  readonly b: number;
  readonly buffers: Record<string, GPUBuffer>;
  readonly binds: Map<string, Bound>;
  /** Each sequence's offset past `position` (useSequenceOffsets), or none: one position for the batch. */
  seq?: GPUBuffer;
  /** The bind groups of the last call, and what they were made for. */
  last?: { readonly runner: PlanRunner; readonly q: GPUBuffer; readonly k: GPUBuffer; readonly v: GPUBuffer; readonly o: GPUBuffer; readonly t: number; readonly slot: number; readonly seq?: GPUBuffer; readonly bound: Bound };
}

/**
 * Consecutive one-token steps of a state that one command buffer may hold: each position uses dims slot
 * position mod DIMS_SLOTS, so their uniforms, all written before the submit, stay apart.
 */
const DIMS_SLOTS = 16;

/**
 * The dims uniforms (b, t, position) every layer of one factory binds — one per slot, a call at position p
 * using slot p mod DIMS_SLOTS — and the values last written to each.
 */
class SharedDims {
  readonly buffers: readonly GPUBuffer[];
  private readonly words: readonly Uint32Array<ArrayBuffer>[];
  private readonly written: boolean[];

  constructor(private readonly gpu: Gpu) {
    this.buffers = Array.from({ length: DIMS_SLOTS }, (_, i) => gpu.device.createBuffer({ label: `attention dims ${i}`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST }));
    this.words = this.buffers.map(() => new Uint32Array(4));
    this.written = this.buffers.map(() => false);
  }

  /** The slot a call at `pos` binds. */
  slot(pos: number): number {
    return pos % DIMS_SLOTS;
  }

  set(b: number, t: number, pos: number): void {
    const slot = this.slot(pos);
    const w = this.words[slot];
    if (this.written[slot] && w[0] === b && w[1] === t && w[2] === pos) return;
    w[0] = b;
    w[1] = t;
    w[2] = pos;
    this.gpu.device.queue.writeBuffer(this.buffers[slot], 0, w);
    this.written[slot] = true;
  }
}

export interface CompiledAttentionOptions {
  /**
   * Positions a layer's state holds when it grows with t (softmax attention's key/value cache, allocated in full
   * by createState): the model's max_position_embeddings, or less. Default DEFAULT_CACHE_POSITIONS.
   */
  readonly maxLength?: number;
  /** The prefill's feature prologue: the model's choice (default), every feature node, or none. */
  readonly prologue?: PrologueRequest;
  /** The prefill's schedule: 'model' (default: segments allowed on hardware), unsegmented, the model's best with segments, or this one. */
  readonly prefillSchedule?: PrefillScheduleRequest;
  /** Called with the prefill's plan decision in words. */
  readonly onChoice?: (reason: string) => void;
  /** The decode step's split at batch b instead of recurrentSplit's (bench/decode.ts --decode-split sweeps them). */
  readonly decodeSplit?: (b: number) => RecurrentSplit | undefined;
  /** false: the decode step without RecurrentOptions.loadsFirst (bench/decode.ts --recurrent-loads-first off). */
  readonly recurrentLoadsFirst?: boolean;
}

/** Compiles both plans once for the model's shapes; the factory then builds layers synchronously. */
export async function compiledAttentionFactory(gpu: Gpu, program: Program, heads: number, headDim: number, opts: CompiledAttentionOptions = {}): Promise<GpuAttentionFactory> {
  const names = program.inputs.map((d) => d.name).sort().join(',');
  if (names !== 'k,q,v') throw new Error(`variant ${program.name} declares inputs [${program.inputs.map((d) => d.name).join(', ')}]; a model layer supplies exactly q, k, v`);
  const sizes = variantAxisSizes(program, heads, headDim);
  const decodes = !program.terms.some((t) => t.noncausal);
  // One fused chunk plan that exports the state (a kernel, or three launches when segmented), with the feature
  // nodes the model puts in a prologue, or the unfused plan, each kernel exporting its part (plan-choice.ts).
  const choice = choosePrefill(gpu, program, sizes, opts.prologue, opts.prefillSchedule);
  opts.onChoice?.(choice.reason);
  const prefill: Plan = lowerChunked(program, sizes, {
    fuse: choice.fuse,
    schedule: choice.schedule,
    ...(choice.residentSchedule && { resident: true, subgroupSize: gpu.subgroupSize, residentSchedule: choice.residentSchedule }),
    exportState: decodes,
    ...(choice.prologue.size && { prologue: choice.prologue }),
    ...(opts.maxLength !== undefined && { maxLength: opts.maxLength }),
  });
  // The step's split depends on the batch (decode-steps.ts): batch 1's now, others when prepareBatch asks.
  const [prefillRunner, steps] = await Promise.all([PlanRunner.create(gpu, prefill), decodes ? DecodeSteps.create(gpu, program, sizes, opts.maxLength, !gpu.isSoftware, opts.decodeSplit, opts.recurrentLoadsFirst) : null]);
  const dims = new SharedDims(gpu);
  const scratch = new SharedScratch(gpu, prefill);
  return (layer, params) => new CompiledAttention(gpu, program, layer, params, heads, headDim, prefillRunner, steps, dims, scratch);
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
    /** The step per batch; null for a noncausal variant, which cannot decode. */
    private readonly steps: DecodeSteps | null,
    private readonly dims: SharedDims,
    /** The prefill's prologue features, shared by every layer of the model. */
    private readonly scratch: SharedScratch,
  ) {
    for (const d of program.params) if (!params[d.name]) throw new Error(`layer ${layer}: variant ${program.name} needs parameter '${d.name}'`);
  }

  createState(b: number): GpuAttentionState {
    const buffers: Record<string, GPUBuffer> = {};
    for (const buf of this.steps?.first.plan.buffers ?? []) {
      if (buf.role !== 'state') continue;
      const bytes = Math.max(4, buf.floats(b, 1) * 4);
      buffers[buf.name] = this.gpu.device.createBuffer({ label: `layer ${this.layer} ${buf.name}`, size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
      this.gpu.device.queue.writeBuffer(buffers[buf.name], 0, new Float32Array(bytes / 4));
    }
    const st: State = { position: 0, b, buffers, binds: new Map() };
    return st;
  }

  /** Zeros by clearBuffer on the GPU rather than createState's upload of zeros: nothing crosses from the host. */
  resetState(state: GpuAttentionState, encoder: GPUCommandEncoder): void {
    const st = state as State;
    for (const buffer of Object.values(st.buffers)) encoder.clearBuffer(buffer);
    st.position = 0;
    st.seq = undefined;
  }

  setPosition(state: GpuAttentionState, position: number): void {
    if (!(Number.isInteger(position) && position >= 0)) throw new Error(`layer ${this.layer}: setPosition(${position})`);
    (state as State).position = position;
  }

  async useSequenceOffsets(state: GpuAttentionState, seq: GPUBuffer | null): Promise<void> {
    const st = state as State;
    if (!this.steps) throw new Error(`layer ${this.layer}: ${this.program.name} has noncausal terms: it does not decode`);
    if (seq) await this.steps.prepare(st.b, true);
    st.seq = seq ?? undefined;
  }

  encodeForward(pass: GPUComputePassEncoder, io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }, state: GpuAttentionState, b: number, t: number): void {
    const st = state as State;
    const runner = this.check(st, b, t);
    const last = st.last;
    const slot = this.dims.slot(st.position);
    const bound =
      last && last.runner === runner && last.t === t && last.slot === slot && last.seq === st.seq && last.q === io.q && last.k === io.k && last.v === io.v && last.o === io.o
        ? last.bound
        : this.bind(st, runner, io, t, slot);
    this.dims.set(b, t, st.position);
    runner.encode(pass, bound);
  }

  /**
   * A replayed step runs the bind groups an earlier call made for the same buffers (kept in st.binds for the
   * state's life) over the same grids; only the checks and the shared dims uniform remain, which the first layer
   * of a step writes and the others find written.
   */
  prepareReplay(state: GpuAttentionState, b: number, t: number): number {
    const st = state as State;
    this.check(st, b, t);
    this.dims.set(b, t, st.position);
    // The per-sequence step binds its offsets too: another recording per offsets buffer.
    return this.dims.slot(st.position) + (st.seq ? DIMS_SLOTS * (1 + bufferId(st.seq)) : 0);
  }

  readonly chainedSteps = DIMS_SLOTS;

  /** Compiles the decode step whose split fills the GPU at batch b (shared by every layer of the factory); `perSequence`: its form that reads a position per sequence. */
  async prepareBatch(b: number, perSequence = false): Promise<void> {
    await this.steps?.prepare(b, perSequence);
  }

  /** Refuses a call the state cannot take; the runner that runs it. */
  private check(st: State, b: number, t: number): PlanRunner {
    if (b !== st.b) throw new Error(`layer ${this.layer}: state was created for ${st.b} sequences, called with ${b}`);
    if (!this.steps && st.position > 0) {
      throw new Error(`layer ${this.layer}: ${this.program.name} has noncausal terms (they read later positions): it cannot continue a sequence, only run one whole`);
    }
    const capacity = this.steps?.first.plan.maxLength;
    if (capacity !== undefined && st.position + t > capacity) {
      throw new Error(
        `layer ${this.layer}: ${this.program.name}'s key/value cache holds ${capacity} positions; ${st.position} + ${t} tokens would exceed it ` +
          '(the cache grows with t: make the model with a larger maximum length)',
      );
    }
    if (!this.steps || (st.position === 0 && t > 1)) {
      if (st.seq) throw new Error(`layer ${this.layer}: a prefill from position 0 with a position per sequence set; reset the state first`);
      return this.prefill;
    }
    return this.steps.runner(st.b, !!st.seq);
  }

  private bind(st: State, runner: PlanRunner, io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }, t: number, slot: number): Bound {
    const seq = runner === this.prefill ? undefined : st.seq;
    const key = `${runner === this.prefill ? 'p' : 's'}:${[io.q, io.k, io.v, io.o].map(bufferId).join(',')}:${t}:${slot}${seq ? `:seq${bufferId(seq)}` : ''}`;
    let bound = st.binds.get(key);
    if (!bound) {
      const all: Record<string, GPUBuffer> = { 'in:q': io.q, 'in:k': io.k, 'in:v': io.v, 'out:o': io.o, ...st.buffers, ...(runner === this.prefill ? this.scratch.buffers(st.b, t) : {}), ...(seq && { [TREE_SEQ]: seq }) };
      for (const [k, v] of Object.entries(this.params)) all[`param:${k}`] = v;
      bound = runner.bind(all, st.b, t, st.position, this.dims.buffers[slot]);
      st.binds.set(key, bound);
    }
    st.last = { runner, ...io, t, slot, ...(st.seq && { seq: st.seq }), bound };
    return bound;
  }

  advance(state: GpuAttentionState, t: number): void {
    (state as State).position += t;
  }
}
