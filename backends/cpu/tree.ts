// The tree form in float64: speculative verification of N draft nodes (parent pointers, topological order)
// against the committed recurrent state after `pos` tokens, and the commit of an accepted path.
//
// A node at depth δ (the root's children of the committed text have δ = 1) sits at absolute position
// a = pos + δ − 1, and its path P(i) is its ancestors and itself. Every mask "j ≤ i" becomes "j ∈ P(i), or
// j committed":
//   prefix (causal):       o_i += φ_i·(D_i ⊙ S) + Σ_{j∈P(i)} s(i, j) v_j,   D_i = Π_{l∈P(i)} α_l (γ^δ for a constant γ)
//   prefix (past_groups):  the committed done groups S, the committed open group when it lies in an earlier
//                          group than a, and the path nodes j with ⌊a_j/C⌋ < ⌊a/C⌋
//   bounded (window/group): the pairs (a, a_j) the mask admits, j on the path or among the committed tokens
//                          the recurrent state keeps (the unfolded convolution: tap l reads the l-th ancestor)
// with s(i, j) evaluated along the path (decay(·) multiplies the gates of the path nodes after j). The
// committed state is read, never written; commitPath folds the accepted path in with recurrent steps.
import { maskAllows } from '../../src/ir/masks.ts';
import type { Bound } from '../../src/ir/shapes.ts';
import type { Program, Term } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast, map, reduce, zip, type Named } from './named.ts';
import { Recurrent, tokenBinding, type RecurrentState } from './recurrent.ts';

export interface TreeNode {
  /** Index of the parent node (earlier in the list), or −1 for a child of the last committed token. */
  readonly parent: number;
  /** The node's per-token inputs over their axes (without b and t), as for one recurrent step. */
  readonly inputs: Readonly<Record<string, Float64Array>>;
}

/** Depth of every node (1 for a child of the committed text); throws unless parents come first. */
export function treeDepths(nodes: readonly { readonly parent: number }[]): number[] {
  const depth: number[] = [];
  nodes.forEach((n, i) => {
    if (!Number.isInteger(n.parent) || n.parent < -1 || n.parent >= i) {
      throw new Error(`tree node ${i} has parent ${n.parent}: parents must be −1 or an earlier node (topological order)`);
    }
    depth.push(n.parent < 0 ? 1 : depth[n.parent] + 1);
  });
  return depth;
}

/** The node indices from the root down to `i`. */
export function rootPath(nodes: readonly { readonly parent: number }[], i: number): number[] {
  const path: number[] = [];
  for (let j = i; j >= 0; j = nodes[j].parent) path.unshift(j);
  return path;
}

export class TreeForm {
  private readonly bound: Bound;
  private readonly per: number;
  private readonly recurrent: Recurrent;

  /** `program` after the passes; params are [...axes] tensors; sizes as for `Recurrent`. */
  constructor(
    readonly program: Program,
    readonly params: Readonly<Record<string, Tensor>>,
    sizes: Readonly<Record<string, number>>,
  ) {
    this.recurrent = new Recurrent(program, params, sizes); // also refuses noncausal and unclassified programs
    ({ bound: this.bound, per: this.per } = tokenBinding(program, params, sizes));
  }

  /** One output per node: what recurrent decoding of the node's root path after `state` would give at the node. */
  evaluate(state: RecurrentState, nodes: readonly TreeNode[]): Float64Array[] {
    const depth = treeDepths(nodes);
    return nodes.map((_, i) => this.node(state, nodes, rootPath(nodes, i), depth[i]));
  }

  /** Folds the accepted path (node indices from a child of the committed text downwards) into `state`. */
  commitPath(state: RecurrentState, nodes: readonly TreeNode[], path: readonly number[]): void {
    treeDepths(nodes);
    path.forEach((n, k) => {
      if (!Number.isInteger(n) || n < 0 || n >= nodes.length) throw new Error(`accepted path entry ${k} is ${n}: not a node of this tree (0..${nodes.length - 1})`);
      const want = k === 0 ? -1 : path[k - 1];
      if (nodes[n].parent !== want) throw new Error(`accepted path entry ${k} (node ${n}) has parent ${nodes[n].parent}, expected ${want}: a path runs from a root down through children`);
    });
    for (const n of path) this.recurrent.step(state, nodes[n].inputs);
  }

  /** o at node `path.at(−1)`: committed state and history, then the path's own pairs. */
  private node(state: RecurrentState, nodes: readonly TreeNode[], path: readonly number[], depth: number): Float64Array {
    const p = this.program;
    const s = this.bound.sizes;
    const pos = state.position;
    // One local sequence: the committed tokens the state keeps, then the path; local index l is position offset + l.
    const seq = [...state.history, ...path.map((n) => nodes[n].inputs)];
    const H = state.history.length;
    const L = seq.length;
    const offset = pos - H;
    const here = L - 1;
    const a = pos + depth - 1;
    const tensors: Record<string, Tensor> = { ...this.params };
    for (const d of p.inputs) {
      const n = count(d.axes, s);
      const data = new Float64Array(L * n);
      seq.forEach((tok, l) => {
        const x = tok[d.name];
        if (!x || x.length !== n) throw new Error(`tree input '${d.name}' must have ${n} values per node (axes [${d.axes.join(', ')}]), got ${x?.length}`);
        data.set(x, l * n);
      });
      tensors[d.name] = { shape: [1, L, ...d.axes.map((ax) => s[ax])], data };
    }
    const ev = new Evaluator(p, tensors, { ...this.bound, t: L }, offset);
    const out = new Float64Array(this.per);
    const byName = new Map(p.terms.map((t) => [t.name, t]));
    for (const item of p.output) {
      const names = item.kind === 'term' ? [item.term] : item.terms;
      const num = new Float64Array(this.per);
      const den = new Float64Array(this.per);
      const add = (into: Float64Array, x: Named, v: Named | null) =>
        forEachBroadcast(p.outAxes, s, [x.axes, v?.axes ?? []], (o, [xi, vi]) => {
          into[o] += v ? x.data[xi] * v.data[vi] : x.data[xi];
        });
      for (const name of names) {
        const t = byName.get(name)!;
        // Committed tokens before the path count only for bounded terms; prefix terms read them from S.
        const first = t.form.kind === 'prefix' ? H : 0;
        if (t.form.kind === 'prefix') {
          const c = this.committed(t, state, ev, here, H, a);
          if (c) {
            add(num, c[0], null);
            add(den, c[1], null);
          }
        }
        for (let jl = first; jl <= here; jl++) {
          if (!maskAllows(t.mask, a, offset + jl)) continue;
          const score = ev.pair(t.score, 0, here, jl, new Map());
          add(num, score, ev.token(t.value, 0, jl));
          add(den, score, null);
        }
      }
      for (let o = 0; o < this.per; o++) out[o] += item.kind === 'norm' ? num[o] / (den[o] + item.eps) : num[o];
    }
    return out;
  }

  /** A prefix term's committed contribution at the node (local index `here`, position a): (φ·(D ⊙ S), φ·(D ⊙ z)). */
  private committed(t: Term, state: RecurrentState, ev: Evaluator, here: number, H: number, a: number): [Named, Named] | null {
    if (t.form.kind !== 'prefix') throw new Error('internal');
    const f = t.form;
    const s = this.bound.sizes;
    const st = state.prefix.get(t.name);
    if (!st) return null; // nothing committed yet
    let S = st.S;
    let z = st.z;
    const mask = t.mask[0];
    if (mask.kind === 'past_groups') {
      const pos = state.position;
      if (st.openS && pos > 0 && Math.floor((pos - 1) / mask.size) < Math.floor(a / mask.size)) {
        S = S ? zip(S, st.openS, s, (x, y) => x + y) : st.openS;
        z = z ? zip(z, st.openZ!, s, (x, y) => x + y) : st.openZ;
      }
    } else if (f.decay && S && z) {
      // D = Π of the gates of every path node (positions pos..a).
      let D: Named;
      if (f.decay.kind === 'constant') {
        D = map(ev.pair(f.decay.gamma, 0, here, here), (g) => g ** (here - H + 1));
      } else {
        D = ev.token(f.decay.alpha, 0, H);
        for (let l = H + 1; l <= here; l++) D = zip(D, ev.token(f.decay.alpha, 0, l), s, (x, y) => x * y);
      }
      S = zip(S, D, s, (x, y) => x * y);
      z = zip(z, D, s, (x, y) => x * y);
    }
    if (!S || !z) return null;
    const phi = ev.pair(f.phi, 0, here, here);
    const read = (x: Named) => {
      const prod = zip(phi, x, s, (u, w) => u * w);
      return f.feature ? reduce(prod, f.feature, s, (u, w) => u + w) : prod;
    };
    return [read(S), read(z)];
  }
}

/** The tree form's outputs, one per node (see TreeForm.evaluate). */
export function evaluateTree(
  program: Program,
  params: Readonly<Record<string, Tensor>>,
  state: RecurrentState,
  nodes: readonly TreeNode[],
  sizes: Readonly<Record<string, number>>,
): Float64Array[] {
  return new TreeForm(program, params, sizes).evaluate(state, nodes);
}

/** Folds an accepted root-to-node path into `state` (see TreeForm.commitPath). */
export function commitPath(
  program: Program,
  params: Readonly<Record<string, Tensor>>,
  state: RecurrentState,
  nodes: readonly TreeNode[],
  path: readonly number[],
  sizes: Readonly<Record<string, number>>,
): void {
  new TreeForm(program, params, sizes).commitPath(state, nodes, path);
}
