// The wide path tile of a prefix term without gates, under a hardware split (tree-split.ts: TreeSplit.wideTile).
//
// Why: on the H200 the tree-fold kernel at 64 nodes (a chain of 65 with 65 pending, so the deepest node's path has
// 130 ancestors) took ~47 µs a dispatch for ~10 M multiply-adds. A verifying workgroup walks its path in tiles of
// TREE_TILE = 16 ancestors, and each tile is a serial round: its score loads (4 features a thread, each load behind
// the branch on whether the ancestor is a pending node, so one global round trip after another), a barrier, 16
// threads adding 16 lanes, a barrier, every column's 16-step walk, a barrier. The deepest node runs 9 such rounds
// back to back while the GPU waits on it; the fold at 64 nodes with nothing pending (5 rounds) took ~30 µs, the
// 1-node fold ~12 µs, so a round cost ~3.6 µs: latency, not work.
//
// The wide tile takes WIDE ancestors a round (64: 130 ancestors in 3 rounds, a 16-node tree's ≤ 34 in 1), each
// round one round trip to memory: its loads are straight-line code (an entry past the path reads the deepest
// ancestor again, k clamped below depth; its score is selected to 0 and its value never read), values first:
//   - the tile's values v_j, WIDE × NR floats, each thread's loads into registers, stored after the scores;
//   - scores: thread (kk, lane) of WIDE × LW (LW = threads / WIDE = 4 lanes) sums its F / LW features, written
//     out unrolled so that their loads are in flight before the first product;
//   - one barrier, then thread (column, walk slice ws) takes ancestors ws, ws + WS, … of the tile (interleaved, so
//     a short path still spreads over all slices; four a loop iteration), adding the LW lane partials of each
//     score itself (no separate reduction round and its barrier), into registers it keeps across rounds;
//   - one barrier before the next round overwrites the tile; after the last, the slices' partial sums meet in
//     workgroup memory and slice 0 adds them in slice order (two barriers once per term).
// Rounds: 2 barriers instead of 3, ⌈depth / 64⌉ instead of ⌈depth / 16⌉. Gated terms (gla, retnet, mamba2) keep
// the 16-ancestor tiles: their D_{j→n} is an exclusive scan per tile (tree-prefix.ts).
import { ExprGen, type Index } from './expr.ts';
import type { Block } from './wgsl-block.ts';
import { hoistRowReductions, type TreeKernel, type TreePrefix } from './tree-analysis.ts';
import type { Term } from '../../src/ir/types.ts';
import type { ItemSums, PrefixTiles } from './tree-prefix.ts';
import { wideColumns } from './tree-split.ts';

/** Feature loads a score thread issues before its first product (more features: a loop of such groups). */
const MAX_UNROLL = 16;


/** num += Σ_{j∈P(n)} A[n, j] v_j (den += Σ A[n, j]) over n's path, WIDE ancestors a round. */
export function emitWidePath(T: TreeKernel, main: Block, q: TreePrefix, t: Term, sums: ItemSums, tiles: PrefixTiles): void {
  const { a } = T;
  const WIDE = a.split.wideTile;
  const threads = a.split.threads;
  const LW = threads / WIDE;
  const CW = wideColumns(a.NR);
  const WS = threads / CW;
  const vals = tiles.values;
  const part = tiles.slicePart;
  if (!vals || !part || WIDE % WS !== 0 || threads % WIDE !== 0) throw new Error(`internal: ${a.p.name}: a wide tile of ${WIDE} ancestors needs staged values, slice sums and ${threads} threads over ${CW}-column slices`);
  const phi = T.phi[a.prefix.indexOf(q)].name;
  const C = q.group;
  main.comment(`${t.name}: scores against n's path, ${WIDE} ancestors a round (tree-wide.ts), then the committed state`);
  const wcol = main.let('wcol', `lid % ${CW}u`);
  const wsl = main.let('wsl', `lid / ${CW}u`);
  const nuW = main.var('nuW', '0.0');
  const deW = sums.den ? main.var('deW', '0.0') : null;
  main.for('k0', '0u', (k0) => `${k0} < depth`, (l, k0) => {
    // Straight-line loads: an entry past the path reads the deepest ancestor again (k clamped below depth) and its
    // score is zeroed, its value never read, so no load waits behind a branch on whether it is needed.
    l.comment("the round's values: each thread's loads first (an entry past the path reads the last one again), stored after the scores");
    const per = Math.ceil((WIDE * a.NR) / threads);
    const staged = [...Array(per).keys()].map((u) => {
      const e = l.let('e', `lid + ${u * threads}u`);
      const k = l.let('k', `min(${k0} + ${e} / ${a.NR}u, depth - 1u)`);
      const full: Index = { ...T.head, ...l.split(a.L.rest, a.sizes, `${e} % ${a.NR}u`, 'vc') };
      const ju = l.let('ju', `${T.path.name}[${k}]`);
      const aJ = l.let('aJ', `an - ${k}`);
      T.at(aJ, ju);
      const v = l.let('val', new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ }).value(l, t.value, full, aJ));
      return { e, v, partial: (u + 1) * threads > WIDE * a.NR };
    });
    l.block('', (b) => {
      b.comment(`scores: thread (kk, lane) sums features lane, lane + ${LW}, … of A[n, path[k0 + kk]], its loads unrolled`);
      const kRaw = b.let('kr', `${k0} + lid / ${LW}u`);
      const k = b.let('k', `min(${kRaw}, depth - 1u)`);
      const lane = b.let('lane', `lid % ${LW}u`);
      const acc = b.var('part', '0.0');
      const aJ0 = b.let('aJ', `an - ${k}`);
      const admit = C ? `${kRaw} < depth && ${aJ0} / ${C}u < an / ${C}u` : `${kRaw} < depth`;
      const ju = b.let('ju', `${T.path.name}[${k}]`);
      T.at(aJ0, ju);
      const g = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ0 });
      hoistRowReductions(T, g, b, q.form.psi, aJ0);
      const U = Math.min(MAX_UNROLL, Math.ceil(q.F / LW));
      const span = U * LW;
      b.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (m, f0) => {
        const products: string[] = [];
        for (let u = 0; u < U; u++) {
          const f = m.let('f', `${f0} + ${u * LW}u + ${lane}`);
          const idx: Index = { ...T.head, ...(q.form.feature ? { [q.form.feature]: f } : {}) };
          if (q.F % span === 0) {
            products.push(`${phi}[${f}] * ${g.value(m, q.form.psi, idx, aJ0)}`);
          } else {
            const x = m.var('psi', '0.0');
            m.block(`if (${f} < ${q.F}u)`, (y) => y.line(`${x} = ${phi}[${f}] * ${g.value(y, q.form.psi, idx, aJ0)};`));
            products.push(x);
          }
        }
        // The sum after every load: the products' order is the lane's feature order, as in the narrow tile.
        for (const x of products) m.line(`${acc} = ${acc} + ${x};`);
      }, { step: (f0) => `${f0} += ${span}u` });
      b.line(`${tiles.part.name}[lid] = select(0.0, ${acc}, ${admit});`);
    });
    for (const x of staged) l.line(x.partial ? `if (${x.e} < ${WIDE * a.NR}u) { ${vals.name}[${x.e}] = ${x.v}; }` : `${vals.name}[${x.e}] = ${x.v};`);
    l.line('workgroupBarrier();');
    l.block(`if (${wcol} < ${a.NR}u)`, (b) => {
      b.comment(`A · v: walk slice ws takes ancestors ws, ws + ${WS}, … of the round, each score its ${LW} lanes' sum`);
      const step = (c: Block, kk: string) => {
        const lanes = [...Array(LW).keys()].map((ln) => `${tiles.part.name}[${kk} * ${LW}u + ${ln}u]`).join(' + ');
        const sc = c.let('sc', lanes);
        c.line(`${nuW} = ${nuW} + ${sc} * ${vals.name}[${kk} * ${a.NR}u + ${wcol}];${deW ? ` ${deW} = ${deW} + ${sc};` : ''}`);
      };
      // Four ancestors a step (in order: the same sums), so that their loads are issued together, then the rest.
      const lim = b.let('lim', `min(${WIDE}u, depth - ${k0})`);
      const kk = b.var('kk', wsl, 'u32');
      b.block(`for (; ${kk} + ${3 * WS}u < ${lim}; ${kk} += ${4 * WS}u)`, (c) => {
        for (let i = 0; i < 4; i++) c.block('', (x) => step(x, `(${kk} + ${i * WS}u)`));
      });
      b.block(`for (; ${kk} < ${lim}; ${kk} += ${WS}u)`, (c) => step(c, kk));
    });
    l.line('workgroupBarrier();');
  }, { step: (k0) => `${k0} += ${WIDE}u` });
  main.comment(`the walk slices' sums, added in slice order`);
  main.line(`${part.num.name}[lid] = ${nuW};${deW ? ` ${part.den!.name}[lid] = ${deW};` : ''}`);
  main.line('workgroupBarrier();');
  main.block(`if (${wsl} == 0u && ${wcol} < ${a.NR}u)`, (b) => {
    const add = (arr: string) => [...Array(WS).keys()].map((k) => `${arr}[${k ? `${k * CW}u + ` : ''}lid]`).join(' + ');
    b.line(`${sums.num.name}[${wcol}] += ${add(part.num.name)};${deW ? ` ${sums.den!.name}[${wcol}] += ${add(part.den!.name)};` : ''}`);
  });
  main.line('workgroupBarrier();');
}
