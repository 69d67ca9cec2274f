// The row reductions inside what a chunk stages (../row-quantities.ts): a sum, norm or matmul over a
// feature axis whose result has only head axes, like llama_linearized's ‖q‖ and ‖k‖ over d (‖rope(q)‖ in the
// model's layer) or performer's ‖q‖. Phase 1 stages φ, ψ, the bounded terms' features and the values element by
// element, each element with a fresh ExprGen, so a feature q/‖q‖ redid the norm's d-long loop (with any rotations)
// for each of its d elements: d² per row.
// Each row quantity (../row-quantities.ts: those reductions, a softmax's max and Σ exp, hedgehog's q @ W under its
// softmax) is staged once per row into a workgroup array of its own first (stage.ts), level by level, and the
// elements read it from there. The schedule model prices this same list (schedule-model.ts, row-quantity-ops.ts).
import type { Id } from '../../../src/ir/types.ts';
import { rowQuantities, type RowQuantity } from '../row-quantities.ts';
import type { ChunkAnalysis } from './analysis.ts';

/** A row quantity staged per chunk: rows c0 − halo … c0 + C − 1, at row index row + halo. */
export type StagedReduction = RowQuantity & {
  /** Rows before the chunk: the most any slot reading it reaches back (ψ or a key feature with the halo). */
  readonly halo: number;
};

/**
 * The nodes phase 1 stages, each with the rows it reaches back before the chunk — the order of stage.ts's slots:
 * each prefix term's φ (not in a segment-state launch, which writes no outputs), ψ and gate, the bounded terms'
 * own query and key features, the value.
 */
export function stagedRoots(a: ChunkAnalysis): { id: Id; halo: number }[] {
  const outputs = a.segmented !== 'state';
  return [
    ...a.prefix.flatMap((q) => [...(outputs ? [{ id: q.form.phi, halo: 0 }] : []), { id: q.form.psi, halo: q.psiHalo }, ...(q.gateId !== null ? [{ id: q.gateId, halo: 0 }] : [])]),
    ...(outputs ? a.staged.filter((f) => !f.alias).map((f) => ({ id: f.id, halo: f.side === 'query' ? 0 : a.HALO })) : []),
    { id: a.valueId, halo: a.HALO },
  ];
}

/**
 * The row quantities the staged nodes read (not behind a node a prologue materialised: that one is read from its
 * buffer), each once, with the largest halo any of its readers needs, in the order they can be staged.
 */
export function stagedReductions(a: ChunkAnalysis): StagedReduction[] {
  const roots = stagedRoots(a);
  const halo = new Map<Id, number>();
  for (const root of roots) {
    for (const r of rowQuantities(a.p, [root.id], a.L.head, a.spec.materialised)) halo.set(r.id, Math.max(halo.get(r.id) ?? 0, root.halo));
  }
  return rowQuantities(a.p, roots.map((r) => r.id), a.L.head, a.spec.materialised).map((r) => ({ ...r, halo: halo.get(r.id)! }));
}
