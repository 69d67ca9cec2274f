// The o projection folded into the recurrent step kernel's decode step (recurrent.ts, t = 1). A decoder layer's
//
//   x += o·W_oᵀ          W_o [hidden, NS·NR] (Hugging Face's [out, in]), o [b, NS·NR] this token's attention output
//
// is a dispatch of its own between the step kernel and gate|up, dependent on both, on a GPU where a decode step is
// dispatch-bound (the H200: ~6.4 µs a dispatch, the o projection 9 µs for its 2.36 MB). The step kernel's workgroup
// (b, head slice s, column block) already computes o at its columns [c0, c1) of s and is the only writer of those
// columns, so it can multiply them by its own columns of W_o and leave a partial product — split K by the
// attention's workgroups, no race and no atomic (WGSL has no float atomics):
//
//   P[p, b, n] = Σ_{r ∈ [c0, c1)} o[b, s, r] · W_o[n, (s, r)]      for every n < hidden, p = wid.x < NP = NS · blocks
//
// The consumers add the NP partials in p order (matmul-fusion.ts, partials): gate|up's rmsnorm prologue reads
// x + Σ_p P[p], down writes x ← (x + Σ_p P[p]) + act·W_downᵀ, so x is whole again for the next layer. Each of them
// reads NP extra values per element, so the fused step takes wide column blocks (a parameter: 64 columns, a whole
// head of 64, gives NP = 12 at 12 heads; 32 → 24; 16 → 48) with slices filling the workgroup's 256 threads; the
// unfused split (recurrent-split.ts) wants 2-column blocks at batch 1 for the state update's own parallelism, so which
// wins is the H200's to say (bench/decode.ts --fuse-o both). The step does not write o.
import type { RecurrentSplit } from './recurrent-split.ts';
import type { PlanBuffer } from './plan.ts';
import type { Binding, KernelBuilder, WorkgroupArray } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';

/** The fused step's o projection: W_o's rows (the model's hidden size) and value columns per workgroup. */
export interface OProjection {
  readonly hidden: number;
  readonly columns: number;
}

/** Columns per workgroup of the fused step unless the caller says: a whole head of 64 (NP = heads). */
export const O_PROJECTION_COLUMNS = 64;

const THREADS = 256;

/** The buffer names the fused step binds: W_o and the partial products it writes. */
export const O_PROJECTION_WEIGHT = 'weight:oProj';
export const O_PROJECTION_PARTIALS = 'out:oPartials';

/**
 * The fused step's split: `columns` value columns, and on a hardware adapter as many slices of the rows and lags as
 * fill 256 threads but no more than `reach` (rounded up to a power of two) has work for; one slice on a software
 * adapter, as recurrentSplit gives it (every workgroup there runs on a few host threads).
 */
export function oProjectionSplit(columns: number, reach: number, software: boolean): RecurrentSplit {
  if (!(Number.isInteger(columns) && columns >= 1 && columns <= THREADS)) throw new Error(`o projection: columns must be an integer in 1..${THREADS}, got ${columns}`);
  let slices = 1;
  while (!software && slices < reach && columns * slices * 2 <= THREADS) slices *= 2;
  return { columns, slices };
}

/** W_o [hidden, inner] (inner = NS·NR, o's row) and the partials [NP, b, hidden]. */
export function oProjectionBuffers(o: OProjection, inner: number, NP: number): PlanBuffer[] {
  return [
    { name: O_PROJECTION_WEIGHT, role: 'param', floats: () => o.hidden * inner, shape: () => [o.hidden, inner] },
    { name: O_PROJECTION_PARTIALS, role: 'output', floats: (b) => NP * b * o.hidden, shape: (b) => [NP, b, o.hidden] },
  ];
}

/** The workgroup's output columns as the step leaves them for the projection: value, and its index in o's row. */
export interface StagedOutput {
  readonly value: WorkgroupArray;
  readonly index: WorkgroupArray;
}

export function declareOProjection(kb: KernelBuilder, columns: number): { staged: StagedOutput; weight: Binding; partials: Binding } {
  return {
    staged: {
      value: kb.workgroup('o_val', columns, "this workgroup's columns of o (0 past the head's columns)"),
      index: kb.workgroup('o_idx', columns, "each column's index in o's row: W_o's column", 'u32'),
    },
    weight: kb.storage(O_PROJECTION_WEIGHT, false),
    partials: kb.storage(O_PROJECTION_PARTIALS, true, { always: true }),
  };
}

/**
 * After the step's output columns are staged (and a barrier): thread lid takes outputs n = lid, lid + WG, … and sums
 * its workgroup's columns in order, one partial product each. Every workgroup writes its own row p = wid.x.
 */
export function emitOProjection(kb: KernelBuilder, step: Block, o: OProjection, inner: number, d: { staged: StagedOutput; weight: Binding; partials: Binding }, columns: number): void {
  const W = kb.use(d.weight);
  const P = kb.use(d.partials);
  step.comment(`o·W_oᵀ over this workgroup's ${columns} columns: its partial product of each of the ${o.hidden} outputs`);
  step.strided('n', `${o.hidden}u`, (l, n) => {
    const acc = l.var('p_acc', '0.0');
    l.for('r', '0u', (r) => `${r} < ${columns}u`, (rb, r) => {
      rb.line(`${acc} = fma(${d.staged.value.name}[${r}], ${W}[${n} * ${inner}u + ${d.staged.index.name}[${r}]], ${acc});`);
    });
    l.line(`${P}[(wid.x * dims.b + b) * ${o.hidden}u + ${n}] = ${acc};`);
  });
}
