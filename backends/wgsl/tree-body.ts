// The body of a tree kernel after its prologue (tree-analysis.ts's treeKernel): every output item's sums over
// its terms — prefix terms against n's path and the committed state (tree-prefix.ts), bounded terms over their
// lags (tree-bounded.ts) — then o at node n, normalised where asked. The plain tree kernel (tree.ts) and the
// folded one (tree-fold.ts) run it alike; only what the prologue put in path[] and depth differs. A node group's
// kernel (tree-group.ts) runs the same pieces per node, with one state phase for all its nodes.
import { offset, type Index } from './expr.ts';
import type { KernelBuilder } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';
import { TREE_TILE, type TreeAnalysis, type TreeKernel } from './tree-analysis.ts';
import { declareBoundedTiles, emitBoundedTerm, type BoundedTiles } from './tree-bounded.ts';
import { emitPrefixTerm, type ItemSums, type PrefixTiles } from './tree-prefix.ts';

/** Emits the terms and the output into `main` (default: the builder's body). */
export function emitTreeBody(T: TreeKernel, main: Block = T.kb.body): void {
  const { tiles, bounded } = declareBodyTiles(T.a, T.kb, 1);
  const sums = declareSums(T.a, T.kb, '');
  zeroSums(T.a, main, [sums]);
  emitTerms(T, main, sums, { ...tiles, dacc: tiles.dacc[0] }, bounded, true);
  emitOutput(T, main, sums);
}

/** The prefix terms' tiles (a gate product per node of `G`, the slices' partial sums for G nodes) and the bounded terms'. */
export function declareBodyTiles(a: TreeAnalysis, kb: KernelBuilder, G: number): { tiles: Omit<PrefixTiles, 'dacc'> & { dacc: PrefixTiles['dacc'][] }; bounded: BoundedTiles } {
  const { p } = a;
  const gW = Math.max(0, ...a.prefix.map((q) => q.gateW));
  const sliced = (a.split.slices > 1 || G > 1) && a.prefix.length > 0;
  const tiles = {
    A: kb.workgroup('A', TREE_TILE, "the tile's scores"),
    part: kb.workgroup('part', TREE_TILE * a.lanes, 'partial scores of the feature slices'),
    values: a.split.stageValues && a.prefix.length > 0 ? kb.workgroup('vals', TREE_TILE * a.NB, "the tile's values, [TILE, columns]") : null,
    slicePart: sliced
      ? {
        num: kb.workgroup('snum', G * a.split.threads, `the state's partial numerators of each slice${G > 1 ? ', [node, threads]' : ''}`),
        den: p.output.some((it) => it.kind === 'norm') ? kb.workgroup('sden', G * a.split.threads, "the state's partial denominators of each slice") : null,
      }
      : null,
    dacc: [...Array(G).keys()].map((i) => (gW ? kb.workgroup('dacc', gW, `gate product from n up to the tile${G > 1 ? ` (node ${i} of the group)` : ''}`) : null)),
    Dt: gW ? kb.workgroup('Dt', TREE_TILE * gW, "the tile's D_{j→n}") : null,
  };
  return { tiles, bounded: declareBoundedTiles(a, kb) };
}

/** One [NB] numerator (and denominator) array per output item, names suffixed by `suffix`. */
export function declareSums(a: TreeAnalysis, kb: KernelBuilder, suffix: string): ItemSums[] {
  return a.p.output.map((it, k) => ({
    num: kb.workgroup(`num${k}${suffix}`, a.NB, `item ${k}'s numerators per column`),
    den: it.kind === 'norm' ? kb.workgroup(`den${k}${suffix}`, a.NB, `item ${k}'s denominators`) : null,
  }));
}

export function zeroSums(a: TreeAnalysis, main: Block, all: readonly (readonly ItemSums[])[]): void {
  main.strided('col', `${a.NB}u`, (b, col) => all.forEach((sums) => sums.forEach((x) => b.line(`${x.num.name}[${col}] = 0.0;${x.den ? ` ${x.den.name}[${col}] = 0.0;` : ''}`))));
}

/** Every item's terms into `sums`; `state`: the prefix terms' committed-state phase too (a node group runs it once for all). */
export function emitTerms(T: TreeKernel, main: Block, sums: readonly ItemSums[], tiles: PrefixTiles, bounded: BoundedTiles, state: boolean): void {
  const { p } = T.a;
  p.output.forEach((it, k) => {
    for (const name of it.kind === 'term' ? [it.term] : it.terms) {
      const t = p.terms.find((x) => x.name === name)!;
      const q = T.a.prefix.find((x) => x.name === t.name);
      if (q) emitPrefixTerm(T, main, q, t, sums[k], tiles, state);
      else emitBoundedTerm(T, main, t, sums[k], bounded);
    }
  });
}

/** o at node n from the items' sums, normalised where asked. */
export function emitOutput(T: TreeKernel, main: Block, sums: readonly ItemSums[]): void {
  const { a, kb } = T;
  const { p } = a;
  main.strided('col', `${a.NB}u`, (b, col) => {
    b.comment('the output: every item, normalised where asked');
    const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, T.column(col), 'oc') };
    const terms = p.output.map((it, k) => (it.kind === 'norm' ? `${sums[k].num.name}[${col}] / (${sums[k].den!.name}[${col}] + ${it.eps})` : `${sums[k].num.name}[${col}]`));
    b.line(`${kb.use(T.out)}[(b * ${T.nodes} + n) * ${a.per}u + ${offset(p.outAxes, a.sizes, full)}] = ${terms.join(' + ')};`);
  });
}
