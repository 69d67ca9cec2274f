// How a gradient kernel reads the environment (env.ts), without copies: the resolver a stage's expressions are
// generated with. A term stage in reverse time runs at kernel positions p = 0 … dims.t − 1, where dims.t is T
// padded up to the stage's multiple and dims.pad holds T; it reads a token tensor through an index transform:
//
//   t = T_pad − 1 − p (reverse)  then  t + shift (a gate read one position later)
//   t < T: tensor[b, t]      past the end: 0 (cotangents), 1 (gates, ones) or tensor[b, T − 1] (forward inputs)
//
// so reversal, the gate shift and the padding are a select around a clamped load. Forward-time kernels read
// tensor[b, p]. A virtual tensor is computed at t from its map stage's expression (read the same way, in the
// tensors' own positions); builtins are written inline.
import type { Binding, Builtin } from '../../../src/ir/grad.ts';
import type { Node } from '../../../src/ir/types.ts';
import { ExprGen, offset, type Index, type Resolver } from '../expr.ts';
import type { Binding as KernelBinding, KernelBuilder } from '../kernel-builder.ts';
import type { Block } from '../wgsl-block.ts';
import { element, storedSlot, type Env } from './env.ts';

/**
 * A kernel's view of the stored tensors: one storage binding per buffer (the arena once for every intermediate),
 * writable where the kernel writes any tensor in it (WebGPU forbids binding a buffer both ways in one dispatch).
 */
export class KernelBuffers {
  private readonly bound = new Map<string, KernelBinding>();
  private readonly written: ReadonlySet<string>;
  private readonly tensors: ReadonlySet<string>;

  constructor(
    readonly kb: KernelBuilder,
    private readonly env: Env,
    writes: Iterable<string>,
  ) {
    this.tensors = new Set(writes);
    this.written = new Set([...this.tensors].map((t) => storedSlot(env, t).buffer));
  }

  private use(buffer: string): string {
    let b = this.bound.get(buffer);
    if (!b) this.bound.set(buffer, (b = this.kb.storage(buffer, this.written.has(buffer))));
    return this.kb.use(b);
  }

  /** Element `off` (a WGSL u32 offset within the tensor) of a stored tensor. */
  at(tensor: string, off: string): string {
    const slot = storedSlot(this.env, tensor);
    return element(slot, this.use(slot.buffer), off);
  }

  /** Element `off` of a tensor this kernel writes. */
  out(tensor: string, off: string): string {
    if (!this.tensors.has(tensor)) throw new Error(`internal: a kernel writes ${tensor} without declaring it`);
    return this.at(tensor, off);
  }
}

/** How a kernel's positions map to the tensors' own: `reverse` (p ↦ dims.t − 1 − p) or as they are. */
export interface Frame {
  readonly reverse: boolean;
  /** The batch index's WGSL name. */
  readonly batch: string;
}

export interface ReaderContext {
  readonly env: Env;
  readonly buffers: KernelBuffers;
}

/**
 * The resolver of a stage's leaves: `bindings` name the environment tensor behind each of the stage's inputs and
 * parameters (by their declared names), read at kernel positions in `frame`.
 */
export function stageReader(ctx: ReaderContext, bindings: Readonly<Record<string, Binding>>, frame: Frame): Resolver {
  return (n, idx, where, at) => {
    if (n.op !== 'input' && n.op !== 'param') return null;
    const bd = bindings[n.name];
    if (!bd) throw new Error(`internal: no binding for ${n.op} ${n.name}`);
    return readTensor(ctx, bd, n, idx, where, at, frame);
  };
}

function readTensor(ctx: ReaderContext, bd: Binding, n: Node, idx: Index, where: string, at: Block, frame: Frame): string {
  const slot = ctx.env.slots.get(bd.tensor);
  if (!slot) throw new Error(`internal: no environment tensor '${bd.tensor}'`);
  const sizes = ctx.env.sizes;
  if (slot.kind === 'builtin') return builtinValue(slot.builtin, idx, sizes);
  if (n.op === 'param') {
    if (slot.kind !== 'buffer' || slot.token) throw new Error(`internal: parameter ${n.name} reads token tensor ${bd.tensor}`);
    return ctx.buffers.at(bd.tensor, offset(slot.axes, sizes, idx));
  }
  // t: the tensor position; valid: whether it lies inside the tensor (only reversal and shifts can leave it)
  const base = frame.reverse ? `(dims.t - 1u - ${where})` : where;
  const t = bd.shift ? `(${base} + ${bd.shift}u)` : base;
  const checked = frame.reverse || !!bd.shift;
  const tc = checked ? at.let('tc', `min(${t}, dims.pad - 1u)`) : where;
  let v: string;
  if (slot.kind === 'virtual') {
    const inner = stageReader(ctx, slot.stage.bindings, { reverse: false, batch: frame.batch });
    v = new ExprGen(slot.program, sizes, inner, { i: tc, j: tc }).value(at, slot.id, idx, tc);
  } else {
    v = ctx.buffers.at(bd.tensor, offset(slot.axes, sizes, idx, `${frame.batch} * dims.pad + ${tc}`));
  }
  if (!checked || bd.pad === 'edge') return v;
  return `select(${bd.pad === 'one' ? '1.0' : '0.0'}, ${v}, ${t} < dims.pad)`;
}

/** A builtin's element at idx: ones, or a 0/1 selection written as a comparison of indices. */
function builtinValue(b: Builtin, idx: Index, sizes: Readonly<Record<string, number>>): string {
  switch (b.kind) {
    case 'ones':
      return '1.0';
    case 'concat-part': {
      const width = (p: string | null) => (p === null ? 1 : sizes[p]);
      const base = b.parts.slice(0, b.part).reduce((n, p) => n + width(p), 0);
      const part = b.parts[b.part];
      const at = part === null ? `${base}u` : `${base}u + ${idx[part]}`;
      return `select(0.0, 1.0, ${idx[b.axis]} == ${at})`;
    }
    case 'outer-factor': {
      const d = sizes[b.from];
      return `select(0.0, 1.0, ${idx[b.from]} == ${idx[b.axis]} ${b.which === 0 ? '/' : '%'} ${d}u)`;
    }
  }
}
