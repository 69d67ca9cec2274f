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
//
// W_o is read along its rows (n, then the workgroup's columns), so a thread per output n walking its columns would
// have a warp touch 32 rows per load; instead `lanes` consecutive threads share an output, thread q taking columns
// q, q + lanes, …, so a warp reads lanes consecutive floats of 32 / lanes rows (8 lanes: whole 32-byte sectors), and
// the lanes' sums meet in workgroup memory, added in lane order, two barriers per WG / lanes outputs. A software
// adapter keeps one lane (no barriers: lavapipe runs each section between barriers as a loop over the threads).
import type { RecurrentSplit } from './recurrent-split.ts';
import type { PlanBuffer } from './plan.ts';
import type { Binding, KernelBuilder, WorkgroupArray } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';

/** The fused step's o projection: W_o's rows (the model's hidden size) and value columns per workgroup. */
export interface OProjection {
  readonly hidden: number;
  readonly columns: number;
  /** Threads per output (a power of two dividing the workgroup); default oProjectionLanes'. */
  readonly lanes?: number;
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

/** Threads per output n: up to 8 on a hardware adapter (no more than the columns, a power of two dividing WG), 1 on a software one. */
export function oProjectionLanes(o: OProjection, WG: number, software: boolean): number {
  if (o.lanes !== undefined) {
    if (!(Number.isInteger(o.lanes) && o.lanes >= 1 && (o.lanes & (o.lanes - 1)) === 0 && WG % o.lanes === 0)) throw new Error(`o projection: lanes must be a power of two dividing the workgroup's ${WG} threads, got ${o.lanes}`);
    return o.lanes;
  }
  let lanes = 1;
  while (!software && lanes < 8 && 2 * lanes <= o.columns && WG % (2 * lanes) === 0) lanes *= 2;
  return lanes;
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

export interface OProjectionDecls {
  readonly staged: StagedOutput;
  readonly weight: Binding;
  readonly partials: Binding;
  readonly lanes: number;
  /** The lanes' sums of one output (lanes > 1). */
  readonly sums: WorkgroupArray | null;
}

/** Workgroup floats the fused step adds: the staged columns and their indices, and the lanes' sums. */
export function oProjectionFloats(columns: number, lanes: number, WG: number): number {
  return 2 * columns + (lanes > 1 ? WG : 0);
}

export function declareOProjection(kb: KernelBuilder, columns: number, lanes: number): OProjectionDecls {
  return {
    staged: {
      value: kb.workgroup('o_val', columns, "this workgroup's columns of o (0 past the head's columns)"),
      index: kb.workgroup('o_idx', columns, "each column's index in o's row: W_o's column", 'u32'),
    },
    weight: kb.storage(O_PROJECTION_WEIGHT, false),
    partials: kb.storage(O_PROJECTION_PARTIALS, true, { always: true }),
    lanes,
    sums: lanes > 1 ? kb.workgroup('o_sum', kb.workgroupSize, `each thread's share of an output, ${lanes} lanes an output`) : null,
  };
}

/**
 * After the step's output columns are staged (and a barrier): its partial product of every output n, summed over its
 * columns in a fixed order (one lane: in column order; L lanes: lane q over columns q, q + L, …, then the lanes in
 * order). Every workgroup writes its own row p = wid.x.
 */
export function emitOProjection(kb: KernelBuilder, step: Block, o: OProjection, inner: number, d: OProjectionDecls, columns: number): void {
  const W = kb.use(d.weight);
  const P = kb.use(d.partials);
  const { value, index } = d.staged;
  const out = (n: string) => `${P}[(wid.x * dims.b + b) * ${o.hidden}u + ${n}]`;
  const L = d.lanes;
  step.comment(`o·W_oᵀ over this workgroup's ${columns} columns: its partial product of each of the ${o.hidden} outputs, ${L} lane${L > 1 ? 's' : ''} an output`);
  if (!d.sums) {
    step.strided('n', `${o.hidden}u`, (l, n) => {
      const acc = l.var('p_acc', '0.0');
      l.for('r', '0u', (r) => `${r} < ${columns}u`, (rb, r) => rb.line(`${acc} = fma(${value.name}[${r}], ${W}[${n} * ${inner}u + ${index.name}[${r}]], ${acc});`));
      l.line(`${out(n)} = ${acc};`);
    });
    return;
  }
  const sums = d.sums.name;
  const per = kb.workgroupSize / L;
  // Every thread runs every pass (the barriers need uniform control flow); outputs past hidden add nothing.
  step.for('n0', '0u', (n0) => `${n0} < ${o.hidden}u`, (l, n0) => {
    const n = l.let('n', `${n0} + lid / ${L}u`);
    const q = l.let('q', `lid % ${L}u`);
    const acc = l.var('p_acc', '0.0');
    l.block(`if (${n} < ${o.hidden}u)`, (g) => {
      g.for('r', q, (r) => `${r} < ${columns}u`, (rb, r) => rb.line(`${acc} = fma(${value.name}[${r}], ${W}[${n} * ${inner}u + ${index.name}[${r}]], ${acc});`), { step: (r) => `${r} += ${L}u` });
    });
    l.line(`${sums}[lid] = ${acc};`);
    l.line('workgroupBarrier();');
    l.block(`if (${q} == 0u && ${n} < ${o.hidden}u)`, (g) => g.line(`${out(n)} = ${[...Array(L).keys()].map((k) => `${sums}[lid + ${k}u]`).join(' + ')};`));
    l.line('workgroupBarrier();');
  }, { step: (n0) => `${n0} += ${per}u` });
}
