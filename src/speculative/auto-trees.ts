// The trees `--tree auto` chooses among (besides plain decoding): chains of 1, 3, 7 and 15 draft nodes —
// 2, 4, 8 and 16 rows, sizes the GPU verifier plans anyway, and what a step costs grows with the rows — up to
// --max-nodes and the draft's depth, and the source's own default dynamic tree (best:4 for the adaptive
// draft, top:4 for the others; none for the oracle, whose chains are its best trees, nor for prompt lookup,
// whose one candidate per node makes any tree a chain) at 8 nodes and at --max-nodes. Few options, since each
// is explored before the controller decides. Where chained speculation applies (greedy Medusa on the GPU, or prompt
// lookup there at batch 1: the caller says so with `chainSteps`), the options are the chained trees alone (chainedTrees:
// the chains deeper than one node up to the draft's depth, the chain of the draft's depth itself, and, for Medusa, its
// sparse tree, "K×R": a decision is a run
// of R steps in one submit, timed as a whole like a plain run): each unchained tree is its chained twin plus a readback
// a step. Exploration tries the chained runs first, the most nodes first (exploreOrder): on a short run the controller
// must find them before the run is over.
import type { SamplingOptions } from '../model/sampling.ts';
import type { AutoSpeculation, TreeOption } from './generate.ts';
import type { PlainDecoder } from './plain-runs.ts';
import { FixedSchedule, SpeculationController, type ControllerOptions } from './speculation-controller.ts';
import { chainShape, medusaSparseTree, parseTreeSpec, shapeSize } from './tree-spec.ts';

/** Steps per chained run among the auto options. */
export const AUTO_CHAIN_STEPS = 4;

/**
 * Steps per chained run for the auto options, 0 where chaining does not apply: greedy decoding on the GPU verifier with
 * the Medusa draft (runChain at one sequence, runChained at several) or, at one sequence, the lookup draft.
 */
export function autoChainSteps(source: string, device: 'gpu' | 'cpu', sampling: SamplingOptions, batch = 1): number {
  return (source === 'medusa' || (source === 'lookup' && batch === 1)) && device === 'gpu' && !((sampling.temperature ?? 0) > 0) ? AUTO_CHAIN_STEPS : 0;
}

/** `chainSteps` > 0 (autoChainSteps): add the chained options. */
export function autoTrees(source: string, maxNodes: number, draftDepth = Infinity, chainSteps = 0): TreeOption[] {
  const trees: TreeOption[] = [];
  const chains = [1, 3, 7, 15].filter((n) => n <= maxNodes && (n === 1 || n <= draftDepth));
  if (chainSteps > 0 && (source === 'medusa' || source === 'lookup')) return chainedTrees(source, maxNodes, draftDepth, chainSteps, chains);
  for (const n of chains) trees.push({ shape: chainShape(n), maxNodes: n });
  if (chainSteps > 0 && (source === 'medusa' || source === 'lookup')) {
    for (const n of chains.filter((n) => n <= draftDepth)) trees.push({ shape: chainShape(n), maxNodes: n, chainSteps });
  }
  if (source !== 'oracle' && source !== 'lookup') {
    const shape = parseTreeSpec(source === 'adaptive' ? 'best:4' : 'top:4');
    for (const budget of new Set([Math.min(8, maxNodes), maxNodes])) trees.push({ shape, maxNodes: budget });
  }
  return trees;
}

/**
 * Where runs chain, the chained trees alone: an unchained tree step reads back before the next (0.6–0.9 ms of wall on
 * the H200 against a 0.18 ms decode step of the nano model) while its chained twin verifies the same trees with one
 * readback a run, so the unchained options only cost exploration — offered them, auto ran 0.74–0.91× plain decoding on
 * the trained nano model where fixed chained trees ran 1.4–2.2× (call 42, bench/medusa.ts). Chains deeper than one
 * node up to the draft's depth (chain:1 alone where that is all there is), and Medusa's sparse tree (medusaSparseTree)
 * where it fits the node budget: the best fixed tree of calls 37–42.
 */
function chainedTrees(source: string, maxNodes: number, draftDepth: number, chainSteps: number, chains: readonly number[]): TreeOption[] {
  // The chain as deep as the heads reach too (chain:4 for 4 heads: the best fixed tree of self-distilled heads,
  // calls 130–131), which the sizes 1, 3, 7, 15 would leave out.
  const full = Number.isFinite(draftDepth) && draftDepth > 1 && draftDepth <= maxNodes && !chains.includes(draftDepth) ? [draftDepth] : [];
  const deep = [...chains, ...full].filter((n) => n > 1 && n <= draftDepth);
  const trees: TreeOption[] = (deep.length > 0 ? deep : [1]).map((n) => ({ shape: chainShape(n), maxNodes: n, chainSteps }));
  if (source === 'medusa' && draftDepth !== Infinity) {
    const sparse = medusaSparseTree(draftDepth);
    const nodes = shapeSize(sparse, maxNodes);
    if (nodes <= maxNodes && nodes > Math.max(...trees.map((t) => t.maxNodes))) trees.push({ shape: sparse, maxNodes: nodes, chainSteps });
  }
  return trees;
}

/** How the controller and the report name a tree: a dynamic one with its node budget, a chained one ×R. */
export function treeLabel(t: TreeOption): string {
  return (t.shape.kind === 'static' ? t.shape.spec : `${t.shape.spec}/${t.maxNodes}`) + (t.chainSteps ? `×${t.chainSteps}` : '');
}

/**
 * The controller's options (0 plain, i + 1 trees[i]) in the order exploration tries them: the chained runs, the
 * most draft nodes first; then plain decoding; then the other trees as listed.
 */
export function exploreOrder(trees: readonly TreeOption[]): number[] {
  const chained = trees.map((t, i) => ({ t, option: i + 1 })).filter(({ t }) => t.chainSteps);
  chained.sort((a, b) => b.t.maxNodes - a.t.maxNodes || a.option - b.option);
  const first = chained.map((c) => c.option);
  return [...first, 0, ...trees.map((_, i) => i + 1).filter((o) => !first.includes(o))];
}

/**
 * A fresh controller over `trees` and plain runs of `plain`: what one generation with --tree auto uses. A chained
 * option that accepts 2.5 tokens a step or more leaves plain decoding to the re-probes (ControllerOptions.deferPlain).
 * Each tree's nodes bound the cost of the trees not measured yet where the draft gives estimates (useEstimates).
 */
export function autoSpeculation(trees: readonly TreeOption[], plain: PlainDecoder, opts: Omit<ControllerOptions, 'trees'> = {}): AutoSpeculation & { readonly policy: SpeculationController } {
  const chained = trees.flatMap((t, i) => (t.chainSteps ? [i + 1] : []));
  return { policy: new SpeculationController({ order: exploreOrder(trees), deferPlain: chained, nodes: trees.map((t) => t.maxNodes), ...opts, trees: trees.map(treeLabel) }), trees, plain };
}

/**
 * A fresh controller for a batch's auto over `trees` (generate-batch.ts batch.auto), as one sequence's (autoSpeculation):
 * chained options explored first, and one that accepts 2.5 tokens a sequence a step or more leaves plain decoding to the
 * re-probes (deferPlain; a batch records its steps once per live sequence). Each tree's nodes bound the cost of the trees
 * not measured yet where the batch gives estimates (useEstimates: table drafts). `opts.from`: measurements of earlier runs.
 */
export function batchController(trees: readonly TreeOption[], opts: Omit<ControllerOptions, 'trees'> = {}): SpeculationController {
  const chained = trees.flatMap((t, i) => (t.chainSteps ? [i + 1] : []));
  return new SpeculationController({ order: exploreOrder(trees), deferPlain: chained, nodes: trees.map((t) => t.maxNodes), ...opts, trees: trees.map(treeLabel) });
}

/**
 * An untimed warm-up over every option of a batch's auto (generate-batch.ts batch.auto), so that none is charged its
 * first use in the timed run's decisions: a plain run of 3 steps, then each tree twice in a row, then plain again. The
 * folded steps alternate between two state sets, and a step's recording is kept per set (gpu-verifier.ts), so a tree
 * met once is recorded for one set only: twice in a row it is recorded for both, and the odd plain run moves the
 * next tree to the other set.
 */
export function batchWarmUpSchedule(trees: readonly TreeOption[]): FixedSchedule {
  return new FixedSchedule(trees.map(treeLabel), [0, ...trees.flatMap((_, i) => [i + 1, i + 1]), 0], 3);
}
