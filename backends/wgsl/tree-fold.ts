// The folded tree step (speculative verification without a commit launch): one launch that verifies this step's
// N draft nodes *and* commits the previous step's accepted path, the pending path of P nodes.
//
// Verifying against the state S_old (which lacks the pending path) gives the same outputs as verifying against
// S_old ⊕ pending when every node's path is the pending path followed by its own root path: the pending nodes are
// its oldest ancestors, at positions pos0 … pos0 + P − 1, and node n sits at a_n = pos0 + P + δ_n − 1. So the
// prefix terms' ancestor sums run over them too (scores, gate products D: tree-prefix.ts unchanged), the bounded
// terms read them as lags before reaching the old ring (tree-bounded.ts unchanged), and past_groups terms add
// the pending nodes of earlier groups while So joins once n has left the old open group (its test reads pos0,
// the state's own position). tree-analysis.ts puts them in path[] after the root's entries, as maxNodes + node.
//
// The same launch writes S_old ⊕ pending for the next step, into the *other* buffer of a ping-pong pair: the
// verifying workgroups read S_old throughout, so it cannot be written in place. Extra workgroups after the
// NS · N verifying ones run the commit's body (tree-commit.ts: the recurrent step's arithmetic along the path,
// in its order), reading S_old and writing every state element and every ring slot of the new buffer.
//
// The pending nodes' inputs are gone by then (this step's projections overwrote the layer's q, k, v), so each
// verifying workgroup also copies its node's input rows into a kept buffer: the next step reads them as pending
// inputs, [b, maxNodes, W] (W = the inputs' floats per token, one after another), ping-ponged with the state.
//
// Bindings stay few: each state set is one packed buffer (FoldLayout: state buffer i of sequence-batch b at
// b · at_i), each node set one buffer. Dims: b, t = P (the pending length), pos0 = the position of S_old, pad = N
// (the tree's nodes) — the commit's dims, which a chained step's kernel already writes (gpu-chain.ts).
//
// The folded kernel's cost grows with P: every node walks the P pending nodes too (⌈P/16⌉ more tiles on its path).
// treeFoldCommitPlan is the separate commit on a packed state, in place, reading the kept nodes: a long pending
// path can be committed by it and the tree then folded with nothing pending (GpuVerifierOptions.foldUpTo).
import type { Program } from '../../src/ir/types.ts';
import { count, programBuffers, programReader, type Sizes } from './common.ts';
import { offset, type Resolver } from './expr.ts';
import type { Block } from './wgsl-block.ts';
import { KernelBuilder } from './kernel-builder.ts';
import type { Plan, PlanBuffer } from './plan.ts';
import { analyseTree, sequenceBuffer, treeKernel, treeSplitOf, TREE_PARENTS, TREE_PATH, TREE_TILE } from './tree-analysis.ts';
import { emitTreeBody } from './tree-body.ts';
import { commitBlocks, emitCommit } from './tree-commit.ts';
import type { TreeOptions } from './tree-split.ts';

/** The packed state the step reads (S_old), and the one it writes (S_old ⊕ pending): FoldLayout.state. */
export const FOLD_STATE = 'fold:state';
export const FOLD_NEXT = 'fold:next';
/** The previous step's nodes' inputs, [b, maxNodes, W], and this step's, written for the next. */
export const FOLD_PENDING = 'fold:pending';
export const FOLD_KEPT = 'fold:kept';

/** Where each piece lives in the packed buffers, in floats. */
export interface FoldLayout {
  /** State buffer `name` ('state:S0', …) of a batch of b sequences is floats [b · at, b · (at + per)) of the packed state. */
  readonly state: readonly { readonly name: string; readonly per: number; readonly at: number }[];
  /** Packed state floats per sequence. */
  readonly stateFloats: number;
  /** Input `name` of node row r is floats [r · W + at, r · W + at + per) of a node set. */
  readonly inputs: readonly { readonly name: string; readonly per: number; readonly at: number }[];
  /** W: the inputs' floats per node. */
  readonly nodeFloats: number;
}

export function foldLayout(p: Program, sizes: Sizes): FoldLayout {
  const a = analyseTree(p, sizes, 1);
  let at = 0;
  const state = a.st.buffers.map((b) => {
    const per = b.floats(1, 1);
    const x = { name: b.name, per, at };
    at += per;
    return x;
  });
  let w = 0;
  const inputs = p.inputs.map((d) => {
    const per = count(d.axes, sizes);
    const x = { name: d.name, per, at: w };
    w += per;
    return x;
  });
  return { state, stateFloats: at, inputs, nodeFloats: w };
}

export function treeFoldPlan(p: Program, sizes: Sizes, maxNodes: number, opts: TreeOptions = {}): Plan & { readonly layout: FoldLayout } {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treeFoldPlan: maxNodes must be a positive integer, got ${maxNodes}`);
  const a = analyseTree(p, sizes, maxNodes, treeSplitOf(p, sizes, opts));
  const WG = a.split.threads;
  const layout = foldLayout(p, sizes);
  const { NS, blocks } = commitBlocks(p, sizes, WG);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const stateBuf = kb.storage(FOLD_STATE, false, { always: true });
  const nextBuf = kb.storage(FOLD_NEXT, true, { always: true });
  const pendBuf = kb.storage(FOLD_PENDING, false, { always: true });
  const keptBuf = kb.storage(FOLD_KEPT, true, { always: true });
  const path = kb.storage(TREE_PATH, false, { always: true });
  const placeOf = new Map(layout.state.map((x) => [x.name, x.at]));
  const packed = (name: string, index: string) => `dims.b * ${placeOf.get(name)!}u + ${index}`;
  const load = (name: string, index: string) => `${kb.use(stateBuf)}[${packed(name, index)}]`;
  const store = (name: string, index: string) => `${kb.use(nextBuf)}[${packed(name, index)}]`;
  const inputAt = new Map(layout.inputs.map((x) => [x.name, x.at]));
  const W = layout.nodeFloats;
  const pendingInput = (name: string, node: string, off: string) => `${kb.use(pendBuf)}[(b * ${maxNodes}u + ${node}) * ${W}u + ${inputAt.get(name)!}u + ${off}]`;
  const pendingNode = (k: string) => `min(u32(max(round(${kb.use(path)}[b * dims.t + ${k}]), 0.0)), ${maxNodes - 1}u)`;

  let treeRead: Resolver | undefined;
  kb.body.comment(`workgroups [0, ${NS} · N) verify node n of head slice s; the ${NS * blocks} after them commit the pending path`);
  kb.body.ifChain([
    [`wid.x < ${NS}u * dims.pad`, (main) => {
      const keep = (read: Resolver, main: Block, loadsFirst: boolean): ((main: Block) => void) | void => {
        const used = layout.inputs.flatMap((x) => {
          const node = p.nodes.find((m) => m.op === 'input' && m.name === x.name);
          return node ? [{ x, node }] : []; // an input nothing reads is not kept
        });
        // Loads first, where each input takes at most one element a thread: the elements into registers with the
        // state's loads, stored after the early staging (a store waits for its load).
        if (loadsFirst && used.every(({ x }) => x.per <= NS * WG)) {
          main.comment("node n's inputs, kept for the next step (which reads them if n is accepted): loaded first, stored below");
          const held = used.map(({ x, node }) => {
            const e = main.let(`ke${x.name}`, `s * ${WG}u + lid`);
            const idx = main.split(node.type.axes, sizes, `min(${e}, ${x.per - 1}u)`, `k${x.name}`);
            const load = read(node, idx, 'an', main);
            if (load === null) throw new Error(`internal: ${p.name}: input ${x.name} at n has no read`);
            const v = main.var(`kv${x.name}`, load);
            return { x, node, e, idx, v };
          });
          return (m: Block) => {
            m.comment("node n's inputs, kept");
            for (const { x, node, e, idx, v } of held) m.line(`if (${e} < ${x.per}u) { ${kb.use(keptBuf)}[(b * ${maxNodes}u + n) * ${W}u + ${x.at}u + ${offset(node.type.axes, sizes, idx)}] = ${v}; }`);
          };
        }
        main.comment("node n's inputs, kept for the next step (which reads them if n is accepted)");
        for (const x of layout.inputs) {
          const node = p.nodes.find((m) => m.op === 'input' && m.name === x.name);
          if (!node) continue; // an input nothing reads
          main.for('e', `s * ${WG}u + lid`, (e) => `${e} < ${x.per}u`, (b, e) => {
            const idx = b.split(node.type.axes, sizes, e, `k${x.name}`);
            b.line(`${kb.use(keptBuf)}[(b * ${maxNodes}u + n) * ${W}u + ${x.at}u + ${offset(node.type.axes, sizes, idx)}] = ${read(node, idx, 'an', b)};`);
          }, { step: (e) => `${e} += ${NS * WG}u` });
        }
      };
      const T = treeKernel(a, { kb, main, nodes: 'dims.pad', load, pending: { length: 'plen', node: pendingNode, input: pendingInput }, prologue: keep }, opts.loadsFirst ?? true);
      treeRead = T.read;
      emitTreeBody(T, main);
    }],
    [null, (main) => {
      emitCommit(p, sizes, {
        kb, main, group: `wid.x - ${NS}u * dims.pad`, path, rows: `${maxNodes}u`,
        reader: (rowOf) => (n, idx, where, blk) =>
          n.op === 'input' ? pendingInput(n.name, rowOf(where), offset(n.type.axes, sizes, idx)) : treeRead!(n, idx, where, blk),
        load, store, wholeRing: true,
      });
    }],
  ]);
  const kernel = kb.build({
    label: `${p.name}.tree-fold`,
    comment: [
      `folded tree step of ${p.name}: ${NS} workgroups per node verify against ${FOLD_STATE} with the pending path (${TREE_PATH}) as the oldest ancestors;`,
      `${NS * blocks} more write ${FOLD_STATE} ⊕ pending into ${FOLD_NEXT}. dims: t = P (the longest pending path), pos0 = the state's position, pad = N; tree:seq each sequence's offset and P`,
    ],
    workgroups: (b, t) => [NS * t + NS * blocks, b, 1],
  });
  const nodes = (name: string, role: 'input' | 'output'): PlanBuffer => ({ name, role, floats: (b) => b * maxNodes * W, shape: (b) => [b, maxNodes, W] });
  const states = (name: string): PlanBuffer => ({ name, role: 'state', floats: (b) => b * layout.stateFloats, shape: (b) => [b, layout.stateFloats] });
  return {
    variant: p.name,
    form: 'tree',
    kernels: [kernel],
    buffers: [
      ...programBuffers(p, sizes),
      { name: TREE_PARENTS, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] },
      { name: TREE_PATH, role: 'input', floats: (b) => b * maxNodes, shape: (b) => [b, maxNodes] },
      sequenceBuffer,
      states(FOLD_STATE), states(FOLD_NEXT), nodes(FOLD_PENDING, 'input'), nodes(FOLD_KEPT, 'output'),
    ],
    outAxes: p.outAxes,
    sizes,
    schedule: { workgroup: WG, maxNodes, tile: a.split.tile },
    layout,
  };
}

/**
 * The commit of a pending path of P nodes into a packed state (FOLD_STATE, in place) from the kept nodes
 * (FOLD_PENDING): tree-commit.ts's kernel on tree mode's buffers. Dims: b, t = P, pos0 = the state's position.
 */
export function treeFoldCommitPlan(p: Program, sizes: Sizes, maxNodes: number, opts: TreeOptions = {}): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treeFoldCommitPlan: maxNodes must be a positive integer, got ${maxNodes}`);
  const layout = foldLayout(p, sizes);
  const WG = treeSplitOf(p, sizes, opts).threads;
  const { NS, blocks } = commitBlocks(p, sizes, WG);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const path = kb.storage(TREE_PATH, false, { always: true });
  const stateBuf = kb.storage(FOLD_STATE, true, { always: true });
  const pendBuf = kb.storage(FOLD_PENDING, false, { always: true });
  const placeOf = new Map(layout.state.map((x) => [x.name, x.at]));
  const at = (name: string, index: string) => `${kb.use(stateBuf)}[dims.b * ${placeOf.get(name)!}u + ${index}]`;
  const inputAt = new Map(layout.inputs.map((x) => [x.name, x.at]));
  const W = layout.nodeFloats;
  const params = programReader(kb, p, sizes, () => { throw new Error(`internal: ${p.name}: the packed commit reads inputs from ${FOLD_PENDING}`); });
  emitCommit(p, sizes, {
    kb, main: kb.body, group: 'wid.x', path, rows: `${maxNodes}u`,
    reader: (rowOf) => (n, idx, where, blk) =>
      n.op === 'input' ? `${kb.use(pendBuf)}[(b * ${maxNodes}u + ${rowOf(where)}) * ${W}u + ${inputAt.get(n.name)!}u + ${offset(n.type.axes, sizes, idx)}]` : params(n, idx, where, blk),
    load: at, store: at, wholeRing: false,
  });
  const kernel = kb.build({
    label: `${p.name}.tree-commit`,
    comment: [`tree commit kernel of ${p.name} on a packed state (${FOLD_STATE}), the path's inputs from the kept nodes (${FOLD_PENDING}); dims.t = P (the longest path), dims.pos0 = the state's position, tree:seq each sequence's offset and path length`],
    workgroups: (b) => [NS * blocks, b, 1],
  });
  return {
    variant: p.name,
    form: 'tree-commit',
    kernels: [kernel],
    buffers: [
      ...programBuffers(p, sizes).filter((b) => b.role === 'param'),
      { name: TREE_PATH, role: 'input', floats: (b) => b * maxNodes, shape: (b) => [b, maxNodes] },
      sequenceBuffer,
      { name: FOLD_STATE, role: 'state', floats: (b) => b * layout.stateFloats, shape: (b) => [b, layout.stateFloats] },
      { name: FOLD_PENDING, role: 'input', floats: (b) => b * maxNodes * W, shape: (b) => [b, maxNodes, W] },
    ],
    outAxes: p.outAxes,
    sizes,
    schedule: { workgroup: WG, maxNodes, tile: TREE_TILE },
  };
}
