// The per-row quantities a kernel computes once per token (and head) and stages, so that the elements of a feature
// read them instead of recomputing them. ExprGen evaluates a node element by element: hedgehog's
// φ(q)_f = softmax(q @ W, m)_f redid the softmax's max and Σ exp over m for each of its 2m features, and each of
// those 2m reads of (q @ W)_g its own d-long dot product: F·m·d per row where m·d + F suffice. Staged here:
//   - a reduction (sum, norm, matmul) over a feature axis whose result has only head axes (llama's ‖q‖): one value
//     a row;
//   - a softmax's statistics, its max and Σ exp over its axis: two values a row (per element of its other axes);
//   - a reduction with feature axes that a reduction or softmax reads along one of them (hedgehog's q @ W under the
//     softmax): its row of elements, each computed once.
// A reduction that each element reads once (performer's projection q @ W under an elementwise exp) is left inline.
import { operands, type Id, type Node, type Program } from '../../src/ir/types.ts';
import type { Sizes } from './common.ts';

/**
 * A row quantity: a node's elements (`value`) or a softmax's statistics (`stats`), over `axes` — the node's axes
 * that are not head axes (and not the softmax's own axis); none for one value a row.
 */
export interface RowQuantity {
  readonly kind: 'value' | 'stats';
  readonly id: Id;
  readonly axes: readonly string[];
  readonly level: number;
}

const REDUCTION = new Set<Node['op']>(['sum', 'norm', 'matmul']);
const READS_ALONG = new Set<Node['op']>(['sum', 'norm', 'matmul', 'softmax']);

/** Elements of a row quantity: the product of its axes' sizes (1 for one value a row). */
export function rowWidth(q: RowQuantity, sizes: Sizes): number {
  return q.axes.reduce((w, a) => w * sizes[a], 1);
}

/**
 * The row quantities computing `roots` at one position evaluates, each once, after every one it reads (`level`:
 * 1 + the highest level among the staged quantities under it; a level can be staged in one pass, then a barrier).
 * The walk stops at nodes in `stop` (read from a buffer: a materialised feature) and at parameters and constants.
 * `keepHead`: the quantities keep their head axes (a feature kernel's row is a token's, over every head).
 */
export function rowQuantities(p: Program, roots: readonly Id[], head: readonly string[], stop: ReadonlySet<Id> = new Set(), keepHead = false): RowQuantity[] {
  const rowSide = (n: Node) => n.type.side === 'token' || n.type.side === 'query' || n.type.side === 'key';
  // Nodes some reduction or softmax reads along an axis: each of their elements is read many times per element.
  const shared = new Set<Id>();
  const seen = new Set<Id>();
  const mark = (id: Id, under: boolean): void => {
    const key = under ? -1 - id : id;
    if (seen.has(key) || stop.has(id)) return;
    seen.add(key);
    const n = p.nodes[id];
    if (!rowSide(n)) return;
    if (under) shared.add(id);
    for (const x of operands(n)) mark(x, under || READS_ALONG.has(n.op));
  };
  roots.forEach((r) => mark(r, false));
  const staged = (n: Node): RowQuantity['kind'] | null => {
    if (!rowSide(n)) return null;
    const headOnly = (axes: readonly string[]) => axes.every((a) => head.includes(a));
    if (REDUCTION.has(n.op) && (headOnly(n.type.axes) || shared.has(n.id))) return 'value';
    if (n.op === 'softmax') return 'stats';
    return null;
  };
  const level = new Map<Id, number>(); // the highest level at or under a node (0: nothing staged)
  const out: RowQuantity[] = [];
  const visit = (id: Id): number => {
    const hit = level.get(id);
    if (hit !== undefined) return hit;
    const n = p.nodes[id];
    if (stop.has(id) || !rowSide(n)) {
      level.set(id, 0);
      return 0;
    }
    const below = Math.max(0, ...operands(n).map(visit));
    const kind = staged(n);
    const h = kind ? below + 1 : below;
    level.set(id, h);
    if (kind) out.push({ kind, id, axes: n.type.axes.filter((a) => (keepHead || !head.includes(a)) && (kind === 'value' || n.op !== 'softmax' || a !== n.axis)), level: h });
    return h;
  };
  roots.forEach(visit);
  return out;
}
