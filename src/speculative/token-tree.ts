// A token tree of one speculative step. Node 0 is the root: the token the target chose last, not yet folded
// into the model's state; every other node is a draft token whose parent is an earlier node, so the node
// list is in topological order (the order the tree kernel and backends/cpu/tree.ts require). Depths count
// from the root (depth 1, as in the tree form: the root sits at the first uncommitted position), so a node
// of depth δ is the token at position pos + δ − 1 when pos tokens are committed.
//
// A node may carry `q`, the draft distribution its token was drawn from (a sampled draft); without it the
// draft is deterministic (q is one-hot at the token) — acceptance.ts picks the rule from that.

export interface TokenTree {
  /** Token of each node; tokens[0] is the root. */
  readonly tokens: readonly number[];
  /** Parent of each node: −1 for the root, otherwise an earlier node. */
  readonly parents: readonly number[];
  /** Depth of each node, the root's 1. */
  readonly depths: readonly number[];
  /** Draft distribution each node's token was sampled from (sampled drafts only). */
  readonly q: readonly (Float64Array | undefined)[];
}

/** Builds a tree node by node; parents always exist before their children. */
export class TreeBuilder {
  private readonly tokens: number[] = [];
  private readonly parents: number[] = [];
  private readonly depths: number[] = [];
  private readonly q: (Float64Array | undefined)[] = [];

  constructor(root: number) {
    this.tokens.push(root);
    this.parents.push(-1);
    this.depths.push(1);
    this.q.push(undefined);
  }

  get size(): number {
    return this.tokens.length;
  }

  /** Adds a child of `parent` and returns its index. */
  add(parent: number, token: number, q?: Float64Array): number {
    if (!Number.isInteger(parent) || parent < 0 || parent >= this.tokens.length) {
      throw new Error(`token tree: parent ${parent} is not a node (0..${this.tokens.length - 1})`);
    }
    this.tokens.push(token);
    this.parents.push(parent);
    this.depths.push(this.depths[parent] + 1);
    this.q.push(q);
    return this.tokens.length - 1;
  }

  /** The tree so far (a snapshot: later adds do not change it). */
  build(): TokenTree {
    return { tokens: [...this.tokens], parents: [...this.parents], depths: [...this.depths], q: [...this.q] };
  }
}

/** A tree from parent indices; checks topological order and a single root at node 0. */
export function treeFromParents(tokens: readonly number[], parents: readonly number[]): TokenTree {
  if (tokens.length === 0 || tokens.length !== parents.length) throw new Error(`token tree: ${tokens.length} tokens for ${parents.length} parents`);
  if (parents[0] !== -1) throw new Error(`token tree: node 0 is the root and must have parent −1, got ${parents[0]}`);
  const b = new TreeBuilder(tokens[0]);
  for (let i = 1; i < tokens.length; i++) {
    if (!(parents[i] >= 0 && parents[i] < i)) throw new Error(`token tree: node ${i} has parent ${parents[i]}; parents must be earlier nodes (topological order)`);
    b.add(parents[i], tokens[i]);
  }
  return b.build();
}

/** Children of every node, in node order. */
export function childrenOf(tree: TokenTree): number[][] {
  const out: number[][] = tree.tokens.map(() => []);
  for (let i = 1; i < tree.parents.length; i++) out[tree.parents[i]].push(i);
  return out;
}

/** Node indices from the root down to `node`. */
export function pathTo(tree: TokenTree, node: number): number[] {
  const path: number[] = [];
  for (let n = node; n >= 0; n = tree.parents[n]) path.unshift(n);
  return path;
}

/** Tokens from the root down to `node` (the root's token first). */
export function pathTokens(tree: TokenTree, node: number): number[] {
  return pathTo(tree, node).map((n) => tree.tokens[n]);
}
