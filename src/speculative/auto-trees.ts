// The trees `--tree auto` chooses among (besides plain decoding): chains of 1, 3, 7 and 15 draft nodes —
// 2, 4, 8 and 16 rows, sizes the GPU verifier plans anyway, and what a step costs grows with the rows — up to
// --max-nodes and the draft's depth, and the source's own default dynamic tree (best:4 for the adaptive
// draft, top:4 for the others; none for the oracle, whose chains are its best trees) at 8 nodes and at
// --max-nodes. Few options, since each is explored a couple of steps before the controller decides.
import type { AutoSpeculation, TreeOption } from './generate.ts';
import type { PlainDecoder } from './plain-runs.ts';
import { SpeculationController, type ControllerOptions } from './speculation-controller.ts';
import { chainShape, parseTreeSpec } from './tree-spec.ts';

export function autoTrees(source: string, maxNodes: number, draftDepth = Infinity): TreeOption[] {
  const trees: TreeOption[] = [];
  for (const n of [1, 3, 7, 15]) {
    if (n <= maxNodes && (n === 1 || n <= draftDepth)) trees.push({ shape: chainShape(n), maxNodes: n });
  }
  if (source !== 'oracle') {
    const shape = parseTreeSpec(source === 'adaptive' ? 'best:4' : 'top:4');
    for (const budget of new Set([Math.min(8, maxNodes), maxNodes])) trees.push({ shape, maxNodes: budget });
  }
  return trees;
}

/** How the controller and the report name a tree: a dynamic one with its node budget. */
export function treeLabel(t: TreeOption): string {
  return t.shape.kind === 'static' ? t.shape.spec : `${t.shape.spec}/${t.maxNodes}`;
}

/** A fresh controller over `trees` and plain runs of `plain`: what one generation with --tree auto uses. */
export function autoSpeculation(trees: readonly TreeOption[], plain: PlainDecoder, opts: Omit<ControllerOptions, 'trees'> = {}): AutoSpeculation {
  return { policy: new SpeculationController({ ...opts, trees: trees.map(treeLabel) }), trees, plain };
}
