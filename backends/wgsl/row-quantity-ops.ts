// What the row quantities a kernel stages (row-quantities.ts) cost, counted as element-ops.ts counts ExprGen's
// work: each quantity once per row, level by level, reading the ones staged below it as loads (hedgehog's q @ W:
// m·d multiply-adds a row; each softmax's max and Σ exp: 2m reads of that row), and then what one element of a
// node costs reading them (hedgehog's feature: a load, an exp and a division, not its softmax's 2m·(1 + d) again).
// The quantities come from the generator's own decision (chunked/row-reductions.ts's stagedReductions for the chunk
// kernel, feature-rows.ts's featureRowQuantities for a feature kernel), so the price follows what is emitted.
import type { Id, Program } from '../../src/ir/types.ts';
import type { Sizes } from './common.ts';
import { elementOps } from './element-ops.ts';
import { rowWidth, type RowQuantity } from './row-quantities.ts';

/** The staged quantities priced: each with its operations per row, and what an element reading them sees. */
export interface StagedRowOps<Q extends RowQuantity = RowQuantity> {
  readonly quantities: readonly { q: Q; ops: number }[];
  /** Nodes read as loads: `leaves` and every staged value. */
  readonly leaves: ReadonlySet<Id>;
  /** Softmaxes whose max and Σ exp are staged. */
  readonly stats: ReadonlySet<Id>;
}

/** Prices `quantities` (in the order they are staged, level by level) over the nodes `leaves` already read as loads. */
export function stagedRowOps<Q extends RowQuantity>(p: Program, sizes: Sizes, quantities: readonly Q[], leaves: ReadonlySet<Id>): StagedRowOps<Q> {
  const loads = new Set(leaves);
  const stats = new Set<Id>();
  const priced: { q: Q; ops: number }[] = [];
  for (const q of [...quantities].sort((a, b) => a.level - b.level)) {
    const n = p.nodes[q.id];
    // A staged softmax's statistics: its operand read twice over the axis (the max, then Σ exp(x − max)).
    const each = n.op === 'softmax' && q.kind === 'stats' ? 2 * sizes[n.axis] * (1 + elementOps(p, sizes, n.x, loads, stats)) : elementOps(p, sizes, q.id, loads, stats);
    priced.push({ q, ops: rowWidth(q, sizes) * each });
    // read as a load from here on: a quantity of a higher level reads it (none of its own level can)
    (q.kind === 'stats' ? stats : loads).add(q.id);
  }
  return { quantities: priced, leaves: loads, stats };
}

/** Operations of one element of `id` computed where `staged` are read instead of recomputed. */
export const stagedElementOps = (p: Program, sizes: Sizes, id: Id, staged: Pick<StagedRowOps, 'leaves' | 'stats'>): number => elementOps(p, sizes, id, staged.leaves, staged.stats);
