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
// The epilogue is bound by memory latency, not bandwidth: a workgroup reads C·hidden floats of W_o (48 KB at 16
// columns, hidden 768), a few per thread, so what matters is how many of a thread's loads are in flight at once.
// Thread t owns outputs n = t, t + WG, … (hidden / WG of them) and reads the workgroup's C columns of each row n;
// the loop over them is generated unrolled (hidden, WG and C are known here) with every load of a group (at most
// O_PROJECTION_LOADS_IN_FLIGHT, which bounds the registers) issued before its FMAs, and no barrier anywhere, so a
// thread waits for DRAM a few times rather than once a pass. Where the workgroup's columns are contiguous in W_o's
// row — o's row is [head, rest] so column (s, c) is s·NR + c, and the blocks tile NR — they start at wid.x·C and
// are read as C/4 vec4s (16-byte aligned when C and NR are multiples of 4); elsewhere (ragged blocks, another axis
// order) a scalar load a column at its staged index. A software adapter (lavapipe) gets the same loads as plain
// loops — over its outputs, and over the columns — since it has no memory latency to hide and its compiler takes
// seconds over the unrolled form. Each output's sum is in column order in every form, so the result is the same
// floats run after run and on either kind of adapter.
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

/** Loads (vec4 or scalar) a thread issues before using any: registers for 16 vec4s beside the step's own. */
export const O_PROJECTION_LOADS_IN_FLIGHT = 16;
/** Loads per unrolled pass over a thread's outputs at most (code size); more outputs loop over such passes. */
const LOADS_PER_PASS = 64;

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

/**
 * Whether a workgroup's columns of W_o's row are C contiguous, 16-byte aligned floats starting at wid.x·C: o's row
 * puts the head axes first (`headFirst`: column (s, c) at s·NR + c), the column blocks tile the NR columns of a head
 * exactly, and C and NR are multiples of 4.
 */
export function oProjectionVec4(columns: number, NR: number, headFirst: boolean): boolean {
  return headFirst && columns % 4 === 0 && NR % columns === 0;
}

/** W_o [hidden, inner] (inner = NS·NR, o's row) and the partials [NP, b, hidden]. */
export function oProjectionBuffers(o: OProjection, inner: number, NP: number): PlanBuffer[] {
  return [
    { name: O_PROJECTION_WEIGHT, role: 'param', floats: () => o.hidden * inner, shape: () => [o.hidden, inner] },
    { name: O_PROJECTION_PARTIALS, role: 'output', floats: (b) => NP * b * o.hidden, shape: (b) => [NP, b, o.hidden] },
  ];
}

/** The workgroup's output columns as the step leaves them for the projection: value, and (scalar loads) its index in o's row. */
export interface StagedOutput {
  readonly value: WorkgroupArray;
  readonly index: WorkgroupArray | null;
}

export interface OProjectionDecls {
  readonly staged: StagedOutput;
  readonly weight: Binding;
  readonly partials: Binding;
  /** W_o read as vec4s at the workgroup's contiguous columns (oProjectionVec4). */
  readonly vec4: boolean;
}

/** Workgroup floats the fused step adds: the staged columns, and their indices where W_o is read a column at a time. */
export function oProjectionFloats(columns: number, vec4: boolean): number {
  return vec4 ? columns : 2 * columns;
}

export function declareOProjection(kb: KernelBuilder, columns: number, vec4: boolean): OProjectionDecls {
  return {
    staged: {
      value: kb.workgroup('o_val', columns, "this workgroup's columns of o (0 past the head's columns)"),
      index: vec4 ? null : kb.workgroup('o_idx', columns, "each column's index in o's row: W_o's column", 'u32'),
    },
    weight: kb.storage(O_PROJECTION_WEIGHT, false, { element: vec4 ? 'vec4<f32>' : 'f32' }),
    partials: kb.storage(O_PROJECTION_PARTIALS, true, { always: true }),
    vec4,
  };
}

/**
 * After the step's output columns are staged (and a barrier): its partial product of every output n, each summed
 * over its columns in column order. Thread lid takes outputs lid, lid + WG, …; on a hardware adapter in passes of
 * U outputs, each pass
 * unrolled, its loads in groups of O_PROJECTION_LOADS_IN_FLIGHT issued before the group's FMAs; outputs past
 * hidden (a ragged last pass) re-read row hidden − 1 and are not written. Every workgroup writes its own row p = wid.x.
 */
export function emitOProjection(kb: KernelBuilder, step: Block, o: OProjection, inner: number, d: OProjectionDecls, columns: number, software: boolean): void {
  const W = kb.use(d.weight);
  const P = kb.use(d.partials);
  const WG = kb.workgroupSize;
  const { value, index } = d.staged;
  const width = d.vec4 ? 4 : 1;
  const loads = columns / width; // per output
  const store = (n: string, acc: string) => `${P}[(wid.x * dims.b + b) * ${o.hidden}u + ${n}] = ${acc};`;
  if (software) {
    step.comment(`o·W_oᵀ over this workgroup's ${columns} columns: its partial product of each of the ${o.hidden} outputs (loops: a software adapter)`);
    step.strided('n', `${o.hidden}u`, (l, n) => {
      const acc = l.var('p_acc', '0.0');
      const base = l.let('w_at', d.vec4 ? `${n} * ${inner / 4}u + wid.x * ${loads}u` : `${n} * ${inner}u`);
      l.for('k', '0u', (k) => `${k} < ${loads}u`, (cb, k) => {
        if (!d.vec4) return cb.line(`${acc} = fma(${value.name}[${k}], ${W}[${base} + ${index!.name}[${k}]], ${acc});`);
        const w = cb.let('w', `${W}[${base} + ${k}]`);
        'xyzw'.split('').forEach((c, j) => cb.line(`${acc} = fma(${value.name}[4u * ${k} + ${j}u], ${w}.${c}, ${acc});`));
      });
      l.line(store(n, acc));
    });
    return;
  }
  const per = Math.ceil(o.hidden / WG); // outputs per thread
  const U = Math.min(per, Math.max(1, Math.floor(LOADS_PER_PASS / loads))); // outputs per pass
  const passes = Math.ceil(per / U);
  step.comment(`o·W_oᵀ over this workgroup's ${columns} columns: ${per} of the ${o.hidden} outputs a thread, ${U} a pass, ${loads} ${d.vec4 ? 'vec4' : 'scalar'} loads an output`);
  // Output u of a pass can be past hidden only where the last pass's (u + 1)·WG overshoots: it re-reads the last row.
  const ragged = (u: number) => (passes - 1) * U * WG + (u + 1) * WG > o.hidden;
  const pass = (l: Block, n0: string) => {
    const outs = [...Array(U).keys()].map((u) => {
      const n = u === 0 ? n0 : l.let('n', `${n0} + ${u * WG}u`);
      const row = ragged(u) ? `min(${n}, ${o.hidden - 1}u)` : n;
      const base = d.vec4 ? l.let('w_at', `${row} * ${inner / 4}u + wid.x * ${loads}u`) : l.let('w_at', `${row} * ${inner}u`);
      return { n, base, ragged: ragged(u), acc: l.var('p_acc', '0.0') };
    });
    const all = outs.flatMap((out) => [...Array(loads).keys()].map((k) => ({ out, k })));
    for (let g = 0; g < all.length; g += O_PROJECTION_LOADS_IN_FLIGHT) {
      const group = all.slice(g, g + O_PROJECTION_LOADS_IN_FLIGHT);
      const ws = group.map(({ out, k }) => l.let('w', d.vec4 ? `${W}[${k === 0 ? out.base : `${out.base} + ${k}u`}]` : `${W}[${out.base} + ${index!.name}[${k}u]]`));
      group.forEach(({ out, k }, i) => {
        if (!d.vec4) return l.line(`${out.acc} = fma(${value.name}[${k}u], ${ws[i]}, ${out.acc});`);
        'xyzw'.split('').forEach((c, j) => l.line(`${out.acc} = fma(${value.name}[${4 * k + j}u], ${ws[i]}.${c}, ${out.acc});`));
      });
    }
    for (const out of outs) {
      if (out.ragged) l.block(`if (${out.n} < ${o.hidden}u)`, (w) => w.line(store(out.n, out.acc)));
      else l.line(store(out.n, out.acc));
    }
  };
  if (passes === 1) step.block('', (l) => pass(l, 'lid'));
  else step.for('n0', 'lid', (n0) => `${n0} < ${o.hidden}u`, pass, { step: (n0) => `${n0} += ${U * WG}u` });
}
