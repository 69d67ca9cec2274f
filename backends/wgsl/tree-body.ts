// The body of a tree kernel after its prologue (tree-analysis.ts's treeKernel): every output item's sums over
// its terms — prefix terms against n's path and the committed state (tree-prefix.ts), bounded terms over their
// lags (tree-bounded.ts) — then o at node n, normalised where asked. The plain tree kernel (tree.ts) and the
// folded one (tree-fold.ts) run it alike; only what the prologue put in path[] and depth differs.
import { offset, type Index } from './expr.ts';
import type { Block } from './wgsl-block.ts';
import type { TreeKernel } from './tree-analysis.ts';
import { declareBoundedTiles, emitBoundedTerm } from './tree-bounded.ts';
import { emitPrefixTerm, type ItemSums, type PrefixTiles } from './tree-prefix.ts';

/** Emits the terms and the output into `main` (default: the builder's body). */
export function emitTreeBody(T: TreeKernel, main: Block = T.kb.body): void {
  const { a, kb } = T;
  const { p } = a;
  const gW = Math.max(0, ...a.prefix.map((q) => q.gateW));
  const sliced = a.split.slices > 1 && a.prefix.length > 0;
  const TILE = a.split.tile;
  const tiles: PrefixTiles = {
    A: kb.workgroup('A', TILE, "the tile's scores"),
    part: kb.workgroup('part', TILE * a.lanes, 'partial scores of the feature slices'),
    values: a.split.stageValues && a.prefix.length > 0 ? kb.workgroup('vals', TILE * a.NR, "the tile's values, [TILE, columns]") : null,
    slicePart: sliced
      ? {
        num: kb.workgroup('snum', a.split.threads, "the state's partial numerators of each slice"),
        den: p.output.some((it) => it.kind === 'norm') ? kb.workgroup('sden', a.split.threads, "the state's partial denominators of each slice") : null,
      }
      : null,
    dacc: gW ? kb.workgroup('dacc', gW, 'gate product from n up to the tile') : null,
    Dt: gW ? kb.workgroup('Dt', TILE * gW, "the tile's D_{j→n}") : null,
  };
  const bounded = declareBoundedTiles(a, kb);
  const sums: ItemSums[] = p.output.map((it, k) => ({
    num: kb.workgroup(`num${k}`, a.NR, `item ${k}'s numerators per column`),
    den: it.kind === 'norm' ? kb.workgroup(`den${k}`, a.NR, `item ${k}'s denominators`) : null,
  }));
  main.strided('col', `${a.NR}u`, (b, col) => sums.forEach((x) => b.line(`${x.num.name}[${col}] = 0.0;${x.den ? ` ${x.den.name}[${col}] = 0.0;` : ''}`)));
  p.output.forEach((it, k) => {
    for (const name of it.kind === 'term' ? [it.term] : it.terms) {
      const t = p.terms.find((x) => x.name === name)!;
      const q = a.prefix.find((x) => x.name === t.name);
      if (q) emitPrefixTerm(T, main, q, t, sums[k], tiles);
      else emitBoundedTerm(T, main, t, sums[k], bounded);
    }
  });
  main.strided('col', `${a.NR}u`, (b, col) => {
    b.comment('the output: every item, normalised where asked');
    const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
    const terms = p.output.map((it, k) => (it.kind === 'norm' ? `${sums[k].num.name}[${col}] / (${sums[k].den!.name}[${col}] + ${it.eps})` : `${sums[k].num.name}[${col}]`));
    b.line(`${kb.use(T.out)}[(b * ${T.nodes} + n) * ${a.per}u + ${offset(p.outAxes, a.sizes, full)}] = ${terms.join(' + ')};`);
  });
}
