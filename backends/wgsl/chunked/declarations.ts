// The chunk kernel's declarations, made once from its analysis: the workgroup arrays (whose sizes are the
// kernel's workgroup memory: sharedFloats reads them back) and the storage bindings. Emitters reach arrays and
// bindings through the records here, never by rebuilding a name.
import type { Id } from '../../../src/ir/types.ts';
import { programReader } from '../common.ts';
import { offset, type Index, type Positions, type Resolver } from '../expr.ts';
import type { Binding, KernelBuilder, WorkgroupArray } from '../kernel-builder.ts';
import { partDen, psiRowStride, type ChunkAnalysis, type ChunkIo, type PrefixPlan } from './analysis.ts';
import { rowWidth } from '../row-quantities.ts';
import { stagedReductions, type StagedReduction } from './row-reductions.ts';
import { quadStride } from './tiles.ts';
import { phiSStride, residentNeedsZ, type ResidentRegs } from './resident-shape.ts';
import { segBuffer, sumsOwnSpans } from './segments.ts';

/** Workgroup memory of one prefix term. */
export interface PrefixArrays {
  readonly phi: WorkgroupArray; // [C][F]
  readonly psi: WorkgroupArray; // [F][C+1] (transposed) or [C+psiHalo][F]
  /** [F][R]: the state's columns of this tile; absent in a resident kernel (registers: resident.ts). */
  readonly S?: WorkgroupArray;
  readonly z?: WorkgroupArray; // [F]
  /**
   * A resident kernel's φ_i·(decay_i ⊙ S_prev) [C][R] and φ_i·(decay_i ⊙ z_prev) [C], reduced from the registers each
   * chunk; an overlapped kernel's with ChunkAnalysis.earlyState, computed by its fold team in the score phase.
   */
  readonly phiS?: WorkgroupArray;
  readonly phiZ?: WorkgroupArray;
  /**
   * The open group of a past_groups term longer than a chunk, So [F][R], in registers: invocation lid holds element
   * lid + t·WG in register `regs[t]` (state.ts openTrips), declared before the chunk loop by emitStateStart.
   */
  readonly So?: OpenGroupRegs;
  readonly zo?: WorkgroupArray;
  readonly lg?: WorkgroupArray; // [C][gateWidth]: inclusive Σ log(decay) from the chunk start
  /** A segment-state launch's Σ log decay of its chunks so far, gate value lid + t·WG in `regs[t]` (state.ts). */
  readonly segL?: OpenGroupRegs;
}

/** A past_groups term's open group in registers (PrefixArrays.So): one a trip of the workgroup over its F·R elements. */
export interface OpenGroupRegs {
  readonly regs: string[];
}

export interface ChunkArrays {
  readonly prefix: readonly PrefixArrays[]; // by PrefixPlan.k
  /** Where each staged query/key feature lives ([rows][W]): its own array or the aliased φ/ψ. */
  readonly staged: ReadonlyMap<Id, string>;
  /** [CH][R]: the chunk's values and halo, this tile's columns; vec4, four columns each, in a resident kernel of 4 columns a subgroup (valuesVec4). */
  readonly vs: WorkgroupArray;
  readonly A: ReadonlyMap<number, WorkgroupArray>; // by output group: [C][CA]
  readonly rowden: ReadonlyMap<number, WorkgroupArray>; // [C]
  readonly denp: ReadonlyMap<number, WorkgroupArray>; // [C][NTJ]: partial row sums of the score tiles
  /**
   * Row quantities the staged features read (row-reductions.ts), by node, in staging order: a value's [halo + C][W]
   * (row r at r + halo), a softmax's max and Σ exp [halo + C] each.
   */
  readonly reductions: ReadonlyMap<Id, StagedRow>;
}

export type StagedRow = StagedReduction & { readonly W: number } & ({ readonly kind: 'value'; readonly array: WorkgroupArray } | { readonly kind: 'stats'; readonly max: WorkgroupArray; readonly sum: WorkgroupArray });

export interface ChunkBindings {
  /** Reads inputs, parameters and materialised features. */
  readonly read: Resolver;
  /** A kernel with its own memory interface (ChunkKernelSpec.io) stores its outputs through this. */
  readonly store?: ChunkIo['store'];
  readonly state: ReadonlyMap<string, Binding>; // by buffer name ('state:S0', …), bound once written
  readonly segS: readonly Binding[]; // by PrefixPlan.k
  readonly segZ: readonly Binding[];
  /** A decayed term's Σ log decay per segment (segments.ts), by PrefixPlan.k; null for an undecayed term. */
  readonly segG: readonly (Binding | null)[];
  readonly out?: Binding;
  readonly parts: readonly { readonly num: Binding; readonly den?: Binding }[]; // partial kernels, per item (den: normalised items only, partDen)
  /** Kept numerators and denominators (ChunkKernelSpec.keep), by output group. */
  readonly kept: ReadonlyMap<number, KeptBinding>;
}

export interface KeptBinding {
  readonly num: Binding;
  readonly den: Binding;
  readonly denAxes: readonly string[];
}

/** What every phase emitter reads: the analysis, its declarations, the builder they live in, the head index. */
export interface ChunkKernel {
  readonly a: ChunkAnalysis;
  readonly arrays: ChunkArrays;
  readonly io: ChunkBindings;
  readonly kb: KernelBuilder;
  /** The head axes' indices of this workgroup's slice s (hx_AXIS, split in the kernel's prologue). */
  readonly head: Index;
  /** The registers that hold the state in a resident kernel (resident.ts); absent otherwise. */
  readonly resident?: ResidentRegs;
}

/**
 * How a chunk kernel's workgroup arrays are made: `keep` for what lives across chunks (the state S, z and an open
 * group), `chunk` for what each chunk stages afresh. A kernel that runs several chunk sections in turn
 * (chunked/sections.ts) lets their `chunk` arrays share memory; a plain kernel declares every array.
 */
export interface ArrayAllocator {
  /** `length` elements of `type` (default f32). */
  keep(stem: string, length: number, note?: string, type?: WorkgroupArray['type']): WorkgroupArray;
  chunk(stem: string, length: number, note?: string, type?: WorkgroupArray['type']): WorkgroupArray;
}

export function ownArrays(kb: KernelBuilder): ArrayAllocator {
  const make = (stem: string, length: number, note?: string, type?: WorkgroupArray['type']) => kb.workgroup(stem, length, note, type);
  return { keep: make, chunk: make };
}

export function declareArrays(a: ChunkAnalysis, kb: KernelBuilder, alloc: ArrayAllocator = ownArrays(kb)): ChunkArrays {
  const { C, R } = a;
  const prefix = a.prefix.map((q): PrefixArrays => {
    const phi = q.vec4 ? alloc.chunk(`phi${q.k}`, (C * q.F) / 4, `[row][f / 4], four features a vec4`, 'vec4<f32>') : alloc.chunk(`phi${q.k}`, C * q.F);
    const psi = q.psiVec4
      ? alloc.chunk(`psi${q.k}`, C * psiStride(q), `[row][f / 4], rows padded to ${psiStride(q)} vec4`, 'vec4<f32>')
      : q.transposed
      ? alloc.chunk(`psi${q.k}`, (C + 1) * q.F, `[f][row], rows padded to ${C + 1}`)
      : alloc.chunk(`psi${q.k}`, (C + q.psiHalo) * psiRowStride(q), `[row][f], rows padded to ${psiRowStride(q)}: also the key feature of a bounded term, with its halo`);
    // (a segment-state launch computes no outputs: it only folds, in registers)
    const state = a.resident
      ? a.segmented === 'state'
        ? {}
        : {
          phiS: alloc.chunk(`phiS${q.k}`, C * phiSStride(a), `[row][column], rows padded to ${phiSStride(a)}: φ·S_prev, reduced from the lanes' registers`),
          ...(residentNeedsZ(a, q) && { phiZ: alloc.chunk(`phiZ${q.k}`, C, '[row]: φ·z_prev, likewise') }),
        }
      : {
        S: alloc.keep(`S${q.k}`, q.F * R),
        z: q.vec4 ? alloc.keep(`z${q.k}`, q.F / 4, '[f / 4]', 'vec4<f32>') : alloc.keep(`z${q.k}`, q.F),
        // computed by the fold team in the score phase, read by the outputs (chunked/early-state.ts)
        ...(a.earlyState && {
          phiS: alloc.chunk(`phiS${q.k}`, (C * R) / 4, "[output item]: φ·S_prev of the item's four rows, by the fold team in the score phase", 'vec4<f32>'),
          ...(a.outputDen && residentNeedsZ(a, q) && { phiZ: alloc.chunk(`phiZ${q.k}`, C, '[row]: φ·z_prev, likewise') }),
        }),
      };
    // (a resident kernel keeps the open group in lanes' registers too: resident.ts)
    const open = q.openGroup && !a.resident
      ? { So: { regs: [] }, zo: alloc.keep(`zo${q.k}`, q.F, `the group still open (past_groups(${q.openGroup}) spans several chunks); its S in registers`) }
      : {};
    const lg = q.gateWidth ? { lg: alloc.chunk(`lg${q.k}`, C * q.gateWidth, 'inclusive Σ log(decay) from the chunk start') } : {};
    // a segment-state launch's Σ log decay over its chunks, in registers (state.ts segmentDecay)
    const segL = q.gateWidth && a.segmented === 'state' ? { segL: { regs: [] } } : {};
    return { phi, psi, ...state, ...open, ...lg, ...segL };
  });
  const staged = new Map<Id, string>();
  for (const f of a.declared) {
    if (f.alias) staged.set(f.id, f.side === 'query' ? prefix[f.alias.k].phi.name : prefix[f.alias.k].psi.name);
    else staged.set(f.id, alloc.chunk(`${f.side === 'query' ? 'qf' : 'kf'}${f.id}`, (f.side === 'query' ? C : a.CH) * f.stride).name);
  }
  const vsNote = `values of rows c0-${a.HALO} … c0+${C - 1}, this workgroup's columns`;
  const vs = valuesVec4(a) ? alloc.chunk('vs', (a.CH * R) / 4, `${vsNote}, four a vec4`, 'vec4<f32>') : alloc.chunk('vs', a.CH * R, vsNote);
  const A = new Map(
    a.aGroups.map((g) => [g, a.rowQuads ? alloc.chunk(`A${g}`, a.CA * quadStride(C), `[key column][row ti]: rows ti + m·${C / 4} a vec4 (row quads), columns padded to ${quadStride(C)}`, 'vec4<f32>') : alloc.chunk(`A${g}`, C * a.CA)]),
  );
  // (a resident kernel's outputs, and an overlapped one's with outputDen, sum their rows' denominators themselves: outputs.ts)
  const denGroups = a.resident || a.outputDen ? [] : a.denGroups;
  const rowden = new Map(denGroups.map((g) => [g, alloc.chunk(`rowden${g}`, C)]));
  const denp = new Map(denGroups.filter((g) => A.has(g)).map((g) => [g, alloc.chunk(`denp${g}`, C * a.tile.NTJ)]));
  const reductions = new Map(
    stagedReductions(a).map((r): [Id, StagedRow] => {
      const W = rowWidth(r, a.sizes);
      const span = `${W > 1 ? `[row][${r.axes.join(', ')}] ` : ''}per row c0-${r.halo} … c0+${C - 1}, once per row`;
      const length = (C + r.halo) * W;
      if (r.kind === 'stats') return [r.id, { ...r, kind: 'stats', W, max: alloc.chunk(`smx${r.id}`, length, `max of softmax %${r.id} ${span}`), sum: alloc.chunk(`ssm${r.id}`, length, `Σ exp of softmax %${r.id} ${span}`) }];
      return [r.id, { ...r, kind: 'value', W, array: alloc.chunk(`red${r.id}`, length, `%${r.id} ${span}`) }];
    }),
  );
  return { prefix, staged, vs, A, rowden, denp, reductions };
}

export function declareBindings(a: ChunkAnalysis, kb: KernelBuilder): ChunkBindings {
  const name = a.spec.segmentBuffer ?? segBuffer;
  const segments = () => (a.segmented ? a.prefix.map((q) => [kb.storage(name('S', q.k), a.segmented === 'state', { always: true }), kb.storage(name('z', q.k), a.segmented === 'state', { always: true })]) : []);
  // the output launch over spans combines the decayed segments' states itself (segments.ts sumsOwnSpans); the state launch writes them
  const gates = () => a.prefix.map((q) => (a.segmented && q.gateWidth && (a.segmented === 'state' || sumsOwnSpans(a)) ? kb.storage(segBuffer('g', q.k), a.segmented === 'state', { always: true }) : null));
  if (a.spec.io) {
    const io = a.spec.io(kb);
    const seg = segments();
    return { read: io.read, store: io.store, state: new Map(), segS: seg.map((x) => x[0]), segZ: seg.map((x) => x[1]), segG: a.prefix.map(() => null), parts: [], kept: new Map() };
  }
  const read = programReader(kb, a.p, a.sizes, (where) => `b * dims.t + ${where}`, { materialised: a.spec.materialised });
  const state = new Map((a.state?.buffers ?? []).map((b) => [b.name, kb.storage(b.name, true)]));
  const seg = segments();
  const partial = a.spec.partial;
  // (a segment-state launch writes no outputs: an unfused plan's prefix kernel over segments binds its parts in its output launch)
  const parts = partial && a.segmented !== 'state'
    ? a.items.map((it, g) => ({
        num: kb.storage(`${a.spec.label}:part${g}:num`, true, { name: `part_${g}_num`, always: true }),
        ...(partDen(it) && { den: kb.storage(`${a.spec.label}:part${g}:den`, true, { name: `part_${g}_den`, always: true }) }),
      }))
    : [];
  const out = partial ? undefined : kb.storage('out:o', true, { always: true });
  const kept = new Map((a.spec.keep ?? []).map((k) => [k.g, { num: kb.storage(k.num, true, { always: true }), den: kb.storage(k.den, true, { always: true }), denAxes: k.denAxes }]));
  return { read, state, segS: seg.map((x) => x[0]), segZ: seg.map((x) => x[1]), segG: gates(), out, parts, kept };
}

/**
 * Element i (a u32 expression) of a workgroup array as an f32 reference: `arr[i]`, or of a vec4 array (PrefixPlan.vec4)
 * its component i % 4 — a dynamic component, for reads outside the loops over features (the exports, a ψ row in the
 * z update of a term the kernel keeps f32 elsewhere). Never a store into a vec4 array: where a backend writes a
 * component as a read-modify-write of the vector (Tint's HLSL), invocations storing neighbouring elements would race.
 */
export function elem(arr: WorkgroupArray, i: string): string {
  return arr.type === 'vec4<f32>' ? `${arr.name}[(${i}) / 4u][(${i}) % 4u]` : `${arr.name}[${i}]`;
}

/**
 * Whether the values are staged as vec4 (four neighbouring columns of a row): in a resident kernel whose subgroups own
 * 4 columns each (resident.ts), so that its fold, which every lane of a subgroup runs on the same 4 columns of a row,
 * reads them as one 16-byte broadcast where it made four (the fold is ~40 % of the hand kernel's time on the H200).
 * Everything else reads one column at a time, through `elem`.
 */
export function valuesVec4(a: ChunkAnalysis): boolean {
  return a.resident?.Cw === 4;
}

/** Column `col` of row `row` (u32 expressions, the row counted from the halo's start) of the staged values. */
export function valueAt(K: ChunkKernel, row: string, col: string): string {
  return elem(K.arrays.vs, `(${row}) * ${K.a.R}u + ${col}`);
}

/** Prefix term q's state arrays in workgroup memory: every kernel has them but a resident one, whose emitters never ask. */
export function stateArrays(K: ChunkKernel, q: PrefixPlan): PrefixArrays & { readonly S: WorkgroupArray; readonly z: WorkgroupArray } {
  const { S, z } = K.arrays.prefix[q.k];
  if (!S || !z) throw new Error(`internal: ${K.a.p.name}: term ${q.term.name}'s state is in lanes' registers (resident.ts), not workgroup memory`);
  return { ...K.arrays.prefix[q.k], S, z };
}

/** vec4s a row of a vec4 ψ (PrefixPlan.psiVec4) takes: F/4, or one more where that is even. */
export function psiStride(q: PrefixPlan): number {
  const P = q.F / 4;
  return P % 2 ? P : P + 1;
}

/** ψ_k at `row`, features 4·f4 … 4·f4 + 3, of a term whose ψ is vec4 (PrefixPlan.psiVec4). */
export function psiVec(K: ChunkKernel, q: PrefixPlan, row: string, f4: string): string {
  return `${K.arrays.prefix[q.k].psi.name}[(${row}) * ${psiStride(q)}u + ${f4}]`;
}

/** φ_k at `row` (from the chunk start), features 4·f4 … 4·f4 + 3, of a vec4 term (PrefixPlan.vec4). */
export function phiVec(K: ChunkKernel, q: PrefixPlan, row: string, f4: string): string {
  return `${K.arrays.prefix[q.k].phi.name}[(${row}) * ${q.F / 4}u + ${f4}]`;
}

/** ψ_k[row, f] in workgroup memory (row counted from the chunk start). */
export function psiAt(K: ChunkKernel, q: PrefixPlan, row: string, f: string): string {
  const psi = K.arrays.prefix[q.k].psi.name;
  if (q.psiVec4) return `${psi}[(${row}) * ${psiStride(q)}u + (${f}) / 4u][(${f}) % 4u]`;
  return q.transposed ? `${psi}[(${f}) * ${K.a.C + 1}u + ${row}]` : `${psi}[((${row}) + ${q.psiHalo}u) * ${psiRowStride(q)}u + ${f}]`;
}

/** Σ log(decay) from the chunk start to `row`, feature `f` (its only column for a scalar gate); 0.0 without decay. */
export function logDecayAt(K: ChunkKernel, q: PrefixPlan, row: string, f: string): string {
  const lg = K.arrays.prefix[q.k].lg;
  return lg ? `${lg.name}[${row} * ${q.gateWidth}u + ${q.gatePerFeature ? f : '0u'}]` : '0.0';
}

/** The WGSL name of a decoding-state buffer ('state:S0', …), bound from here on. */
export function stateRef(K: ChunkKernel, buffer: string): string {
  const b = K.io.state.get(buffer);
  if (!b) throw new Error(`internal: ${K.a.p.name}: no decoding-state buffer ${buffer}`);
  return K.kb.use(b);
}

/**
 * The decoding-state buffer of prefix term q's `what` ('state:S0', …), by the term's index in the state's layout: an
 * unfused plan's kernel holds one term as its own k = 0, whatever its place among the program's prefix terms.
 */
export function stateBuffer(K: ChunkKernel, q: PrefixPlan, what: 'S' | 'z' | 'So' | 'zo'): string {
  const k = K.a.state?.prefix.find((e) => e.term.name === q.term.name)?.k ?? q.k;
  return `state:${what}${k}`;
}

/** Start of this (batch, head slice, segment)'s S_k (or z_k) in its segment-state buffer. */
export function segBase(K: ChunkKernel, q: PrefixPlan, what: 'S' | 'z' | 'g'): string {
  // an output launch over spans (ChunkSchedule.span) starts from the scanned state of its span's first segment
  const P = K.a.segmented === 'output' ? Math.max(1, K.a.spec.schedule.span ?? 1) : 1;
  return `((b * ${K.a.NS}u + s) * nseg + ${P > 1 ? `sg * ${P}u` : 'sg'}) * ${what === 'S' ? q.F * K.a.NR : what === 'z' ? q.F : q.gateWidth}u`;
}

/** The positions an expression of this kernel reads: i and j (u32 names), with the kernel's position offset. */
export function positions(K: ChunkKernel, i: string, j: string): Positions {
  return K.a.spec.positionOffset ? { i, j, offset: K.a.spec.positionOffset } : { i, j };
}

/** Reads staged query/key features from workgroup memory (query row `il`, key row `jj`), everything else as `base`. */
export function stagedResolver(K: ChunkKernel, il: string, jj: string): Resolver {
  const features = new Map(K.a.staged.map((f) => [f.id, f]));
  return (n, idx, where, at) => {
    const f = features.get(n.id);
    if (!f) return K.io.read(n, idx, where, at);
    return `${K.arrays.staged.get(n.id)}[${f.side === 'query' ? il : jj} * ${f.stride}u + ${offset(f.axes, K.a.sizes, idx)}]`;
  };
}
