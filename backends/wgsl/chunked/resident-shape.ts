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
import type { ChunkAnalysis, PrefixPlan, ResidentShape } from './analysis.ts';

// (The shape itself, residentShape, is decided in analysis.ts beside the rest of the analysis; this file holds what
// the declarations and the emitters derive from it.)

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

/** A resident kernel's registers, declared before the chunk loop (resident.ts declareResident). */
export interface ResidentRegs {
  /** The invocation's first column in the tile: cw0 = Cw · its subgroup. */
  readonly cw0: string;
  /** Its subgroup in the workgroup (0 … W − 1). */
  readonly sg: string;
  /** By prefix term k, then column c < Cw: the register of S_k[FL·lane … FL·lane + FL − 1][cw0 + c]. */
  readonly S: readonly (readonly string[])[];
  /** By prefix term k: z_k[FL·lane … FL·lane + FL − 1]. */
  readonly z: readonly string[];
  /**
   * By prefix term k, a past_groups term whose group spans several chunks (PrefixPlan.openGroup): the open group's
   * So_k (by column, as S) and zo_k, which the fold adds to and which join S_k, z_k at the next group's start; else
   * undefined.
   */
  readonly open: readonly ({ readonly S: readonly string[]; readonly z: string } | undefined)[];
}
