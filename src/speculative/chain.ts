// Chained speculation (gpu-chain.ts, through GpuTreeVerifier.runChain): the static tree's topology, which the
// GPU fills with the Medusa heads' candidates step after step, and the host's version of that fill for a run's
// first tree.
// A node at path [r₁, …, r_d] (ranks from the root's children down) has depth d + 1 and takes head d − 1's
// rank-r_d candidate at the last accepted node — medusa-draft.ts's tree, as the GPU kernel builds it
// (chainAcceptWgsl). A missing candidate becomes token 0 on both sides: verification decides what is accepted.
import type { Candidate } from './candidate.ts';
import { treeFromParents, type TokenTree } from './token-tree.ts';
import type { TreeShape } from './tree-spec.ts';

export interface StaticTopology {
  /** Per node (root first): depth (root 1), parent (−1 for the root), the rank of its path's last step (root 0). */
  readonly depths: readonly number[];
  readonly parents: readonly number[];
  readonly ranks: readonly number[];
  /** Draft levels: the deepest node's depth − 1. */
  readonly depth: number;
}

export function staticTopology(shape: TreeShape): StaticTopology {
  if (shape.kind !== 'static') throw new Error(`chained speculation needs a static tree (chain:N or a list of paths), got ${shape.spec}`);
  const index = new Map<string, number>([['', 0]]);
  const depths = [1];
  const parents = [-1];
  const ranks = [0];
  const sorted = [...shape.paths].sort((a, b) => a.length - b.length);
  for (const p of sorted) {
    const parent = index.get(p.slice(0, -1).join(','));
    if (parent === undefined) throw new Error(`tree ${shape.spec}: path [${p.join(',')}] has no parent path`);
    index.set(p.join(','), depths.length);
    depths.push(p.length + 1);
    parents.push(parent);
    ranks.push(p[p.length - 1]);
  }
  return { depths, parents, ranks, depth: Math.max(...depths) - 1 };
}

/** The run's first tree: root `root`, node of depth d ≥ 2 = head (d − 2)'s candidate of its rank. */
export function topologyTree(topology: StaticTopology, root: number, medusa: readonly (readonly Candidate[])[]): TokenTree {
  const tokens = topology.depths.map((d, n) => (n === 0 ? root : (medusa[d - 2]?.[topology.ranks[n]]?.token ?? 0)));
  return treeFromParents(tokens, topology.parents);
}
