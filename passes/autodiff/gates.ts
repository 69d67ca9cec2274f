// Gradients of decays. A term's score carries D(i, j) = Π_{l=j+1..i} α_l (a per-token gate) or γ^(i−j) (a
// parameter, i.e. α_l = γ at every l). With c(i, j) = D ⊙ ∂L/∂D the pair's contribution (over the gate's axes),
//
//   d L / d log α_l = Σ_{(i,j) ∈ M, j < l ≤ i} c(i, j)            (the pairs whose product contains α_l)
//                   = Σ_{t ≥ l} (P_t − K_t),   P_i = Σ_{j ∈ M(i)} c(i, j),   K_j = Σ_{i: j ∈ M(i)} c(i, j).
//
// Proof: Σ_{i ≥ l} P_i counts the masked pairs with i ≥ l; Σ_{j ≥ l} K_j those with j ≥ l, which (every mask
// that admits a decay has j ≤ i) also have i ≥ l; the difference is exactly the pairs with j < l ≤ i. So the
// gate's gradient is one reverse-time cumulative sum (a reversed causal term with score 1) of P − K, fla's dg trick.
// At l = 0 it is Σ_t (P_t − K_t) = 0 up to rounding (α_0 is in no product). For γ: d L / d log γ = Σ_l of it.
//
// P and K usually come for free (Euler's identity): when every monomial of the score is a product containing the
// query-side value F and D exactly once each (and the gate's axes are among F's), scaling F by λ (over the gate's
// axes) scales the score as scaling D by λ does, so Σ_{F's other axes} F_i ⊙ dF_i = P_i, where dF_i is the term's
// Σ_j adjoint of F, which a stage computes anyway; the same with a key-side G gives K_j. Otherwise P and K are two
// more term stages over c(i, j).
import type { GraphBuilder } from '../../src/ir/builder.ts';
import type { Id } from '../../src/ir/types.ts';

type Kind = 'none' | 'F' | 'D' | 'FD' | 'bad';

function reaches(g: GraphBuilder, from: Id, to: Id, memo: Map<Id, boolean>): boolean {
  if (from === to) return true;
  const hit = memo.get(from);
  if (hit !== undefined) return hit;
  const n = g.node(from);
  const ops = n.op === 'binary' || n.op === 'matmul' ? [n.a, n.b] : n.op === 'concat' ? n.xs : n.op === 'select' ? [n.x, n.index] : 'x' in n ? [n.x] : [];
  const r = ops.some((x) => reaches(g, x, to, memo));
  memo.set(from, r);
  return r;
}

/** Is every monomial of the score a product with F and D as factors, each exactly once? */
export function eulerApplies(g: GraphBuilder, score: Id, F: Id, D: Id): boolean {
  const toF = new Map<Id, boolean>();
  const toD = new Map<Id, boolean>();
  const memo = new Map<Id, Kind>();
  const kind = (id: Id): Kind => {
    if (id === F) return 'F';
    if (id === D) return 'D';
    const hit = memo.get(id);
    if (hit !== undefined) return hit;
    let k: Kind;
    const n = g.node(id);
    if (!reaches(g, id, F, toF) && !reaches(g, id, D, toD)) k = 'none';
    else if (n.op === 'binary' && n.fn === 'mul') k = times(kind(n.a), kind(n.b));
    else if (n.op === 'binary' && n.fn === 'div') k = kind(n.b) === 'none' ? kind(n.a) : 'bad';
    else if (n.op === 'binary' && (n.fn === 'add' || n.fn === 'sub')) k = kind(n.a) === 'FD' && kind(n.b) === 'FD' ? 'FD' : 'bad';
    else if (n.op === 'sum' || (n.op === 'unary' && n.fn === 'neg')) k = kind(n.x);
    else k = 'bad';
    memo.set(id, k);
    return k;
  };
  return kind(score) === 'FD';
}

function times(a: Kind, b: Kind): Kind {
  if (a === 'none') return b;
  if (b === 'none') return a;
  if ((a === 'F' && b === 'D') || (a === 'D' && b === 'F')) return 'FD';
  return 'bad';
}
