// The chunked kernel: one workgroup per (batch b, head slice s, tile of value columns) walks the sequence in
// chunks of C positions. Per chunk it stages the features in workgroup memory, builds one score matrix A per
// output group (the prefix terms' masked φψᵀ with their decay, the bounded terms' scores), multiplies A by the
// chunk's values, adds φ·S_prev for the prefix terms, adds the direct (convolution) taps that read the previous
// chunk's last values, normalises, writes o, and folds the chunk into S. One pass over V for every term.
//
//   o_i = Σ_groups [ Σ_{j∈chunk∪halo} A_g[i,j] v_j + Σ_k φ_k,i·(decay_i ⊙ S_k) ] / (den_g + eps)   (norm groups)
//   S_k ← decay_chunk ⊙ S_k + Σ_j (decay_{j→end} ψ_k,j) ⊗ v_j
//
// The same template, given one term and `partial` output, is the unfused per-term kernel. This file assembles
// it: the analysis (chunked/analysis.ts), its declarations (chunked/declarations.ts), then one emitter per phase,
// in the order they run:
//
//   state start, open groups            chunked/state.ts
//   1 stage rows, cumulative log-decay  chunked/stage.ts (where it applies, from loads issued during the previous
//                                       chunk: staging.ts prefetchSlots)
//   2 score tiles, partial denominators chunked/scores.ts (a resident kernel's φ·S_prev, φ·z from the lanes'
//                                       registers first: chunked/resident.ts)
//   3 row denominators (and early z)    chunked/denominators.ts
//   4 outputs                           chunked/outputs.ts (a convolution's weights hoisted before the loop:
//                                       chunked/taps.ts)
//   5 fold the chunk into S, z          chunked/state.ts, chunked/fold-tiled.ts (4 and 5 at once, on two halves
//                                       of the workgroup, where they overlap: chunked/teams.ts)
//   after the last chunk: export        chunked/export.ts
import type { OutputItem, Program, Term } from '../../src/ir/types.ts';
import type { Sizes } from './common.ts';
import { featureNodes } from './feature-nodes.ts';
import { KernelBuilder } from './kernel-builder.ts';
import type { Kernel } from './plan.ts';
import { analyseSoftmax, isSoftmaxProgram, softmaxSharedFloats } from './softmax-analysis.ts';
import { shapeOf } from './softmax-tiled.ts';
import type { Block } from './wgsl-block.ts';
import { analyseChunk, itemsOver, valueGroups, type ChunkAnalysis, type ChunkKernelSpec, type ChunkSchedule } from './chunked/analysis.ts';
import { declareArrays, declareBindings, type ChunkKernel } from './chunked/declarations.ts';
import { emitDenominators } from './chunked/denominators.ts';
import { emitSegmentState, emitStateExport } from './chunked/export.ts';
import { emitOutputs } from './chunked/outputs.ts';
import { emitScores } from './chunked/scores.ts';
import { emitDecayPrefix, emitStage, prefetchStage } from './chunked/stage.ts';
import { segmentCount } from './chunked/segments.ts';
import { declareResident, emitResidentProducts } from './chunked/resident.ts';
import { emitEarlyState } from './chunked/early-state.ts';
import { emitFold, emitOpenGroupJoin, emitSegmentDecay, emitStateStart } from './chunked/state.ts';
import { emitTapWeights, type HoistedTaps } from './chunked/taps.ts';
import { declareHeld, emitHeldStore, emitOverlapped, type HeldState } from './chunked/teams.ts';

export type { ChunkKernelSpec, ChunkSchedule } from './chunked/analysis.ts';
export { segBuffer, segmentable, segmentCount } from './chunked/segments.ts';
export { layoutOf } from './layout.ts';

/** The comment a chunk kernel whose staging is prefetched carries (tests look for it). */
export const PREFETCH_MARK = 'prefetched staging';

/** The kernel of `spec` declared: its analysis, arrays, bindings and the workgroup's indices, before any phase. */
function declareKernel(spec: ChunkKernelSpec): ChunkKernel {
  const a = analyseChunk(spec);
  const kb = new KernelBuilder(a.WG, a.resident ? ['wid', 'lid', 'lane'] : ['wid', 'lid']);
  const arrays = declareArrays(a, kb);
  const io = declareBindings(a, kb);
  const main = kb.body;
  main.define('s', `wid.x / ${a.RT}u`);
  main.define('tile', `wid.x % ${a.RT}u`);
  if (a.segmented) main.define('sg', 'wid.y', 'segment');
  main.define('b', a.segmented ? 'wid.z' : 'wid.y');
  const head = main.split(a.L.head, a.sizes, 's', 'hx');
  const resident = declareResident(a, main);
  return { a, arrays, io, kb, head, ...(resident && { resident }) };
}

/**
 * The global loads per invocation that the chunk kernel of `spec` issues a chunk ahead (its PREFETCH_MARK line), or
 * null where it loads each chunk's rows at the chunk's start: the generator's own decision (chunked/stage.ts
 * prefetchStage), for the schedule model, from the kernel declared but not emitted.
 */
export function prefetchedLoads(spec: ChunkKernelSpec): number | null {
  return prefetchStage(declareKernel(spec))?.held ?? null;
}

export function chunkKernel(spec: ChunkKernelSpec): Kernel {
  const K = declareKernel(spec);
  const { a, kb } = K;
  const main = kb.body;
  if (a.segmented) main.define('nseg', segmentCount(a.C, a.segment));
  // spans (ChunkSchedule.span): the output launch's workgroup sg walks segments sg·P … sg·P + P − 1; the state launch
  // folds nothing in the last span, whose segments' states no span reads (the whole workgroup returns at once)
  const P = a.segmented ? Math.max(1, a.spec.schedule.span ?? 1) : 1;
  if (P > 1) {
    main.define('nspan', `(nseg + ${P - 1}u) / ${P}u`);
    if (a.segmented === 'state') main.line(`if (sg >= (nspan - 1u) * ${P}u) { return; }`);
  }
  emitStateStart(K, main);
  main.define('nchunks', `(dims.t + ${a.C - 1}u) / ${a.C}u`);
  const G = a.segment * (a.segmented === 'output' ? P : 1);
  const [first, end] = a.segmented ? [`sg * ${G}u`, `min(nchunks, (sg + 1u) * ${G}u)`] : ['0u', 'nchunks'];
  const pf = prefetchStage(K);
  const taps = emitTapWeights(K, main);
  const held = declareHeld(K, main);
  /** The loads of chunk `c` (a u32 expression < end, guarded by the caller) into the held registers. */
  const loadChunk = (b: Block, c: string) => {
    const c0 = b.let('c0_next', `(${c}) * ${a.C}u`);
    pf!.load(b, { c0, n: b.let('n_next', `min(${a.C}u, dims.t - ${c0})`) });
  };
  if (pf) {
    main.comment(`${PREFETCH_MARK}: ${pf.held} global loads per invocation held in registers, issued a chunk ahead`);
    pf.declare(main);
    main.block(`if (${first} < ${end})`, (b) => loadChunk(b, first));
  }
  main.for('c', first, (c) => `${c} < ${end}`, (chunk) => {
    chunk.define('c0', `c * ${a.C}u`);
    chunk.define('n', `min(${a.C}u, dims.t - c0)`);
    // The next chunk's loads, in flight while this one's scores, outputs and fold run; none past this workgroup's last chunk.
    emitChunkPhases(K, chunk, pf ? { stage: pf.stage, ahead: (b) => b.block(`if (c + 1u < ${end})`, (l) => loadChunk(l, 'c + 1u')) } : undefined, taps, held ?? undefined, first);
  }, { fixed: true });
  // the last chunk's S, still held by the fold team, for the export to read
  if (held && a.state) {
    emitHeldStore(K, main, held);
    main.line('workgroupBarrier();');
  }
  emitSegmentState(K, main);
  emitStateExport(K, main);
  return kb.build({
    label: spec.label,
    comment: header(a),
    ...(a.segmented
      ? { workgroups: (b: number, t: number) => [a.NS * a.RT, segmentedRows(a, P, Math.ceil(Math.ceil(t / a.C) / G)), b] as [number, number, number] } // G: the span's chunks in an output launch
      : { workgroups: (b: number) => [a.NS * a.RT, b, 1] as [number, number, number], launch: { kind: 'fixed', x: a.NS * a.RT, perBatchY: true } as const }),
  });
}

/**
 * A segmented launch's workgroup rows: one a segment (a span, in an output launch over spans: `n` counts what G
 * covers); a state launch over spans launches none for the last span's segments, whose states nothing reads (at least
 * one row, which returns).
 */
function segmentedRows(a: ChunkAnalysis, P: number, n: number): number {
  return a.segmented === 'state' && P > 1 ? Math.max(1, (Math.ceil(n / P) - 1) * P) : n;
}

/**
 * One chunk's phases 1–5 (after c, c0 and n are defined), ending with a barrier. `prefetch`: the chunk is staged
 * from loads issued a chunk earlier (`stage`), and the next chunk's loads are issued right after its staging
 * barrier (`ahead`). `taps`: convolution weights computed before the chunk loop (chunked/taps.ts). `held`: where
 * the outputs and the fold overlap (chunked/teams.ts), the registers declared before the loop that carry the fold
 * team's S from one chunk into the next. `first`: the loop's first chunk (a segment's, in a segmented output launch),
 * where S is the incoming state and nothing is held yet.
 */
export function emitChunkPhases(K: ChunkKernel, chunk: Block, prefetch?: { stage: (b: Block) => void; ahead: (b: Block) => void }, taps?: ReadonlyMap<string, HoistedTaps>, held?: HeldState, first = '0u'): void {
  if (K.a.overlap && !held) throw new Error(`internal: ${K.a.spec.label}: overlapped phases need the fold team's held registers`);
  if (held) emitHeldStore(K, chunk, held, `c > ${first}`);
  emitOpenGroupJoin(K, chunk);
  if (prefetch) prefetch.stage(chunk);
  else emitStage(K, chunk);
  chunk.line('workgroupBarrier();');
  prefetch?.ahead(chunk);
  emitDecayPrefix(K, chunk);
  emitSegmentDecay(K, chunk);
  emitResidentProducts(K, chunk);
  emitScores(K, chunk, (b) => emitEarlyState(K, b));
  emitDenominators(K, chunk);
  if (held) emitOverlapped(K, chunk, held, taps);
  else {
    emitOutputs(K, chunk, taps);
    emitFold(K, chunk);
  }
  chunk.line('workgroupBarrier();');
}

export function header(a: ChunkAnalysis): string[] {
  return [
    `chunked kernel ${a.spec.label} for ${a.p.name}: terms ${a.terms.map((t) => `${t.name} (${t.form.kind})`).join(', ')}`,
    `chunk ${a.C}, ${a.R} value columns per workgroup, halo ${a.HALO}, head axes [${a.L.head.join(', ')}], column axes [${a.L.rest.join(', ')}]`,
    ...(a.resident ? [`state in subgroup lanes' registers: subgroups of ${a.resident.SG}, ${a.resident.Cw} column(s) a subgroup`] : []),
  ];
}

/**
 * Workgroup memory (in f32s) the chunk kernels of `terms` need under schedule `s`: the arrays their declarations
 * make (no body is emitted), the largest kernel's when the terms read different values and so run in separate
 * kernels. The scheduler keeps it under the adapter's limit. `partial`: the kernels write num/den parts for a combine
 * kernel (the unfused plan's term kernels, lower.ts), which stages row denominators even for an unnormalised item;
 * absent, as a fused plan's kernels do (partial only when the terms split over several kernels). The unfused plan
 * reads every feature node from its feature kernel, so its kernels stage no row reductions of their own; a fused
 * plan's are counted as if it had no prologue (one with a prologue may stage fewer: the estimate errs on the safe side),
 * unless `materialised` names the nodes its kernels read from buffers (the schedule model's estimate of each plan).
 * `resident`: the kernels keep the state in subgroup lanes' registers (no S, z arrays: chunked/resident.ts).
 */
export function sharedFloats(p: Program, sizes: Sizes, terms: readonly Term[], items: readonly OutputItem[], s: ChunkSchedule, partial?: boolean, materialised?: ReadonlySet<number>, resident?: Pick<ChunkKernelSpec, 'resident' | 'subgroupSize'>): number {
  if (isSoftmaxProgram(p)) {
    // the flash kernels: the register-tiled one where the schedule names it (`block`, softmax-tiled.ts), else softmax-chunked.ts's
    const a = analyseSoftmax(p, sizes);
    return s.block ? shapeOf(a, s).floats : softmaxSharedFloats(a, s.chunk);
  }
  const groups = valueGroups(p, terms);
  return Math.max(
    ...groups.map((group) => {
      const kb = new KernelBuilder(s.threads, []);
      const read = materialised ?? new Set<number>(partial ? featureNodes(p) : []);
      // a segmented schedule's largest launch is its output launch (the state launch stages no outputs); an unfused
      // plan's segments are its stateless kernels' only (lower.ts)
      const part = partial ?? groups.length > 1;
      const segmented = s.segment && (!part || !group.some((t) => t.form.kind === 'prefix'));
      const spec = { program: p, sizes, terms: group, items: itemsOver(items, group), partial: part, schedule: s, materialised: read, label: 'shared', ...(segmented && { segmented: 'output' as const }), ...resident };
      declareArrays(analyseChunk(spec), kb);
      return kb.workgroupFloats();
    }),
  );
}
