// The tree form on the GPU (speculative verification): two launches with several workgroups per (batch b, head
// slice s) verify N draft nodes against the committed decoding state, which it reads and never writes. Node n has
// a parent par[n] (−1: a child of the last committed token, otherwise an earlier node), a depth δ_n and the
// absolute position a_n = pos0 + δ_n − 1. Per node, with P(n) its root path (ancestors and itself):
//
//   prefix, causal:       num += Σ_f φ_n[f] (Σ_{j∈P(n)} D_{j→n}[f] ψ_j[f] v_j + D_n[f] S[f])     D: products of path gates
//   prefix, past_groups:  S, plus the open group So when ⌊(pos0−1)/C⌋ < ⌊a_n/C⌋, plus the path nodes of earlier groups
//   bounded:              lag l = 0..hi reads the l-th ancestor, or the committed ring at a_n − l past the root
//
// Launch 1 (tree-stage.ts) stages every node's φ, ψ and gate (prefix terms) and query/key features and values
// (bounded terms) in one scratch buffer 'tmp:tree'; launch 2 (tree-walk.ts) walks each node's path per output
// column. Both spread their items over up to 64 workgroups per (b, s): one workgroup per head left 132 SMs nearly
// idle. No per-node state: a node's sums over its ancestors are recomputed from the staged features (O(depth)
// per node and column; depth is small in speculation), so any tree shape works and nothing depends on node
// order but parents coming first.
//
// Buffers: the tree's inputs 'in:X' [b, N, …axes] (node n's token inputs in row n), 'tree:parents' [b, N]
// (f32 holding the parent index, −1 for a root; a parent that is not an earlier node is read as −1),
// params, the state buffers of recurrentPlan (bound read only), scratch 'tmp:tree', output 'out:o' [b, N, …outAxes].
// Dims: b, t = N (≤ maxNodes), pos0 = the committed position.
//
// The commit (treeCommitPlan) gathers the accepted path's inputs into a [b, P, …] scratch and runs the
// recurrent step kernel over them: the state afterwards is exactly what decoding the accepted tokens leaves.
import type { Program } from '../../src/ir/types.ts';
import { count, programBuffers, type Sizes } from './common.ts';
import { flatIndex, KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel, type Plan, type PlanBuffer } from './plan.ts';
import { recurrentPlan } from './recurrent.ts';
import { isSoftmaxProgram } from './softmax-analysis.ts';
import { softmaxTreePlan } from './softmax-tree.ts';
import { analyseTree, treeKernel, TREE_PARENTS, TREE_PATH, TREE_WG, type TreeAnalysis } from './tree-analysis.ts';
import { emitStage } from './tree-stage.ts';
import { emitPathWalks } from './tree-walk.ts';

export { TREE_PARENTS, TREE_PATH } from './tree-analysis.ts';

export function treePlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treePlan: maxNodes must be a positive integer, got ${maxNodes}`);
  if (isSoftmaxProgram(p)) return softmaxTreePlan(p, sizes, maxNodes); // the cache and the root path (softmax-tree.ts)
  const a = analyseTree(p, sizes, maxNodes);
  // Both launches spread their items over `nsplit` workgroups per (b, head slice), nsplit from the grid: the
  // per-(node, column) path walks of a 64-node tree were 4096 items for 64 invocations of one workgroup per head.
  const splits = (t: number, items: number) => Math.max(1, Math.min(64, Math.ceil((t * items) / (2 * TREE_WG))));
  const stageItems = Math.max(1, ...a.prefix.map((q) => q.F), a.scratchWidth / Math.max(1, a.NS));
  const stage = launch(a, 'phase 1: node features', `${p.name}.tree-stage`, emitStage, (b, t) => [a.NS * splits(t, stageItems), b, 1]);
  const walk = launch(a, 'phase 2: path walks', `${p.name}.tree`, emitPathWalks, (b, t) => [a.NS * splits(t, a.NR), b, 1]);
  const parents: PlanBuffer = { name: TREE_PARENTS, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] };
  const width = a.scratchWidth;
  const scratch: PlanBuffer = { name: 'tmp:tree', role: 'scratch', floats: (b, t) => Math.max(1, b * t * width), shape: (b, t) => [b, t, width] };
  return {
    variant: p.name,
    form: 'tree',
    kernels: [stage, walk],
    buffers: [...programBuffers(p, sizes), parents, ...a.st.buffers, scratch],
    outAxes: p.outAxes,
    sizes,
    schedule: { workgroup: TREE_WG, maxNodes },
  };
}

/** One launch: the shared prologue (head slice, parents and depths), then its phase. */
function launch(a: TreeAnalysis, what: string, label: string, phase: typeof emitStage, workgroups: Kernel['workgroups']): Kernel {
  const T = treeKernel(a);
  phase(T, T.kb.body);
  return T.kb.build({
    label,
    comment: [`tree verification kernel of ${a.p.name} (${what}): N draft nodes (parents in ${TREE_PARENTS}) against the committed state, read only`],
    workgroups,
  });
}

/**
 * Folds an accepted path into the state: a gather kernel copies the path's node inputs into [b, P, …] scratch,
 * then the recurrent step kernel runs over them. Dims: b, t = P (the accepted length), pos0 = the committed
 * position, pad = N (the node count of the tree inputs 'in:X' [b, N, …]). 'tree:path' [b, P] holds node indices.
 */
export function treeCommitPlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treeCommitPlan: maxNodes must be a positive integer, got ${maxNodes}`);
  const rec = recurrentPlan(p, sizes);
  const gathered = (name: string) => `tmp:path:${name.slice(name.indexOf(':') + 1)}`;
  const ins = p.inputs.map((d) => ({ name: `in:${d.name}`, per: count(d.axes, sizes) }));
  const step = rec.kernels[0];
  // The step kernel as compiled, bound to the gathered rows instead of the tree's inputs and output.
  const commit: Kernel = {
    ...step,
    label: `${p.name}.tree-commit`,
    bindings: step.bindings.map((b) => (b.buffer.startsWith('in:') || b.buffer === 'out:o' ? { ...b, buffer: gathered(b.buffer) } : b)),
  };
  const per = count(p.outAxes, sizes);
  const buffers: PlanBuffer[] = [
    // The tree's inputs: N rows, at most maxNodes (dims.pad says how many).
    ...ins.map((d): PlanBuffer => ({ name: d.name, role: 'input', floats: (b) => b * maxNodes * d.per, shape: (b) => [b, maxNodes, d.per] })),
    ...rec.buffers.filter((b) => b.role === 'param' || b.role === 'state'),
    { name: TREE_PATH, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] },
    ...ins.map((d): PlanBuffer => ({ name: gathered(d.name), role: 'scratch', floats: (b, t) => b * t * d.per, shape: (b, t) => [b, t, d.per] })),
    { name: 'tmp:path:o', role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, per] },
  ];
  return { variant: p.name, form: 'tree-commit', kernels: [gatherKernel(p, ins, gathered), commit], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: TREE_WG, maxNodes } };
}

/** Row (b, p) of each gathered input ← tree row (b, path[b, p]); dims.pad = tree nodes N. */
function gatherKernel(p: Program, ins: readonly { name: string; per: number }[], gathered: (name: string) => string): Kernel {
  const maxPer = Math.max(1, ...ins.map((d) => d.per));
  const kb = new KernelBuilder(TREE_WG, ['gid', 'nwg']);
  const path = kb.storage(TREE_PATH, false, { always: true });
  const from = ins.map((d) => kb.storage(d.name, false, { always: true }));
  const to = ins.map((d) => kb.storage(gathered(d.name), true, { always: true }));
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${maxPer}u) { return; }`);
  const x = main.let('x', `${flat} % ${maxPer}u`);
  const row = main.let('row', `${flat} / ${maxPer}u`);
  const bb = main.let('bb', `${row} / dims.t`);
  const node = main.let('node', `min(u32(max(round(${kb.use(path)}[${row}]), 0.0)), max(dims.pad, 1u) - 1u)`);
  ins.forEach((d, k) => main.block(`if (${x} < ${d.per}u)`, (b) => b.line(`${kb.use(to[k])}[${row} * ${d.per}u + ${x}] = ${kb.use(from[k])}[(${bb} * dims.pad + ${node}) * ${d.per}u + ${x}];`)));
  return kb.build({
    label: `${p.name}.tree-gather`,
    comment: [`gathers the accepted path's node inputs of ${p.name}: row (b, p) ← tree row (b, path[b, p]); dims.pad = tree nodes N`],
    workgroups: (b, t) => grid(b * t * maxPer, TREE_WG),
    launch: { kind: 'grid', perToken: maxPer, size: TREE_WG },
  });
}
