// A bounded term (window or group mask) in the tree kernel (tree.ts): lag l = lo … min(hi, a_n) reads the
// l-th ancestor of n while l < depth, the committed ring at position a_n − l past the root (the unfolded
// convolution). Per tile of lags, the ring nodes the term reads (its value and key features) are staged for
// the tile — computed from the ancestor's inputs on the path, read from the ring past it — then each lag's score
// is evaluated once, with n's staged query features, and every output column sums score × value over the tile.
// A score that varies along the output columns (over an axis of the value's row) is evaluated per column instead.
// Once per lag matters for a dot-product score: the group-64 local term of llama_linearized at d 128 took
// 128 columns × 64 lags × 128 features per node, the same 64 dot products redone for every column.
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, Term } from '../../src/ir/types.ts';
import { count, maskCondition } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import type { KernelBuilder, WorkgroupArray } from './kernel-builder.ts';
import { frontier, ringIndex, rowAxes } from './layout.ts';
import type { Block } from './wgsl-block.ts';
import { rowReductions, stateAt, TREE_TILE, type TreeAnalysis, type TreeKernel } from './tree-analysis.ts';
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

/** Workgroup arrays the bounded terms share (one term at a time). */
export interface BoundedTiles {
  /** One per ring node, [tile × its row width]. */
  readonly rings: ReadonlyMap<Id, WorkgroupArray>;
  /** The tile's scores, for terms whose score is the same for every output column; null when no term has one. */
  readonly scores: WorkgroupArray | null;
  /** Per row reduction of a ring node (a key's norm), its value at each lag of the tile that is a path node. */
  readonly reductions: ReadonlyMap<Id, WorkgroupArray>;
}

/** The row reductions a ring node computes at its key position (tree-analysis.ts's rowReductions). */
function keyReductions(a: TreeAnalysis, id: Id): Id[] {
  return rowReductions(a.p, id, 'j', { i: 'i', j: 'j' }, a.L.head).filter((r) => r.where === 'j').map((r) => r.id);
}

/** Whether a bounded term's score varies along the output columns (then each column evaluates it). */
export function scorePerColumn(a: TreeAnalysis, t: Term): boolean {
  return a.p.nodes[t.score].type.axes.some((x) => a.L.rest.includes(x));
}

/** The ring tiles, and a score tile as long as the longest tile of a term scored once per lag. */
export function declareBoundedTiles(a: TreeAnalysis, kb: KernelBuilder): BoundedTiles {
  const perLag = a.p.terms.filter((t) => t.form.kind !== 'prefix' && !scorePerColumn(a, t));
  const TS = Math.max(0, ...perLag.map(boundedTile));
  const rows = new Map<Id, number>();
  for (const t of a.p.terms) {
    if (t.form.kind === 'prefix') continue;
    for (const id of ringNodes(a, t)) for (const r of keyReductions(a, id)) rows.set(r, Math.max(rows.get(r) ?? 0, boundedTile(t)));
  }
  const reductions = new Map([...rows].sort((x, y) => x[0] - y[0]).map(([r, n]) => [r, kb.workgroup(`red${r}`, n, `%${r} of the tile's path nodes`)] as const));
  return { rings: declareRingTiles(a, kb), scores: TS ? kb.workgroup('bsc', TS, "the tile's scores, one per lag") : null, reductions };
}

/** One workgroup array per ring node, [tile × its row width], shared by the bounded terms (one at a time). */
function declareRingTiles(a: TreeAnalysis, kb: KernelBuilder): ReadonlyMap<Id, WorkgroupArray> {
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

export function emitBoundedTerm(T: TreeKernel, main: Block, t: Term, sums: ItemSums, bounded: BoundedTiles): void {
  const { a } = T;
  const tiles = bounded.rings;
  const scores = scorePerColumn(a, t) ? null : bounded.scores;
  const [lo, hi] = lagRange(t.mask)!;
  const TJ = boundedTile(t);
  const nodes = ringNodes(a, t);
  const width = (id: Id) => count(rowAxes(a.p, a.L, id), a.sizes);
  main.comment(`${t.name}: lag l reads the l-th ancestor, past the root the committed ring; ${TJ} lags a tile`);
  // A group mask admits lags up to n's offset in its group only: the lags past it would be staged and then skipped.
  const groups = t.mask.flatMap((m) => (m.kind === 'group' ? [`an % ${m.size}u`] : []));
  const top = main.let('top', [`${hi}u`, 'an', ...groups].reduce((x, y) => `min(${x}, ${y})`));
  const reds = [...new Set(nodes.flatMap((id) => keyReductions(a, id)))];
  main.for('l0', `${lo}u`, (l0) => `${l0} <= ${top}`, (l, l0) => {
    if (reds.length) {
      // A path node's row reductions once per lag: its key features, staged element by element below, read them.
      l.strided('kk', `${TJ}u`, (b, kk) => {
        const lag = b.let('lag', `${l0} + ${kk}`);
        b.block(`if (${lag} <= ${top} && ${lag} < depth)`, (c) => {
          const aJ = c.let('aJ', `an - ${lag}`);
          T.at(aJ, c.let('ju', `${T.path.name}[${lag}]`));
          const g = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ });
          for (const r of reds) c.line(`${bounded.reductions.get(r)!.name}[${kk}] = ${g.value(c, r, T.head, aJ)};`);
        });
      });
      l.line('workgroupBarrier();');
    }
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
              const staged: Resolver = (n, idx, where, blk) =>
                where === aJ && bounded.reductions.has(n.id) && reds.includes(n.id) ? `${bounded.reductions.get(n.id)!.name}[${e} / ${W}u]` : T.read(n, idx, where, blk);
              d.line(`${dst} = ${new ExprGen(a.p, a.sizes, staged, { i: 'an', j: aJ }).value(d, id, full, aJ)};`);
            }],
            [null, (d) => d.line(`${dst} = ${stateAt(T, `state:ring${id}`, ringIndex(r, a.st.ring, `${aJ} % ${a.st.ring}u`, offset(a.p.nodes[id].type.axes, a.sizes, full)))};`)],
          ]);
        });
      });
    }
    l.line('workgroupBarrier();');
    // The score at lag kk of the tile, n's query features against the staged ring tiles.
    const score = (c: Block, kk: string, aJ: string, idx: Index) => {
      const fromTile = (id: Id, at: Index) => `${tiles.get(id)!.name}[${kk} * ${width(id)}u + ${offset(rowAxes(a.p, a.L, id), a.sizes, at)}]`;
      const read: Resolver = (n, at, where, blk) => {
        const q = T.qf.get(n.id);
        if (q) return `${q.name}[${offset(a.qf.get(n.id)!.axes, a.sizes, at)}]`;
        if (n.type.side === 'key' && tiles.has(n.id) && nodes.includes(n.id)) return fromTile(n.id, at);
        return T.read(n, at, where, blk);
      };
      return new ExprGen(a.p, a.sizes, read, { i: 'an', j: aJ }).value(c, t.score, idx, aJ);
    };
    if (scores) {
      l.strided('kk', `${TJ}u`, (b, kk) => {
        const lag = b.let('lag', `${l0} + ${kk}`);
        const sc = b.var('sc', '0.0');
        b.block(`if (${lag} <= ${top})`, (c) => {
          const aJ = c.let('aJ', `an - ${lag}`);
          c.block(`if (${maskCondition(t.mask, 'an', aJ)})`, (d) => d.line(`${sc} = ${score(d, kk, aJ, T.head)};`));
        });
        b.line(`${scores.name}[${kk}] = ${sc};`);
      });
      l.line('workgroupBarrier();');
    }
    l.strided('col', `${a.NR}u`, (b, col) => {
      const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
      const nu = b.var('nu', '0.0');
      const de = sums.den ? b.var('de', '0.0') : null;
      b.for('kk', '0u', (kk) => `${kk} < ${TJ}u`, (c, kk) => {
        const lag = c.let('lag', `${l0} + ${kk}`);
        c.line(`if (${lag} > ${top}) { break; }`);
        const aJ = c.let('aJ', `an - ${lag}`);
        c.line(`if (!(${maskCondition(t.mask, 'an', aJ)})) { continue; }`);
        const sc = scores ? c.let('sc', `${scores.name}[${kk}]`) : score(c, kk, aJ, full);
        const v = `${tiles.get(t.value)!.name}[${kk} * ${width(t.value)}u + ${offset(rowAxes(a.p, a.L, t.value), a.sizes, full)}]`;
        c.line(`${nu} = ${nu} + ${sc} * ${v};${de ? ` ${de} = ${de} + ${sc};` : ''}`);
      });
      b.line(`${sums.num.name}[${col}] += ${nu};${de ? ` ${sums.den!.name}[${col}] += ${de};` : ''}`);
    });
    l.line('workgroupBarrier();');
  }, { step: (l0) => `${l0} += ${TJ}u` });
}
