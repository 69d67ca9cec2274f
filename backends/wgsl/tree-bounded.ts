// A bounded term (window or group mask) in the tree kernel (tree.ts): lag l = lo … min(hi, a_n) reads the
// l-th ancestor of n while l < depth, the committed ring at position a_n − l past the root (the unfolded
// convolution). Per tile of lags, the ring nodes the term reads (its value and key features) are staged for
// the tile — computed from the ancestor's inputs on the path, read from the ring past it — and every output
// column then sums score × value over the tile, the score evaluated with n's staged query features.
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, Term } from '../../src/ir/types.ts';
import { count, maskCondition } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import type { KernelBuilder, WorkgroupArray } from './kernel-builder.ts';
import { frontier, ringIndex, rowAxes } from './layout.ts';
import type { Block } from './wgsl-block.ts';
import { stateRef, TREE_TILE, type TreeAnalysis, type TreeKernel } from './tree-analysis.ts';
import type { ItemSums } from './tree-prefix.ts';

/** Lags per tile of a bounded term: its whole lag range when that is short (a K-tap convolution). */
export function boundedTile(t: Term): number {
  const [lo, hi] = lagRange(t.mask)!;
  return Math.max(1, Math.min(TREE_TILE, hi - lo + 1));
}

/** The ring nodes a bounded term reads at key positions: its value and the key side of its score. */
function ringNodes(a: TreeAnalysis, t: Term): Id[] {
  return [...new Set([t.value, ...frontier(a.p, t.score).key])].filter((id) => a.st.rings.some((r) => r.id === id));
}

/** One workgroup array per ring node, [tile × its row width], shared by the bounded terms (one at a time). */
export function declareRingTiles(a: TreeAnalysis, kb: KernelBuilder): ReadonlyMap<Id, WorkgroupArray> {
  const tiles = new Map<Id, WorkgroupArray>();
  const rows = new Map<Id, number>();
  for (const t of a.p.terms) {
    if (t.form.kind === 'prefix') continue;
    for (const id of ringNodes(a, t)) rows.set(id, Math.max(rows.get(id) ?? 0, boundedTile(t)));
  }
  for (const [id, r] of [...rows].sort((x, y) => x[0] - y[0])) {
    tiles.set(id, kb.workgroup(`ring${id}`, r * count(rowAxes(a.p, a.L, id), a.sizes), `%${id} at the tile's lags`));
  }
  return tiles;
}

export function emitBoundedTerm(T: TreeKernel, main: Block, t: Term, sums: ItemSums, tiles: ReadonlyMap<Id, WorkgroupArray>): void {
  const { a } = T;
  const [lo, hi] = lagRange(t.mask)!;
  const TJ = boundedTile(t);
  const nodes = ringNodes(a, t);
  const width = (id: Id) => count(rowAxes(a.p, a.L, id), a.sizes);
  main.comment(`${t.name}: lag l reads the l-th ancestor, past the root the committed ring; ${TJ} lags a tile`);
  const top = main.let('top', `min(${hi}u, an)`);
  main.for('l0', `${lo}u`, (l0) => `${l0} <= ${top}`, (l, l0) => {
    for (const id of nodes) {
      const r = a.st.rings.find((x) => x.id === id)!;
      const own = rowAxes(a.p, a.L, id);
      const W = width(id);
      l.strided('e', `${TJ * W}u`, (b, e) => {
        const lag = b.let('lag', `${l0} + ${e} / ${W}u`);
        b.block(`if (${lag} <= ${top})`, (c) => {
          const aJ = c.let('aJ', `an - ${lag}`);
          const full: Index = { ...T.head, ...c.split(own, a.sizes, `${e} % ${W}u`, `r${id}`) };
          const dst = `${tiles.get(id)!.name}[${e}]`;
          c.ifChain([
            [`${lag} < depth`, (d) => {
              const ju = d.let('ju', `${T.path.name}[${lag}]`);
              T.at(aJ, ju);
              d.line(`${dst} = ${new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ }).value(d, id, full, aJ)};`);
            }],
            [null, (d) => d.line(`${dst} = ${stateRef(T, `state:ring${id}`)}[${ringIndex(r, a.st.ring, `${aJ} % ${a.st.ring}u`, offset(a.p.nodes[id].type.axes, a.sizes, full))}];`)],
          ]);
        });
      });
    }
    l.line('workgroupBarrier();');
    l.strided('col', `${a.NR}u`, (b, col) => {
      const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
      const nu = b.var('nu', '0.0');
      const de = sums.den ? b.var('de', '0.0') : null;
      b.for('kk', '0u', (kk) => `${kk} < ${TJ}u`, (c, kk) => {
        const lag = c.let('lag', `${l0} + ${kk}`);
        c.line(`if (${lag} > ${top}) { break; }`);
        const aJ = c.let('aJ', `an - ${lag}`);
        c.line(`if (!(${maskCondition(t.mask, 'an', aJ)})) { continue; }`);
        const fromTile = (id: Id, idx: Index) => `${tiles.get(id)!.name}[${kk} * ${width(id)}u + ${offset(rowAxes(a.p, a.L, id), a.sizes, idx)}]`;
        const read: Resolver = (n, idx, where, at) => {
          const q = T.qf.get(n.id);
          if (q) return `${q.name}[${offset(a.qf.get(n.id)!.axes, a.sizes, idx)}]`;
          if (n.type.side === 'key' && tiles.has(n.id) && nodes.includes(n.id)) return fromTile(n.id, idx);
          return T.read(n, idx, where, at);
        };
        const sc = new ExprGen(a.p, a.sizes, read, { i: 'an', j: aJ }).value(c, t.score, full, aJ);
        c.line(`${nu} = ${nu} + ${sc} * ${fromTile(t.value, full)};${de ? ` ${de} = ${de} + ${sc};` : ''}`);
      });
      b.line(`${sums.num.name}[${col}] += ${nu};${de ? ` ${sums.den!.name}[${col}] += ${de};` : ''}`);
    });
    l.line('workgroupBarrier();');
  }, { step: (l0) => `${l0} += ${TJ}u` });
}
