// Whether, and how, a chunk kernel keeps its prefix terms' state in the registers of subgroup lanes (the `rs`
// switch, ChunkKernelSpec.resident; the emitters are resident.ts): subgroup g of the workgroup owns Cw of the tile's
// R value columns, lane l features FL·l … FL·l + FL − 1 of each (FL = F / SG: 4, 2 or 1), so a term's S is Cw vecFL
// registers a lane and z one. Decided once, as data, beside the rest of the analysis; where the kernel does not admit
// it, asking for it is refused with the reason — never a kernel that silently keeps S in workgroup memory, or computes
// wrongly. Segmented schedules apply (resident.ts loads and stores the registers across their launches).
//
// Why: at d 128 the tile's S is 32 KB of workgroup memory, read whole by every chunk's outputs and read and written
// whole by its fold; that traffic bounds the kernel (elu_dwconv B4 H16 T4096 D128 2.403 ms on the H200). A
// hand-written kernel with S in lanes' registers (bench/results/chunk-edits/resident-gen.py) ran 1.542 ms there.
import type { ChunkAnalysis, ChunkKernelSpec, PrefixPlan } from './analysis.ts';

export interface ResidentShape {
  /** Lanes a subgroup (the adapter's fixed subgroup size). */
  readonly SG: number;
  /** Subgroups a workgroup (threads / SG). */
  readonly W: number;
  /** Value columns a subgroup owns (R / W): 1, 2 or 4, one register (vecFL) each for every prefix term. */
  readonly Cw: number;
  /** Rows a block of the φ·S_prev reduction: after it, lane l holds row l / Cw, column l % Cw (SG / Cw rows). */
  readonly RB: number;
  /** Blocks a chunk (C / RB). */
  readonly NB: number;
}

/** The kernel's resident shape, undefined where `rs` is not asked for; throws, naming why, where it is asked and does not apply. */
export function residentShape(spec: ChunkKernelSpec, prefix: readonly PrefixPlan[]): ResidentShape | undefined {
  if (!spec.resident) return undefined;
  const { chunk: C, cols: R, threads: WG } = spec.schedule;
  const refuse = (why: string): never => {
    throw new Error(`${spec.program.name}: rs (the state in subgroup lanes' registers) does not apply: ${why}`);
  };
  const SG = spec.subgroupSize;
  if (!SG) refuse(`the adapter has no fixed subgroup size (it needs the 'subgroups' feature and subgroupMinSize = subgroupMaxSize)`);
  const sg = SG!;
  if (spec.io) refuse('a kernel with its own memory interface (a gradient stage)');
  if (!prefix.length) refuse('the kernel has no prefix term, so no state');
  for (const q of prefix) {
    if (![1, 2, 4].some((fl) => q.F === fl * sg)) refuse(`term ${q.term.name} has ${q.F} features; a lane holds 1, 2 or 4 of them, so it needs F = ${sg}, ${2 * sg} or ${4 * sg} (1, 2 or 4 × the subgroup size ${sg})`);
    if (q.openGroup || q.exportOpen) refuse(`term ${q.term.name} keeps a group open (past_groups): its open state would need registers of its own`);
  }
  if (WG % sg) refuse(`${WG} threads are not whole subgroups of ${sg}`);
  const W = WG / sg;
  const Cw = R / W;
  if (![1, 2, 4].includes(Cw)) refuse(`${R} columns over ${W} subgroups (${WG} threads / ${sg}) is not 1, 2 or 4 columns a subgroup`);
  const RB = sg / Cw;
  if (C % RB) refuse(`chunk ${C} is not a multiple of the ${RB} rows a reduction block takes (subgroup size ${sg} / ${Cw} columns a subgroup)`);
  return { SG: sg, W, Cw, RB, NB: C / RB };
}

/**
 * The row stride of phiS ([C][R] padded): R + Cw, so that a subgroup's store of its RB rows × Cw columns (lane l: row
 * l / Cw, column l % Cw) falls on SG distinct banks (row i shifted by Cw·i), where a stride of R (a multiple of 32
 * at the H200's tiles) put every row of a column on one bank, an 8-way conflict. The outputs' reads of a row stay
 * contiguous.
 */
export function phiSStride(a: ChunkAnalysis): number {
  return a.R + (a.resident?.Cw ?? 0);
}

/** Features of prefix term q a lane holds (F / SG: 4, 2 or 1). */
export function laneFeatures(r: ResidentShape, q: PrefixPlan): number {
  return q.F / r.SG;
}

/** Whether prefix term q's φ·z is needed (its output group has row denominators): only then do the owners reduce it. */
export function residentNeedsZ(a: ChunkAnalysis, q: PrefixPlan): boolean {
  return a.denGroups.some((g) => a.groupTerms[g].includes(q.term));
}
