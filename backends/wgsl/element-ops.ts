// How many operations the expression generator (expr.ts) spends on one element of a node when it computes the
// node inline, as the fused chunk kernel's prologue does. ExprGen keeps a value only within the block that
// computed it, so a reduction (sum, norm, softmax, matmul) re-evaluates its operand once per step of its loop,
// and every element of a softmax re-runs both of its reductions: hedgehog's φ = softmax(q @ W) costs about
// 3·m·d operations per feature element inline, where its materialised feature kernel is read once per element.
// The schedule model (schedule-model.ts) charges this per staged row; nodes in `leaves` (inputs, materialised
// features, staged row quantities) cost one load, and a softmax in `stats` (its max and Σ exp staged once per row:
// row-quantities.ts) costs its operand, two loads, an exp and a division, as ExprGen emits it with a StatsResolver.
import { assertNever, type Id, type Program } from '../../src/ir/types.ts';
import type { Sizes } from './common.ts';

export function elementOps(p: Program, sizes: Sizes, id: Id, leaves: ReadonlySet<Id> = new Set(), stats: ReadonlySet<Id> = new Set()): number {
  // Within one element a shared operand is computed once (ExprGen's per-block memo): count each node once.
  const seen = new Set<Id>();
  const ops = (x: Id): number => {
    if (seen.has(x)) return 0;
    seen.add(x);
    const n = p.nodes[x];
    if (leaves.has(x)) return 1;
    // Inside a loop nothing is kept from one step to the next: count the body fresh for every step.
    const fresh = (y: Id) => elementOps(p, sizes, y, leaves, stats);
    switch (n.op) {
      case 'input':
      case 'param':
      case 'const':
      case 'position':
        return 1;
      case 'unary':
        return 1 + ops(n.x);
      case 'binary':
        return 1 + ops(n.a) + ops(n.b);
      case 'sum':
      case 'norm':
        return sizes[n.axis] * (1 + fresh(n.x));
      case 'softmax':
        if (stats.has(x)) return ops(n.x) + 4;
        return 2 * sizes[n.axis] * (1 + fresh(n.x)) + ops(n.x) + 2;
      case 'matmul':
        return sizes[n.axis] * (1 + fresh(n.a) + fresh(n.b));
      case 'concat':
        return Math.max(...n.xs.map(fresh));
      case 'outer':
        return 1 + 2 * fresh(n.x);
      case 'at':
        return ops(n.x);
      case 'select':
        return ops(n.index) + ops(n.x);
      case 'decay':
      case 'rope':
        return 4 + ops(n.x);
      default:
        return assertNever(n, 'op');
    }
  };
  return ops(id);
}
