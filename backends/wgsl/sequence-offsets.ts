// Sequences of one batch at positions of their own. A speculative batch commits each sequence's own accepted path,
// so its sequences drift apart: sequence b sits at dims.pos0 + offset_b. The tree kernels, their commit and the decode
// step that continues such a batch (recurrent.ts with RecurrentOptions.perSequence) read each sequence's offset from
// one small buffer, indexed by the workgroup's sequence: the value is uniform in the workgroup, so loops around
// barriers may run to it.
import type { Binding, KernelBuilder } from './kernel-builder.ts';
import type { PlanBuffer } from './plan.ts';
import type { Block } from './wgsl-block.ts';

/**
 * Per sequence of a batch, [b, 2] as f32: how far its committed position lies past dims.pos0, and its path length
 * (capped by dims.t, the path buffer's row stride; the tree commit's, unread elsewhere). Sequences of a batch
 * speculated together commit their own lengths.
 */
export const TREE_SEQ = 'tree:seq';

/** The plans' TREE_SEQ buffer. */
export const sequenceBuffer: PlanBuffer = { name: TREE_SEQ, role: 'input', floats: (b) => 2 * b, shape: (b) => [b, 2] };

const seqBindings = new WeakMap<KernelBuilder, Binding>();

/**
 * Defines `pos0`, sequence b's committed position, and with `length` `plen`, its path length, in `main` (after
 * `b`). Both are read from TREE_SEQ, a read-only buffer indexed by the workgroup's sequence, so they are uniform
 * in the workgroup: loops around barriers may run to them.
 */
export function definePerSequence(kb: KernelBuilder, main: Block, length: boolean): void {
  let seq = seqBindings.get(kb);
  if (!seq) seqBindings.set(kb, (seq = kb.storage(TREE_SEQ, false, { always: true })));
  main.define('pos0', `dims.pos0 + u32(round(${kb.use(seq)}[2u * b]))`, "this sequence's committed position");
  if (length) main.define('plen', `min(dims.t, u32(round(${kb.use(seq)}[2u * b + 1u])))`, "this sequence's path length");
}

