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
// Under a hardware split (tree-split.ts) the committed state's F rows per column are walked by several slices of
// threads at once, their partial sums added in slice order (committedStateSliced).
import type { Term } from '../../src/ir/types.ts';
import { ExprGen, type Index } from './expr.ts';
import type { WorkgroupArray } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';
import { hoistRowReductions, stateAt, type TreeKernel, type TreePrefix } from './tree-analysis.ts';
import { slicesOf, unrollOf, type EarlyRows } from './tree-early.ts';

/** Where a term adds its sums: one [NR] array per output item (den only for normalised items). */
export interface ItemSums {
  readonly num: WorkgroupArray;
  readonly den: WorkgroupArray | null;
}

/** Workgroup arrays the prefix terms share (one term at a time). */
export interface PrefixTiles {
  /** The tile's scores A[n, path[k0 + kk]]. */
  readonly A: WorkgroupArray;
  /** Partial scores of the feature lanes, [TILE · lanes]. */
  readonly part: WorkgroupArray;
  /** The tile's values v_j, [TILE · NR] (a hardware split: TreeSplit.stageValues); null: each column computes its own. */
  readonly values: WorkgroupArray | null;
  /** The state phase's partial sums of each slice, [threads] (num, then den where a term normalises); null with one slice. */
  readonly slicePart: { readonly num: WorkgroupArray; readonly den: WorkgroupArray | null } | null;
  /** Running product of the gates from n up to the tile, [gate width]. */
  readonly dacc: WorkgroupArray | null;
  /** The tile's D_{j→n}, [TILE · gate width]. */
  readonly Dt: WorkgroupArray | null;
}

/**
 * A lane's features up to this many steps are unrolled in the score loop (F / lanes: 4 at F = 64 under the hardware
 * split's default tile, 16 with tiles of 64 ancestors); the software split keeps its loop above 8.
 */
const MAX_UNROLLED_LANE_STEPS = 16;
const SOFTWARE_UNROLLED_LANE_STEPS = 8;

export function emitPrefixTerm(T: TreeKernel, main: Block, q: TreePrefix, t: Term, sums: ItemSums, tiles: PrefixTiles): void {
  const { a } = T;
  const LANES = a.lanes;
  const TILE = a.split.tile;
  const phi = T.phi[a.prefix.indexOf(q)].name;
  const gW = q.gateW;
  const dacc = tiles.dacc?.name;
  const Dt = tiles.Dt?.name;
  const C = q.group;
  main.comment(`${t.name}: scores against n's path, ${TILE} ancestors a tile, then the committed state`);
  if (gW) main.strided('g', `${gW}u`, (b, g) => b.line(`${dacc}[${g}] = 1.0;`));
  main.for('k0', '0u', (k0) => `${k0} < depth`, (l, k0) => {
    if (gW) {
      l.comment('the gates of the tile, then D_{j→n} = the product of the gates below j (an exclusive scan per gate value)');
      l.strided('e', `${TILE * gW}u`, (b, e) => {
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
        b.for('kk', '0u', (kk) => `${kk} < ${TILE}u`, (c, kk) => {
          const x = c.let('x', `${Dt}[${kk} * ${gW}u + ${g}]`);
          c.line(`${Dt}[${kk} * ${gW}u + ${g}] = ${d}; ${d} = ${d} * ${x};`);
        });
        b.line(`${dacc}[${g}] = ${d};`);
      });
      l.line('workgroupBarrier();');
    }
    const vals = tiles.values?.name;
    const storeVals: (() => void)[] = [];
    if (vals) {
      l.comment("the tile's values, all loaded at once (the column walk below reads them here, not one load after another): each thread's trips unrolled, an entry past the path clamped to its last; loaded before the scores' loads, stored after them, so that both are in flight together");
      for (const { x: e, guard } of l.trips('e', TILE * a.NR, { index: 'lid', size: a.split.threads })) {
        const k = l.let('k', `${k0} + ${e} / ${a.NR}u`);
        const full: Index = { ...T.head, ...l.split(a.L.rest, a.sizes, `${e} % ${a.NR}u`, 'vc') };
        const kc = l.let('kc', `min(${k}, depth - 1u)`);
        const ju = l.let('ju', `${T.path.name}[${kc}]`);
        const aJ = l.let('aJ', `an - ${kc}`);
        T.at(aJ, ju);
        const v = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ }).value(l, t.value, full, aJ);
        // Stored past the path too (the path's last entry's value, finite): the unrolled A·V below reads every row.
        storeVals.push(() => l.line(guard ? `if (${guard}) { ${vals}[${e}] = ${v}; }` : `${vals}[${e}] = ${v};`));
      }
    }
    l.block('', (b) => {
      b.comment(`scores: thread (kk, lane) sums features lane, lane + ${LANES}, … of A[n, path[k0 + kk]]`);
      const k = b.let('k', `${k0} + lid / ${LANES}u`);
      const lane = b.let('lane', `lid % ${LANES}u`);
      const part = b.var('part', '0.0');
      const aJ0 = b.let('aJ', `an - min(${k}, depth - 1u)`);
      const admit = C ? `${k} < depth && ${aJ0} / ${C}u < an / ${C}u` : `${k} < depth`;
      b.block(`if (${admit})`, (c) => {
        const ju = c.let('ju', `${T.path.name}[${k}]`);
        T.at(aJ0, ju);
        const g = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: aJ0 });
        hoistRowReductions(T, g, c, q.form.psi, aJ0); // ψ_j's norm once per thread, not once per feature
        const body = (x: Block, f: string) => {
          const idx: Index = { ...T.head, ...(q.form.feature ? { [q.form.feature]: f } : {}) };
          const psi = g.value(x, q.form.psi, idx, aJ0);
          const d = gW ? ` * ${Dt}[(lid / ${LANES}u) * ${gW}u + ${gW > 1 ? f : '0u'}]` : '';
          x.line(`${part} = ${part} + ${phi}[${f}]${d} * ${psi};`);
        };
        if (q.F % LANES === 0 && q.F / LANES <= (a.split.stageValues ? MAX_UNROLLED_LANE_STEPS : SOFTWARE_UNROLLED_LANE_STEPS)) {
          // Unrolled: the lane's features load together (a loop waits on each load in turn, a memory round trip apiece).
          for (let f0 = 0; f0 < q.F; f0 += LANES) body(c, c.let('f', `${f0}u + ${lane}`));
        } else {
          c.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (m, f0) => {
            const f = m.let('f', `${f0} + ${lane}`);
            if (q.F % LANES === 0) body(m, f);
            else m.block(`if (${f} < ${q.F}u)`, (x) => body(x, f));
          }, { step: (f0) => `${f0} += ${LANES}u` });
        }
      });
      b.line(`${tiles.part.name}[lid] = ${part};`);
    });
    for (const store of storeVals) store();
    l.line('workgroupBarrier();');
    l.block(`if (lid < ${TILE}u)`, (b) => {
      // The lanes' partial scores in lane order, unrolled (their loads together).
      b.line(`${tiles.A.name}[lid] = ${[...Array(LANES).keys()].map((ln) => `${tiles.part.name}[lid * ${LANES}u + ${ln}u]`).join(' + ')};`);
    });
    l.line('workgroupBarrier();');
    l.strided('col', `${a.NR}u`, (b, col) => {
      b.comment('A · v over the tile');
      const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
      const nu = b.var('nu', '0.0');
      const de = sums.den ? b.var('de', '0.0') : null;
      if (vals) {
        // Every entry of the tile, unrolled (its loads together): past the path A is 0 (its scores summed nothing) and
        // the staged value the path's last entry's.
        for (let kk = 0; kk < TILE; kk++) {
          const sc = b.let('sc', `${tiles.A.name}[${kk}u]`);
          b.line(`${nu} = ${nu} + ${sc} * ${vals}[${kk * a.NR}u + ${col}];${de ? ` ${de} = ${de} + ${sc};` : ''}`);
        }
      } else b.for('kk', '0u', (kk) => `${kk} < min(${TILE}u, depth - ${k0})`, (c, kk) => {
        // Nothing staged (the software split): each column computes its values, path entries only.
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
  }, { step: (k0) => `${k0} += ${TILE}u` });
  if (tiles.slicePart && slicesOf(q.F, a.split.slices) > 1) committedStateSliced(T, main, q, sums, phi, dacc, tiles.slicePart);
  else committedState(T, main, q, sums, phi, dacc);
  main.line('workgroupBarrier();');
}

/** What the committed state's row walk reads: S, z, and (past_groups) So, zo with the test whether n left the open group. */
interface StateRows {
  readonly U: number;
  readonly S: (i: string) => string;
  readonly z: ((i: string) => string) | null;
  readonly open: { readonly So: (i: string) => string; readonly zo: ((i: string) => string) | null } | null;
  /** The thread's rows loaded before the first barrier (tree-early.ts): row r of its walk in S[r] (z[r]). */
  readonly early: EarlyRows | null;
}

function stateRows(T: TreeKernel, q: TreePrefix, sums: ItemSums, rows: number): StateRows {
  const C = q.group;
  return {
    U: unrollOf(rows),
    S: (i) => stateAt(T, `state:S${q.k}`, i),
    z: sums.den ? (i) => stateAt(T, `state:z${q.k}`, i) : null,
    open: C ? { So: (i) => stateAt(T, `state:So${q.k}`, i), zo: sums.den ? (i) => stateAt(T, `state:zo${q.k}`, i) : null } : null,
    early: T.early.get(q.k) ?? null,
  };
}

/**
 * Rows f0 … f0 + U of the state at column `col` into nu (and de): U loads of S in flight, then their products.
 * `walked`: with early registers (r.early), the rows already walked this thread, f0 − its first row (a constant).
 */
function emitStateRows(T: TreeKernel, l: Block, q: TreePrefix, r: StateRows, f0: string, col: string, phi: string, dacc: string | undefined, nu: string, de: string | null, withOpen: string | null, walked = 0): void {
  const { a } = T;
  const { U, open, early } = r;
  const S = early ? (_: string, u: number) => early.S[walked + u] : (i: string) => r.S(i);
  const z = r.z && (early?.z ? (_: string, u: number) => early.z![walked + u] : r.z);
  const si = (u: number) => `((b * ${a.NS}u + s) * ${q.F}u + ${f0} + ${u}u) * ${a.NR}u + ${col}`;
  const zi = (u: number) => `(b * ${a.NS}u + s) * ${q.F}u + ${f0} + ${u}u`;
  // So only once n has left the open group (a uniform branch: most nodes of a tree stay in it, and a select
  // would load So for them too, doubling the state this kernel reads per node).
  const rows = [...Array(U).keys()].map((u) => (open ? l.var(`s${u}`, S(si(u), u)) : l.let(`s${u}`, S(si(u), u))));
  if (open) l.block(`if (${withOpen})`, (c) => rows.forEach((su, u) => c.line(`${su} = ${su} + ${open.So(si(u))};`)));
  rows.forEach((su, u) => {
    const f = `${f0} + ${u}u`;
    const w = l.let('w', `${phi}[${f}]${dacc ? ` * ${dacc}[${q.gateW > 1 ? f : '0u'}]` : ''}`);
    // z from this column's copy (layout.ts), at S's index; zo is kept once per feature.
    const zv = z ? (open?.zo ? `(${z(si(u), u)} + select(0.0, ${open.zo(zi(u))}, ${withOpen}))` : `${z(si(u), u)}`) : null;
    l.line(`${nu} = ${nu} + ${w} * ${su};${de ? ` ${de} = ${de} + ${w} * ${zv};` : ''}`);
  });
}

/** The row walk unrolled (registers are named, not indexed): `emit(w)` for w = 0, U, 2U, … < rows, in the loop's order. */
function walkEarly(rows: number, U: number, emit: (walked: number) => void): void {
  for (let w = 0; w < rows; w += U) emit(w);
}

/** WGSL: whether n has left the committed open group of a past_groups term of group size C (then So joins S). */
const leftOpenGroup = (C: number) => `pos0 > 0u && (pos0 - 1u) / ${C}u < an / ${C}u`;

/** num += Σ_f φ_n[f] D_n[f] S[f, col] (past_groups: S, plus So once n has left the open group), den alike with z. */
function committedState(T: TreeKernel, main: Block, q: TreePrefix, sums: ItemSums, phi: string, dacc: string | undefined): void {
  const { a } = T;
  const r = stateRows(T, q, sums, q.F);
  main.strided('col', `${a.NR}u`, (b, col) => {
    b.comment(`the committed state, ${r.U} rows of S in flight`);
    const nu = b.var('nu', '0.0');
    const de = r.z ? b.var('de', '0.0') : null;
    const withOpen = r.open ? b.let('withOpen', leftOpenGroup(q.group)) : null;
    if (r.early) walkEarly(q.F, r.U, (w) => emitStateRows(T, b, q, r, `${w}u`, col, phi, dacc, nu, de, withOpen, w));
    else b.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (l, f0) => emitStateRows(T, l, q, r, f0, col, phi, dacc, nu, de, withOpen), { step: (f0) => `${f0} += ${r.U}u` });
    b.line(`${sums.num.name}[${col}] += ${nu};${de ? ` ${sums.den!.name}[${col}] += ${de};` : ''}`);
  });
}

/**
 * committedState with SL slices of threads on each column (tree-split.ts): thread (slice sl, column col) walks
 * rows [sl · F/SL, (sl + 1) · F/SL); the partial sums meet in workgroup memory and slice 0 adds them in slice order.
 * Columns go threads / split.slices at a time.
 */
function committedStateSliced(T: TreeKernel, main: Block, q: TreePrefix, sums: ItemSums, phi: string, dacc: string | undefined, part: NonNullable<PrefixTiles['slicePart']>): void {
  const { a } = T;
  const SL = slicesOf(q.F, a.split.slices);
  const CW = a.split.threads / a.split.slices;
  const RS = q.F / SL;
  const r = stateRows(T, q, sums, RS);
  main.comment(`the committed state: ${SL} slices of ${RS} rows per column, ${r.U} rows of S in flight, then the slices' sums in order`);
  main.for('c0', '0u', (c0) => `${c0} < ${a.NR}u`, (l, c0) => {
    const col = l.let('col', `${c0} + lid % ${CW}u`);
    const sl = l.let('sl', `lid / ${CW}u`);
    const nu = l.var('nu', '0.0');
    const de = r.z ? l.var('de', '0.0') : null;
    const withOpen = r.open ? l.let('withOpen', leftOpenGroup(q.group)) : null;
    l.block(`if (${col} < ${a.NR}u && ${sl} < ${SL}u)`, (b) => {
      if (r.early) walkEarly(RS, r.U, (w) => emitStateRows(T, b, q, r, `${sl} * ${RS}u + ${w}u`, col, phi, dacc, nu, de, withOpen, w));
      else b.for('f0', `${sl} * ${RS}u`, (f0) => `${f0} < (${sl} + 1u) * ${RS}u`, (m, f0) => emitStateRows(T, m, q, r, f0, col, phi, dacc, nu, de, withOpen), { step: (f0) => `${f0} += ${r.U}u` });
    });
    l.line(`${part.num.name}[lid] = ${nu};${de ? ` ${part.den!.name}[lid] = ${de};` : ''}`);
    l.line('workgroupBarrier();');
    l.block(`if (${sl} == 0u && ${col} < ${a.NR}u)`, (b) => {
      const add = (arr: string) => [...Array(SL).keys()].map((k) => `${arr}[${k ? `${k * CW}u + ` : ''}lid]`).join(' + ');
      b.line(`${sums.num.name}[${col}] += ${add(part.num.name)};${de ? ` ${sums.den!.name}[${col}] += ${add(part.den!.name)};` : ''}`);
    });
    l.line('workgroupBarrier();');
  }, { step: (c0) => `${c0} += ${CW}u` });
}
