// The tree form on the GPU (speculative verification): one launch verifies N draft nodes against the committed
// decoding state, which it reads and never writes; one workgroup per (batch b, head slice s, node n). Node n has
// a parent par[n] (−1: a child of the last committed token, otherwise an earlier node), a depth δ_n and the
// absolute position a_n = pos0 + δ_n − 1. Per node, with P(n) its root path (ancestors and itself):
//
//   prefix, causal:       num += Σ_{j∈P(n)} A[n, j] v_j + φ_n·(D_n ⊙ S),   A[n, j] = Σ_f φ_n[f] D_{j→n}[f] ψ_j[f]
//   prefix, past_groups:  S, plus the open group So when ⌊(pos0−1)/C⌋ < ⌊a_n/C⌋, plus the path nodes of earlier groups
//   bounded:              lag l = lo..hi reads the l-th ancestor, or the committed ring at a_n − l past the root
//
// The workgroup walks its node's path once (tree-analysis.ts: the path as a list in workgroup memory, φ_n and the
// query features staged), then each term in tiles of ancestors (tree-prefix.ts: the scores A once per (node,
// ancestor) for all columns; tree-bounded.ts: the lags). Nothing is staged in global memory, so there is no
// second launch, and any tree shape works (nothing depends on node order but parents coming first).
//
// Buffers: the tree's inputs 'in:X' [b, N, …axes] (node n's token inputs in row n), 'tree:parents' [b, N]
// (f32 holding the parent index, −1 for a root; a parent that is not an earlier node is read as −1), params,
// the state buffers of recurrentPlan (bound read only), output 'out:o' [b, N, …outAxes].
// Dims: b, t = N (≤ maxNodes), pos0 = the committed position; 'tree:seq' [b, 2] adds each sequence's own offset to
// pos0 (and in the commit gives its path length), so the sequences of a batch may sit at different positions.
//
// The commit (treeCommitPlan, tree-commit.ts) folds the accepted path into the state in one launch, reading the
// path's inputs by node index: the state afterwards is exactly what decoding the accepted tokens leaves.
import type { Program } from '../../src/ir/types.ts';
import { count, programBuffers, type Sizes } from './common.ts';
import type { Plan, PlanBuffer } from './plan.ts';
import { recurrentPlan } from './recurrent.ts';
import { isSoftmaxProgram } from './softmax-analysis.ts';
import { softmaxTreeCommitPlan, softmaxTreePlan } from './softmax-tree.ts';
import { analyseTree, sequenceBuffer, treeKernel, treeSplitOf, TREE_PARENTS, TREE_PATH, TREE_TILE } from './tree-analysis.ts';
import { emitTreeBody } from './tree-body.ts';
import { treeCommitKernel } from './tree-commit.ts';
import type { TreeOptions } from './tree-split.ts';

export { TREE_PARENTS, TREE_PATH, TREE_SEQ } from './tree-analysis.ts';

export function treePlan(p: Program, sizes: Sizes, maxNodes: number, opts: TreeOptions = {}): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treePlan: maxNodes must be a positive integer, got ${maxNodes}`);
  if (isSoftmaxProgram(p)) return softmaxTreePlan(p, sizes, maxNodes); // the cache and the root path (softmax-tree.ts)
  const a = analyseTree(p, sizes, maxNodes, treeSplitOf(p, sizes, opts));
  const T = treeKernel(a, undefined, opts.loadsFirst ?? true);
  emitTreeBody(T);
  const { kb } = T;
  const kernel = kb.build({
    label: `${p.name}.tree`,
    comment: [`tree verification kernel of ${p.name}: one workgroup per (b, head slice, node) against the committed state, read only (parents in ${TREE_PARENTS})`],
    workgroups: (b, t) => [a.NS * t, b, 1],
  });
  const parents: PlanBuffer = { name: TREE_PARENTS, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] };
  return {
    variant: p.name,
    form: 'tree',
    kernels: [kernel],
    buffers: [...programBuffers(p, sizes), parents, sequenceBuffer, ...a.st.buffers],
    outAxes: p.outAxes,
    sizes,
    schedule: { workgroup: a.split.threads, maxNodes, tile: a.split.tile },
  };
}

/**
 * Folds an accepted path into the state in one launch (tree-commit.ts). Dims: b, t = P (the accepted length),
 * pos0 = the committed position, pad = N (the node count of the tree inputs 'in:X' [b, N, …]). 'tree:path' [b, P]
 * holds node indices.
 */
export function treeCommitPlan(p: Program, sizes: Sizes, maxNodes: number, opts: TreeOptions = {}): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treeCommitPlan: maxNodes must be a positive integer, got ${maxNodes}`);
  if (isSoftmaxProgram(p)) return softmaxTreeCommitPlan(p, sizes, maxNodes); // gathered rows through the decoding kernel
  const rec = recurrentPlan(p, sizes);
  const ins = p.inputs.map((d) => ({ name: `in:${d.name}`, per: count(d.axes, sizes) }));
  const buffers: PlanBuffer[] = [
    // The tree's inputs: N rows, at most maxNodes (dims.pad says how many).
    ...ins.map((d): PlanBuffer => ({ name: d.name, role: 'input', floats: (b) => b * maxNodes * d.per, shape: (b) => [b, maxNodes, d.per] })),
    ...rec.buffers.filter((b) => b.role === 'param' || b.role === 'state'),
    { name: TREE_PATH, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] },
    sequenceBuffer,
  ];
  const threads = treeSplitOf(p, sizes, opts).threads;
  return { variant: p.name, form: 'tree-commit', kernels: [treeCommitKernel(p, sizes, threads)], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: threads, maxNodes, tile: TREE_TILE } };
}
