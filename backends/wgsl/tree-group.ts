// A tree kernel whose workgroup verifies a group of G nodes of one head slice (tree-split.ts's node groups, for
// large trees): the nodes n_i = g · G + i take turns through treeKernel's prologue and tree-body.ts's path phases
// (each in a block of its own, where `n`, `depth` and `an` are its), then one state phase adds φ_{n_i} · S for all
// of them from one load of each row of S and z (tree-prefix.ts's committedStateGroup), then each writes its o.
// A node past the tree's last (the last group of N not divisible by G) skips its blocks; its sums are never read.
import type { TreeAnalysis, TreeKernel, TreeSite } from './tree-analysis.ts';
import { treeGroup } from './tree-analysis.ts';
import { declareBodyTiles, declareSums, emitOutput, emitTerms, zeroSums } from './tree-body.ts';
import { committedStateGroup } from './tree-prefix.ts';
import type { Block } from './wgsl-block.ts';

/**
 * The group kernel's body at `site`. `perNode`: emitted in node i's block after its prologue (the folded kernel
 * keeps the node's inputs there); it gets node i's kernel view.
 */
export function emitTreeGroupBody(a: TreeAnalysis, site: TreeSite, perNode?: (T: TreeKernel, blk: Block) => void): TreeKernel {
  const G = a.split.nodeGroup;
  const grp = treeGroup(a, site);
  const { kb } = grp.nodes[0];
  const { tiles, bounded } = declareBodyTiles(a, kb, G);
  const sums = grp.nodes.map((_, i) => declareSums(a, kb, `_${i}`));
  const main = site.main;
  zeroSums(a, main, sums);
  grp.nodes.forEach((T, i) => {
    main.comment(`node ${i} of the group: its path and bounded terms`);
    main.block(`if (${grp.valid(i)})`, (blk) => {
      grp.prologue(i, blk);
      perNode?.(T, blk);
      emitTerms(T, blk, sums[i], { ...tiles, dacc: tiles.dacc[i] }, bounded, false);
    });
  });
  a.p.output.forEach((it, k) => {
    for (const name of it.kind === 'term' ? [it.term] : it.terms) {
      const q = a.prefix.find((x) => x.name === name);
      if (!q) continue;
      committedStateGroup(grp.nodes, main, q, sums.map((s) => s[k]), tiles.dacc.map((d) => d?.name), tiles.slicePart!, grp.valid);
    }
  });
  grp.nodes.forEach((T, i) => {
    main.block(`if (${grp.valid(i)})`, (blk) => {
      grp.node(i, blk);
      emitOutput(T, blk, sums[i]);
    });
  });
  return grp.nodes[0];
}
