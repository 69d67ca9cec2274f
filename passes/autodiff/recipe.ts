// How a sum of adjoints computed by term stages is read back: Σ_parts Σ_{over} tensor ⊙ factor.
//
// Usually one part: the stage's output is the sum itself. When the score's adjoint g(i, j) times the rest J(i, j)
// is not one separable term (g = Σ_e dN_i[e] v_j[e] + dZ_i is a contraction, and J may hold another, e.g. the
// adjoint of sum(q[i], d) in dot(q[i], k[j], d) * sum(q[i], d)), the factor of g that sits at the output
// position is pulled out of the sum instead:
//   forward (Σ_j):  Σ_j g J = Σ_e dN_i[e] · W_i[e] + dZ_i · Z_i,   W_i = Σ_j v_j[e] J(i, j),  Z_i = Σ_j J(i, j)
//   reverse (Σ_i):  Σ_i g J = Σ_e v_j[e] · W_j[e] + Z_j,            W_j = Σ_i dN_i[e] J(i, j), Z_j = Σ_i dZ_i J(i, j)
// so the parts are (W, times dN or v, over e) and (Z, times dZ or nothing).
import type { Id } from '../../src/ir/types.ts';
import type { Ops } from './vjp.ts';

export type Factor = { readonly tensor: string; readonly axes: readonly string[] } | { readonly node: Id };

export interface RecipePart {
  readonly tensor: string;
  readonly axes: readonly string[];
  readonly factor: Factor | null;
  readonly over: readonly string[];
}

export interface Recipe {
  readonly parts: readonly RecipePart[];
}

export function single(tensor: string, axes: readonly string[]): Recipe {
  return { parts: [{ tensor, axes, factor: null, over: [] }] };
}

export function tensorsOf(r: Recipe): string[] {
  return r.parts.flatMap((p) => [p.tensor, ...(p.factor && 'tensor' in p.factor ? [p.factor.tensor] : [])]);
}

/** The recipe as an expression in o's graph; `leaf` declares (or finds) a per-token environment tensor there. */
export function buildRecipe(o: Ops, r: Recipe, leaf: (tensor: string, axes: readonly string[]) => Id): Id {
  return r.parts
    .map((p) => {
      let x = leaf(p.tensor, p.axes);
      if (p.factor) x = o.mul(x, 'node' in p.factor ? p.factor.node : leaf(p.factor.tensor, p.factor.axes));
      for (const a of p.over) x = o.sum(x, a);
      return x;
    })
    .reduce((a, b) => o.bin('add', a, b));
}
