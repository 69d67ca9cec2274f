// Where the tensors of a gradient program (src/ir/grad.ts) live on the GPU. Every tensor of its environment is
// one of
//   stored     – a forward input `in:NAME` and the cotangent `in:do` ([b, t, …]), a parameter `param:NAME` and a
//                gradient `grad:dNAME` (the plan's outputs) each in a buffer of its own; every intermediate in one
//                arena buffer `env` (parameter-shaped ones first, then the token tensors [b, t, …], each at an
//                offset that is a formula of dims.b and dims.pad), so that a kernel binds one buffer for all the
//                intermediates it reads and writes — a fused kernel reads many, and WebGPU guarantees only 8
//                storage buffers per kernel;
//   a builtin  – ones, or a 0/1 selection matrix, written inline where it is read (no buffer);
//   virtual    – an output of a map stage that no buffer holds: whoever reads it evaluates the map's expression
//                there (the fused plan folds the cheap per-token maps — cotangents, gates — into the prologue of
//                the kernels that read them).
import { graphAsProgram, type Builtin, type GradProgram, type MapStage } from '../../../src/ir/grad.ts';
import type { Id, Program } from '../../../src/ir/types.ts';
import { count, type Sizes } from '../common.ts';
import type { PlanBuffer } from '../plan.ts';

export type EnvSlot =
  /** `base`: the WGSL u32 offset of the tensor's first element in its buffer ('' for a buffer of its own). */
  | { readonly kind: 'buffer'; readonly buffer: string; readonly base: string; readonly token: boolean; readonly axes: readonly string[] }
  | { readonly kind: 'builtin'; readonly builtin: Builtin }
  | { readonly kind: 'virtual'; readonly stage: MapStage; readonly program: Program; readonly id: Id; readonly axes: readonly string[] };

export interface Env {
  readonly slots: ReadonlyMap<string, EnvSlot>;
  readonly buffers: readonly PlanBuffer[];
  readonly sizes: Sizes;
}

/** The arena buffer of the intermediates. */
export const ARENA = 'env';

/** The buffer of an environment tensor by role: inputs and do, parameters, gradients, or the intermediates' arena. */
export function bufferName(gp: GradProgram, tensor: string): string {
  if (tensor === 'do' || gp.forward.inputs.some((d) => d.name === tensor)) return `in:${tensor}`;
  if (gp.forward.params.some((d) => d.name === tensor)) return `param:${tensor}`;
  if (gp.gradients.includes(tensor)) return `grad:${tensor}`;
  return ARENA;
}

/**
 * The environment, with the outputs of the map stages named in `virtual` computed where they are read, the
 * term stages' outputs named in `kept` read from buffers the forward kept (by buffer name: keep:n.0, …), which
 * the plan takes as inputs, and those named in `unstored` nowhere (what reads them is computed where they are).
 */
export function layoutEnv(gp: GradProgram, sizes: Sizes, virtual: ReadonlySet<string> = new Set(), kept: ReadonlyMap<string, string> = new Map(), unstored: ReadonlySet<string> = new Set()): Env {
  const slots = new Map<string, EnvSlot>();
  const buffers: PlanBuffer[] = [];
  const arena: { tensor: string; token: boolean; axes: readonly string[] }[] = [];
  const add = (tensor: string, token: boolean, axes: readonly string[], role: PlanBuffer['role']) => {
    if (unstored.has(tensor)) return; // computed and used where it is made (a term stage's sum that only epilogues read)
    const buffer = kept.get(tensor) ?? bufferName(gp, tensor);
    if (kept.has(tensor)) role = 'input';
    if (buffer === ARENA) return void arena.push({ tensor, token, axes });
    const per = count(axes, sizes);
    const dims = axes.map((a) => sizes[a]);
    slots.set(tensor, { kind: 'buffer', buffer, base: '', token, axes });
    buffers.push(
      token
        ? { name: buffer, role, floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...dims] }
        : { name: buffer, role, floats: () => per, shape: () => dims },
    );
  };
  for (const d of gp.forward.inputs) add(d.name, true, d.axes, 'input');
  add('do', true, gp.forward.outAxes, 'input');
  for (const d of gp.forward.params) add(d.name, false, d.axes, 'param');
  for (const b of gp.builtins) slots.set(b.name, { kind: 'builtin', builtin: b });
  const role = (tensor: string): PlanBuffer['role'] => (gp.gradients.includes(tensor) ? 'output' : 'scratch');
  for (const st of gp.stages) {
    switch (st.kind) {
      case 'term':
      case 'lse':
        add(st.writes, true, st.program.outAxes, role(st.writes));
        break;
      case 'pairs':
        add(st.writes, false, st.axes, role(st.writes));
        break;
      case 'map':
      case 'reduce':
      case 'params':
        for (const o of st.outputs) {
          if (st.kind === 'map' && virtual.has(o.tensor)) {
            const program = { ...graphAsProgram(st.name, st.graph), sizes: {} };
            slots.set(o.tensor, { kind: 'virtual', stage: st, program, id: o.id, axes: o.axes });
          } else add(o.tensor, st.kind === 'map', o.axes, role(o.tensor));
        }
        break;
    }
  }
  // the arena: parameter-shaped tensors at fixed offsets, then each token tensor at P + b·t·(widths before it)
  let P = 0;
  for (const x of arena.filter((x) => !x.token)) {
    slots.set(x.tensor, { kind: 'buffer', buffer: ARENA, base: `${P}u`, token: false, axes: x.axes });
    P += count(x.axes, sizes);
  }
  let W = 0;
  for (const x of arena.filter((x) => x.token)) {
    slots.set(x.tensor, { kind: 'buffer', buffer: ARENA, base: `(${P}u + dims.b * dims.pad * ${W}u)`, token: true, axes: x.axes });
    W += count(x.axes, sizes);
  }
  if (arena.length) buffers.push({ name: ARENA, role: 'scratch', floats: (b, t) => Math.max(1, P + b * t * W), shape: (b, t) => [Math.max(1, P + b * t * W)] });
  return { slots, buffers, sizes };
}

/** `name[base + off]`: element `off` (a WGSL u32 offset within the tensor) of a stored tensor bound as `name`. */
export function element(slot: Extract<EnvSlot, { kind: 'buffer' }>, name: string, off: string): string {
  return `${name}[${slot.base ? `${slot.base} + ${off}` : off}]`;
}

/** A stored tensor's slot (throws for builtins and virtual tensors, which nothing stores). */
export function storedSlot(env: Env, tensor: string): Extract<EnvSlot, { kind: 'buffer' }> {
  const s = env.slots.get(tensor);
  if (!s || s.kind !== 'buffer') throw new Error(`internal: '${tensor}' is not a stored tensor`);
  return s;
}

/** The environment tensors a stage's expressions read, through virtual tensors down to what is stored. */
export function storedReads(env: Env, tensors: Iterable<string>): Set<string> {
  const out = new Set<string>();
  const visit = (t: string) => {
    const s = env.slots.get(t);
    if (!s) throw new Error(`internal: no environment tensor '${t}'`);
    if (s.kind === 'buffer') out.add(t);
    else if (s.kind === 'virtual') for (const b of Object.values(s.stage.bindings)) visit(b.tensor);
  };
  for (const t of tensors) visit(t);
  return out;
}
