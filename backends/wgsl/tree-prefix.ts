// A prefix term in the tree kernel (tree.ts), at node n with root path P(n) = path[0 .. depth):
//
//   causal:       num += Σ_{j∈P(n)} A[n, j] v_j + Σ_f φ_n[f] D_n[f] S[f],   A[n, j] = Σ_f φ_n[f] D_{j→n}[f] ψ_j[f]
//   past_groups:  the path nodes j of earlier groups (⌊a_j/C⌋ < ⌊a_n/C⌋, no decay), then S (+ So once n has
//                 left the committed open group)
//
// with D_{j→n} the product of the gates of the path nodes below j down to n (D_n: of the whole path). The
// chunked kernel's score tile with the ancestor mask in place of the causal one, walked down the path: per
// tile of TILE ancestors, the gates' exclusive product scan (one thread per gate value), the TILE scores
// (TILE × LANES threads, each a slice of the features), then every output column takes its TILE value
// loads. A score costs F multiply-adds once per (node, ancestor), shared by all columns; a column costs
// depth + F (the old path walk recomputed the score for every column: depth × F).
import type { Term } from '../../src/ir/types.ts';
import { ExprGen, type Index } from './expr.ts';
import type { WorkgroupArray } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';
import { hoistRowReductions, stateAt, TREE_LANES, TREE_TILE, type TreeKernel, type TreePrefix } from './tree-analysis.ts';

/** Where a term adds its sums: one [NR] array per output item (den only for normalised items). */
export interface ItemSums {
  readonly num: WorkgroupArray;
  readonly den: WorkgroupArray | null;
}

/** Workgroup arrays the prefix terms share (one term at a time). */
export interface PrefixTiles {
  /** The tile's scores A[n, path[k0 + kk]]. */
  readonly A: WorkgroupArray;
  /** Partial scores of the LANES feature slices, [TILE · LANES]. */
  readonly part: WorkgroupArray;
  /** Running product of the gates from n up to the tile, [gate width]. */
  readonly dacc: WorkgroupArray | null;
  /** The tile's D_{j→n}, [TILE · gate width]. */
  readonly Dt: WorkgroupArray | null;
}

/** Rows of S a thread reads before using any (as the recurrent step does); a divisor of F. */
function unrollOf(F: number): number {
  let u = Math.min(16, F);
  while (F % u !== 0) u--;
  return u;
}

export function emitPrefixTerm(T: TreeKernel, main: Block, q: TreePrefix, t: Term, sums: ItemSums, tiles: PrefixTiles): void {
  const { a } = T;
  const phi = T.phi[a.prefix.indexOf(q)].name;
  const gW = q.gateW;
  const dacc = tiles.dacc?.name;
  const Dt = tiles.Dt?.name;
  const C = q.group;
  main.comment(`${t.name}: scores against n's path, ${TREE_TILE} ancestors a tile, then the committed state`);
  if (gW) main.strided('g', `${gW}u`, (b, g) => b.line(`${dacc}[${g}] = 1.0;`));
  main.for('k0', '0u', (k0) => `${k0} < depth`, (l, k0) => {
    if (gW) {
      l.comment('the gates of the tile, then D_{j→n} = the product of the gates below j (an exclusive scan per gate value)');
      l.strided('e', `${TREE_TILE * gW}u`, (b, e) => {
        const k = b.let('k', `${k0} + ${e} / ${gW}u`);
        const gate = b.var('gate', '1.0');
        b.block(`if (${k} < depth)`, (c) => {
          const ju = c.let('ju', `${T.path.name}[${k}]`);
          const aJ = c.let('aJ', `an - ${k}`);
          T.at(aJ, ju);
          const idx: Index = { ...T.head, ...(gW > 1 ? { [q.form.feature!]: `${e} % ${gW}u` } : {}) };
          c.line(`${gate} = ${new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ }).value(c, q.gateId!, idx, aJ)};`);
        });
        b.line(`${Dt}[${e}] = ${gate};`);
      });
      l.line('workgroupBarrier();');
      l.strided('g', `${gW}u`, (b, g) => {
        const d = b.var('d', `${dacc}[${g}]`);
        b.for('kk', '0u', (kk) => `${kk} < ${TREE_TILE}u`, (c, kk) => {
          const x = c.let('x', `${Dt}[${kk} * ${gW}u + ${g}]`);
          c.line(`${Dt}[${kk} * ${gW}u + ${g}] = ${d}; ${d} = ${d} * ${x};`);
        });
        b.line(`${dacc}[${g}] = ${d};`);
      });
      l.line('workgroupBarrier();');
    }
    l.block('', (b) => {
      b.comment(`scores: thread (kk, lane) sums features lane, lane + ${TREE_LANES}, … of A[n, path[k0 + kk]]`);
      const k = b.let('k', `${k0} + lid / ${TREE_LANES}u`);
      const lane = b.let('lane', `lid % ${TREE_LANES}u`);
      const part = b.var('part', '0.0');
      const aJ0 = b.let('aJ', `an - min(${k}, depth - 1u)`);
      const admit = C ? `${k} < depth && ${aJ0} / ${C}u < an / ${C}u` : `${k} < depth`;
      b.block(`if (${admit})`, (c) => {
        const ju = c.let('ju', `${T.path.name}[${k}]`);
        T.at(aJ0, ju);
        const g = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ0 });
        hoistRowReductions(T, g, c, q.form.psi, aJ0); // ψ_j's norm once per thread, not once per feature
        c.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (m, f0) => {
          const f = m.let('f', `${f0} + ${lane}`);
          const body = (x: Block) => {
            const idx: Index = { ...T.head, ...(q.form.feature ? { [q.form.feature]: f } : {}) };
            const psi = g.value(x, q.form.psi, idx, aJ0);
            const d = gW ? ` * ${Dt}[(lid / ${TREE_LANES}u) * ${gW}u + ${gW > 1 ? f : '0u'}]` : '';
            x.line(`${part} = ${part} + ${phi}[${f}]${d} * ${psi};`);
          };
          if (q.F % TREE_LANES === 0) body(m);
          else m.block(`if (${f} < ${q.F}u)`, body);
        }, { step: (f0) => `${f0} += ${TREE_LANES}u` });
      });
      b.line(`${tiles.part.name}[lid] = ${part};`);
    });
    l.line('workgroupBarrier();');
    l.block(`if (lid < ${TREE_TILE}u)`, (b) => {
      const s = b.var('sc', '0.0');
      b.for('ln', '0u', (ln) => `${ln} < ${TREE_LANES}u`, (c, ln) => c.line(`${s} = ${s} + ${tiles.part.name}[lid * ${TREE_LANES}u + ${ln}];`));
      b.line(`${tiles.A.name}[lid] = ${s};`);
    });
    l.line('workgroupBarrier();');
    l.strided('col', `${a.NR}u`, (b, col) => {
      b.comment('A · v over the tile');
      const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
      const nu = b.var('nu', '0.0');
      const de = sums.den ? b.var('de', '0.0') : null;
      b.for('kk', '0u', (kk) => `${kk} < min(${TREE_TILE}u, depth - ${k0})`, (c, kk) => {
        const k = c.let('k', `${k0} + ${kk}`);
        const ju = c.let('ju', `${T.path.name}[${k}]`);
        const aJ = c.let('aJ', `an - ${k}`);
        T.at(aJ, ju);
        const v = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ }).value(c, t.value, full, aJ);
        const sc = c.let('sc', `${tiles.A.name}[${kk}]`);
        c.line(`${nu} = ${nu} + ${sc} * ${v};${de ? ` ${de} = ${de} + ${sc};` : ''}`);
      });
      b.line(`${sums.num.name}[${col}] += ${nu};${de ? ` ${sums.den!.name}[${col}] += ${de};` : ''}`);
    });
    l.line('workgroupBarrier();');
  }, { step: (k0) => `${k0} += ${TREE_TILE}u` });
  committedState(T, main, q, sums, phi, dacc);
  main.line('workgroupBarrier();');
}

/** num += Σ_f φ_n[f] D_n[f] S[f, col] (past_groups: S, plus So once n has left the open group), den alike with z. */
function committedState(T: TreeKernel, main: Block, q: TreePrefix, sums: ItemSums, phi: string, dacc: string | undefined): void {
  const { a } = T;
  const U = unrollOf(q.F);
  const S = (i: string) => stateAt(T, `state:S${q.k}`, i);
  const z = sums.den ? (i: string) => stateAt(T, `state:z${q.k}`, i) : null;
  const C = q.group;
  const open = C ? { So: (i: string) => stateAt(T, `state:So${q.k}`, i), zo: sums.den ? (i: string) => stateAt(T, `state:zo${q.k}`, i) : null } : null;
  main.strided('col', `${a.NR}u`, (b, col) => {
    b.comment(`the committed state, ${U} rows of S in flight`);
    const nu = b.var('nu', '0.0');
    const de = z ? b.var('de', '0.0') : null;
    const withOpen = open ? b.let('withOpen', `dims.pos0 > 0u && (dims.pos0 - 1u) / ${C}u < an / ${C}u`) : null;
    b.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (l, f0) => {
      const si = (u: number) => `((b * ${a.NS}u + s) * ${q.F}u + ${f0} + ${u}u) * ${a.NR}u + ${col}`;
      const zi = (u: number) => `(b * ${a.NS}u + s) * ${q.F}u + ${f0} + ${u}u`;
      // So only once n has left the open group (a uniform branch: most nodes of a tree stay in it, and a select
      // would load So for them too, doubling the state this kernel reads per node).
      const rows = [...Array(U).keys()].map((u) => (open ? l.var(`s${u}`, S(si(u))) : l.let(`s${u}`, S(si(u)))));
      if (open) l.block(`if (${withOpen})`, (c) => rows.forEach((su, u) => c.line(`${su} = ${su} + ${open.So(si(u))};`)));
      rows.forEach((su, u) => {
        const f = `${f0} + ${u}u`;
        const w = l.let('w', `${phi}[${f}]${dacc ? ` * ${dacc}[${q.gateW > 1 ? f : '0u'}]` : ''}`);
        // z from this column's copy (layout.ts), at S's index; zo is kept once per feature.
        const zv = z ? (open?.zo ? `(${z(si(u))} + select(0.0, ${open.zo(zi(u))}, ${withOpen}))` : `${z(si(u))}`) : null;
        l.line(`${nu} = ${nu} + ${w} * ${su};${de ? ` ${de} = ${de} + ${w} * ${zv};` : ''}`);
      });
    }, { step: (f0) => `${f0} += ${U}u` });
    b.line(`${sums.num.name}[${col}] += ${nu};${de ? ` ${sums.den!.name}[${col}] += ${de};` : ''}`);
  });
}

