// Phase 4 of a chunk: the outputs of this tile's columns,
//
//   o_i = Σ_g [ Σ_{ja} A_g[i, ja] v_ja + Σ_{prefix k ∈ g} φ_k,i · (decay_i ⊙ S_k) + Σ_{direct t ∈ g} Σ_lag s_t(i, i−lag) v_{i−lag} ] / (den_g,i + eps_g)
//
// (normalised groups divide; a partial kernel writes num and den per group instead). Each invocation owns TM
// rows (ti + m·NTO) of TN value columns (cl + n·R/TN; TN the schedule's `block`, else 1), so each value and state
// element it loads feeds TM rows and each score and φ element TN columns.
import { lagRange } from '../../../src/ir/masks.ts';
import type { OutputItem, Term } from '../../../src/ir/types.ts';
import { count, maskCondition } from '../common.ts';
import { ExprGen, offset, type Index } from '../expr.ts';
import type { Block } from '../wgsl-block.ts';
import { teamSize, type PrefixPlan } from './analysis.ts';
import { elem, phiVec, positions, stagedResolver, stateArrays, valueAt, type ChunkKernel, type KeptBinding } from './declarations.ts';
import { residentDenominators, residentStateTerm } from './resident.ts';
import { rowDecay, rowDecay4 } from './scores.ts';
import { hoistedTaps, type HoistedTaps } from './taps.ts';
import { loadQuad } from './row-quads.ts';
import { blockTile } from './tiles.ts';

/** One output cell of the invocation: row `ti + m·NTO` of its column n, and its accumulators. */
export interface Row {
  readonly m: number;
  readonly at: string;
  readonly col: Column;
  readonly num: string;
  readonly den: string;
}

/** One value column of the invocation: its lane in the tile (`cl`), its index over the column axes, its store guard. */
export interface Column {
  readonly n: number;
  readonly cl: string;
  readonly idx: Index;
  /** `col < NR` for a blocked column (its idx clamped to the last column), null where the caller guards the whole tile. */
  readonly guard: string | null;
}

/** `taps`: the convolution terms whose weights were hoisted before the chunk loop (taps.ts), by name. */
export function emitOutputs(K: ChunkKernel, body: Block, taps: ReadonlyMap<string, HoistedTaps> = new Map()): void {
  const { a } = K;
  if (a.segmented === 'state') return; // a segment-state launch writes no outputs
  // overlapped with the state update (teams.ts), the outputs are the first half's: invocations lid < WG/2
  const team = a.overlap ? { index: 'lid', size: teamSize(a) } : undefined;
  const { TM, TN, NT: NTO, RB } = blockTile(a.C, a.R, teamSize(a), a.spec.schedule.block);
  body.strided('x', `${NTO * RB}u`, (b, x) => {
    const ti = b.let('ti', `${x} / ${RB}u`);
    const cl = b.let('cl', `${x} % ${RB}u`);
    const emit = (c: Block, cols: readonly Column[]) => {
      const o = cols.map((cn) => [...Array(TM).keys()].map((m) => c.var(TN === 1 ? `o_${m}` : `o_${m}_${cn.n}`, '0.0')));
      a.items.forEach((it, g) => outputGroup(K, c, it, g, { ti, cols, o, NTO }, taps));
      if (a.spec.partial) return;
      const store = K.io.store;
      const out = store ? '' : K.kb.use(K.io.out!);
      cols.forEach((cn) =>
        o[cn.n].forEach((om, m) =>
          c.block('', (w) => {
            const ia = w.let('ia', `c0 + ${ti} + ${m * NTO}u`);
            w.block(`if (${ti} + ${m * NTO}u < n${cn.guard ? ` && ${cn.guard}` : ''})`, (s) =>
              store ? store(s, 'o', 0, ia, cn.idx, om) : s.line(`${out}[(b * dims.t + ${ia}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, cn.idx)}] = ${om};`),
            );
          }),
        ),
      );
    };
    if (TN === 1) {
      const col = b.let('col', `tile * ${a.R}u + ${cl}`);
      b.block(`if (${col} < ${a.NR}u)`, (c) => emit(c, [{ n: 0, cl, idx: { ...K.head, ...c.split(a.L.rest, a.sizes, col, 'oc') }, guard: null }]));
      return;
    }
    const cols = [...Array(TN).keys()].map((n): Column => {
      const cln = b.let(`cl_${n}`, `${cl} + ${n * RB}u`);
      const col = b.let(`col_${n}`, `tile * ${a.R}u + ${cln}`);
      const idx = { ...K.head, ...b.split(a.L.rest, a.sizes, `min(${col}, ${a.NR - 1}u)`, `oc${n}`) };
      return { n, cl: cln, idx, guard: `${col} < ${a.NR}u` };
    });
    emit(b, cols);
  }, team);
}

export interface Tile {
  readonly ti: string;
  readonly cols: readonly Column[];
  /** Output accumulators by column, then row. */
  readonly o: readonly (readonly string[])[];
  readonly NTO: number;
}

/** Output group g: its numerators (and denominators) per cell, then its share of o (or its partial outputs). */
function outputGroup(K: ChunkKernel, c: Block, it: OutputItem, g: number, tile: Tile, taps: ReadonlyMap<string, HoistedTaps>): void {
  const { a } = K;
  const { ti, NTO } = tile;
  const normed = it.kind === 'norm' && it.eps >= 0;
  const rowden = K.arrays.rowden.get(g);
  // A resident kernel has no denominator phase (the hand kernel's choice: one barrier fewer a chunk): each output
  // adds its row of A, as it reads it for A·V, to φ·z_prev that the lanes reduced (phiZ, resident.ts).
  // An overlapped kernel with outputDen does the same, adding φ·z_prev as it reads φ for φ·S_prev (stateTerm).
  const inlineDen = (!!a.resident || a.outputDen) && a.denGroups.includes(g);
  const blocked = tile.cols.length > 1;
  c.block('', (gb) => {
    gb.comment(`output group ${g}: ${it.kind === 'norm' ? (normed ? `normalize(${it.terms.join(' + ')})` : it.terms.join(' + ')) : it.term}`);
    // A row's denominator is the same in every column unless a direct term (whose score may vary along the columns)
    // adds to it: blocked columns then share one.
    const direct = a.groupTerms[g].some((t) => t.form.kind !== 'prefix' && !a.L.aTerms.includes(t));
    const rows: Row[] = [];
    /** The rows that own their denominator (blocked columns may share their row's): each adds its row of A once. */
    const ownDen = new Set<Row>();
    for (const col of tile.cols) {
      tile.o[col.n].forEach((_, m) => {
        const num = gb.var(blocked ? `num_${m}_${col.n}` : `num_${m}`, '0.0');
        const shared = blocked && !direct && col.n > 0 ? rows[m].den : null;
        const start = rowden ? `${rowden.name}[${ti} + ${m * NTO}u]` : inlineDen ? residentDenominators(K, g, `${ti} + ${m * NTO}u`).join(' + ') || '0.0' : '0.0';
        const den = shared ?? gb.var(blocked ? `den_${m}_${col.n}` : `den_${m}`, start);
        const row: Row = { m, at: `${ti} + ${m * NTO}u`, col, num, den };
        if (!shared) ownDen.add(row);
        rows.push(row);
      });
    }
    const A = K.arrays.A.get(g);
    if (A) {
      gb.for('jj', '0u', (jj) => `${jj} < ${a.CA}u`, (l, jj) => {
        const vv = tile.cols.map((col) => l.let(blocked ? `vv_${col.n}` : 'vv', valueAt(K, `${jj} + ${a.HALO - a.AH}u`, col.cl)));
        if (a.rowQuads) {
          // the invocation's four rows at key column jj: one vec4 (chunked/row-quads.ts; never with a resident state)
          const quad = loadQuad(K, l, g, jj, ti);
          for (const r of rows) {
            l.line(`${r.num} = ${r.num} + ${quad(r.m)} * ${vv[r.col.n]};`);
            if (inlineDen && ownDen.has(r)) l.line(`${r.den} = ${r.den} + ${quad(r.m)};`);
          }
          return;
        }
        // blocked: each row's A element loaded once for its TN columns
        const arow = blocked ? tile.o[0].map((_, m) => l.let(`av_${m}`, `${A.name}[(${ti} + ${m * NTO}u) * ${a.CA}u + ${jj}]`)) : null;
        for (const r of rows) {
          const at = `${A.name}[(${r.at}) * ${a.CA}u + ${jj}]`;
          const av = arow ? arow[r.m] : inlineDen && ownDen.has(r) ? l.let('av', at) : at;
          l.line(`${r.num} = ${r.num} + ${av} * ${vv[r.col.n]};`);
          if (inlineDen && ownDen.has(r)) l.line(`${r.den} = ${r.den} + ${av};`);
        }
      });
    }
    for (const t of a.groupTerms[g]) {
      if (t.form.kind === 'prefix') stateTerm(K, gb, t, rows, tile, inlineDen && a.outputDen ? ownDen : null);
      else if (!a.L.aTerms.includes(t)) {
        const h = taps.get(t.name);
        for (const r of rows) {
          if (h) hoistedTaps(K, gb, t, h, { at: r.at, n: r.col.n, cl: r.col.cl, num: r.num, den: r.den }, !!rowden || inlineDen);
          else directTaps(K, gb, t, r, !!rowden || inlineDen);
        }
      }
    }
    for (const r of rows) {
      gb.block('', (w) => {
        const il = w.let('il', r.at);
        const ia = w.let('ia', `c0 + ${il}`);
        w.block(`if (${il} < n${r.col.guard ? ` && ${r.col.guard}` : ''})`, (s) => {
          if (a.spec.partial && K.io.store) {
            K.io.store(s, 'num', g, ia, r.col.idx, r.num);
            K.io.store(s, 'den', g, ia, r.col.idx, r.den);
          } else if (a.spec.partial) {
            const off = s.let('o_off', `(b * dims.t + ${ia}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, r.col.idx)}`);
            const part = K.io.parts[g];
            s.line(`${K.kb.use(part.num)}[${off}] = ${r.num};`);
            if (part.den) s.line(`${K.kb.use(part.den)}[${off}] = ${r.den};`);
          } else {
            const om = tile.o[r.col.n][r.m];
            s.line(normed ? `${om} = ${om} + ${r.num} / (${r.den} + ${(it as { eps: number }).eps});` : `${om} = ${om} + ${r.num};`);
            const kept = K.io.kept.get(g);
            if (kept) keepParts(K, s, kept, ia, r.col.idx, r);
          }
        });
      });
    }
  });
}

/** A training forward keeps row ia's numerator (every column) and denominator (once per row of its own axes). */
function keepParts(K: ChunkKernel, s: Block, kept: KeptBinding, ia: string, idx: Index, r: Row): void {
  const { a } = K;
  s.line(`${K.kb.use(kept.num)}[(b * dims.t + ${ia}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, idx)}] = ${r.num};`);
  const once = a.p.outAxes.filter((x) => !kept.denAxes.includes(x)).map((x) => `${idx[x]} == 0u`);
  const den = `${K.kb.use(kept.den)}[(b * dims.t + ${ia}) * ${count(kept.denAxes, a.sizes)}u + ${offset(kept.denAxes, a.sizes, idx)}] = ${r.den};`;
  if (once.length) s.block(`if (${once.join(' && ')})`, (w) => w.line(den));
  else s.line(den);
}

/** φ_k,i · (decay_i ⊙ S_prev) for a prefix term: the chunks before this one. */
/** `den`: the rows that add φ·(decay ⊙ z_prev) to their own denominator here (ChunkAnalysis.outputDen), else null. */
function stateTerm(K: ChunkKernel, gb: Block, t: Term, rows: readonly Row[], tile: Tile, den: ReadonlySet<Row> | null = null): void {
  const q = K.a.prefix.find((x) => x.term === t)!;
  if (K.a.resident) {
    // reduced from the lanes' registers after staging (resident.ts), decayed
    for (const r of rows) gb.line(`${r.num} = ${r.num} + ${residentStateTerm(K, q, r.at, r.col.cl)};`);
    return;
  }
  if (K.a.earlyState) {
    // computed by the fold team in the score phase, the item's four rows one vec4 (early-state.ts); φ·z_prev is where
    // the row's denominator starts (residentDenominators)
    const ps = gb.let('ps', `${K.arrays.prefix[q.k].phiS!.name}[${earlyItem(K, tile.ti, tile.cols[0].cl)}]`);
    for (const r of rows) gb.line(`${r.num} = ${r.num} + ${ps}.${'xyzw'[r.m]};`);
    return;
  }
  stateProducts(K, gb, q, rows, tile, den);
}

/** The output item (its four rows' tile row `ti`, its column lane `cl`) whose φ·S_prev phiS holds, as the output team numbers them. */
export function earlyItem(K: ChunkKernel, ti: string, cl: string): string {
  const { RB } = blockTile(K.a.C, K.a.R, teamSize(K.a), K.a.spec.schedule.block);
  return `${ti} * ${RB}u + ${cl}`;
}

/**
 * The products of stateTerm from S and z in workgroup memory: each row's φ·(decay ⊙ S_prev) into its num, and for
 * the rows in `den` φ·(decay ⊙ z_prev) into its den. Also the fold team's, in the score phase (early-state.ts).
 */
export function stateProducts(K: ChunkKernel, gb: Block, q: PrefixPlan, rows: readonly Row[], tile: Tile, den: ReadonlySet<Row> | null): void {
  const t = q.term;
  const { S, phi, z } = stateArrays(K, q);
  const blocked = tile.cols.length > 1;
  if (q.vec4) {
    // four features a trip: each row's φ one vec4 load (shared by the warp's columns: a broadcast), S four
    gb.for('f4', '0u', (f4) => `${f4} < ${q.F / 4}u`, (l, f4) => {
      l.comment(`φ·S_prev for ${t.name}, four features a trip`);
      const f = l.let('f', `${f4} * 4u`);
      const sv = tile.cols.map((col) => l.let(blocked ? `sv_${col.n}` : 'sv', `vec4<f32>(${[0, 1, 2, 3].map((k) => `${S.name}[(${f} + ${k}u) * ${K.a.R}u + ${col.cl}]`).join(', ')})`));
      const prow = tile.o[0].map((_, m) => {
        const il = `(${tile.ti} + ${m * tile.NTO}u)`;
        return l.let(`pv_${m}`, `${phiVec(K, q, il, f4)}${rowDecay4(K, q, il, f)}`);
      });
      for (const r of rows) l.line(`${r.num} = ${r.num} + dot(${prow[r.m]}, ${sv[r.col.n]});`);
      if (den) {
        const zv = l.let('zv', `${z.name}[${f4}]`);
        for (const r of rows) if (den.has(r)) l.line(`${r.den} = ${r.den} + dot(${prow[r.m]}, ${zv});`);
      }
    });
    return;
  }
  gb.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
    l.comment(`φ·S_prev for ${t.name}`);
    const sv = tile.cols.map((col) => l.let(blocked ? `sv_${col.n}` : 'sv', `${S.name}[${f} * ${K.a.R}u + ${col.cl}]`));
    // blocked: each row's decayed φ loaded once for its TN columns
    const prow = blocked ? tile.o[0].map((_, m) => l.let(`pv_${m}`, `${phi.name}[(${tile.ti} + ${m * tile.NTO}u) * ${q.F}u + ${f}]${rowDecay(K, q, `(${tile.ti} + ${m * tile.NTO}u)`, f)}`)) : null;
    const zs = den ? l.let('zs', elem(z, f)) : null;
    for (const r of rows) {
      const il = `(${r.at})`;
      const pv = prow ? prow[r.m] : `${phi.name}[${il} * ${q.F}u + ${f}]${rowDecay(K, q, il, f)}`;
      l.line(`${r.num} = ${r.num} + ${pv} * ${sv[r.col.n]};`);
      if (zs && den!.has(r)) l.line(`${r.den} = ${r.den} + ${pv} * ${zs};`);
    }
  });
}

/** A term outside the score matrices (a convolution): Σ_lag s(i, i−lag) v_{i−lag}, reaching into the halo. */
function directTaps(K: ChunkKernel, gb: Block, t: Term, r: Row, withDen: boolean): void {
  const { a } = K;
  const [lo, hi] = lagRange(t.mask)!;
  gb.block('', (w) => {
    const il = w.let('il', r.at);
    const ia = w.let('ia', `c0 + ${il}`);
    w.for('lag', `${lo}`, (lag) => `${lag} <= ${hi}`, (l, lag) => {
      l.comment(`direct taps of ${t.name}`);
      const jai = l.let('ja_i', `i32(${ia}) - ${lag}`);
      l.line(`if (${il} >= n || ${jai} < 0 || ${jai} >= i32(dims.t)) { continue; }`);
      const ja = l.let('ja', `u32(${jai})`);
      l.line(`if (!(${maskCondition(t.mask, ia, ja)})) { continue; }`);
      const jj = l.let('jj', `u32(i32(${il}) - ${lag} + ${a.HALO})`);
      const sv = new ExprGen(a.p, a.sizes, stagedResolver(K, il, jj), positions(K, ia, ja)).value(l, t.score, r.col.idx, ja);
      l.line(`${r.num} = ${r.num} + ${sv} * ${valueAt(K, jj, r.col.cl)};`);
      if (withDen) l.line(`${r.den} = ${r.den} + ${sv};`);
    }, { type: 'i32' });
  });
}
