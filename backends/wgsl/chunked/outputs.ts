// Phase 4 of a chunk: the outputs of this tile's columns,
//
//   o_i = Σ_g [ Σ_{ja} A_g[i, ja] v_ja + Σ_{prefix k ∈ g} φ_k,i · (decay_i ⊙ S_k) + Σ_{direct t ∈ g} Σ_lag s_t(i, i−lag) v_{i−lag} ] / (den_g,i + eps_g)
//
// (normalised groups divide; a partial kernel writes num and den per group instead). Each invocation owns TM
// rows (ti + m·NTO) of one value column, so each value and state element it loads feeds TM rows.
import { lagRange } from '../../../src/ir/masks.ts';
import type { OutputItem, Term } from '../../../src/ir/types.ts';
import { count, maskCondition } from '../common.ts';
import { ExprGen, offset, type Index } from '../expr.ts';
import type { Block } from '../wgsl-block.ts';
import { positions, stagedResolver, type ChunkKernel, type KeptBinding } from './declarations.ts';
import { rowDecay } from './scores.ts';
import { microTile } from './tiles.ts';

/** One output row of the invocation: its row expression `ti + m·NTO` and its accumulators. */
interface Row {
  readonly m: number;
  readonly at: string;
  readonly num: string;
  readonly den: string;
}

export function emitOutputs(K: ChunkKernel, body: Block): void {
  const { a } = K;
  if (a.segmented === 'state') return; // a segment-state launch writes no outputs
  const TM = microTile(a.C, a.R, a.WG);
  const NTO = a.C / TM;
  body.strided('x', `${NTO * a.R}u`, (b, x) => {
    const ti = b.let('ti', `${x} / ${a.R}u`);
    const cl = b.let('cl', `${x} % ${a.R}u`);
    const col = b.let('col', `tile * ${a.R}u + ${cl}`);
    b.block(`if (${col} < ${a.NR}u)`, (c) => {
      const idx: Index = { ...K.head, ...c.split(a.L.rest, a.sizes, col, 'oc') };
      const o = [...Array(TM).keys()].map((m) => c.var(`o_${m}`, '0.0'));
      a.items.forEach((it, g) => outputGroup(K, c, it, g, { ti, cl, idx, o, NTO }));
      if (a.spec.partial) return;
      const store = K.io.store;
      const out = store ? '' : K.kb.use(K.io.out!);
      o.forEach((om, m) =>
        c.block('', (w) => {
          const ia = w.let('ia', `c0 + ${ti} + ${m * NTO}u`);
          w.block(`if (${ti} + ${m * NTO}u < n)`, (s) =>
            store ? store(s, 'o', 0, ia, idx, om) : s.line(`${out}[(b * dims.t + ${ia}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, idx)}] = ${om};`),
          );
        }),
      );
    });
  });
}

interface Tile {
  readonly ti: string;
  readonly cl: string;
  readonly idx: Index;
  readonly o: readonly string[];
  readonly NTO: number;
}

/** Output group g: its numerators (and denominators) per row, then its share of o (or its partial outputs). */
function outputGroup(K: ChunkKernel, c: Block, it: OutputItem, g: number, tile: Tile): void {
  const { a } = K;
  const { ti, NTO } = tile;
  const normed = it.kind === 'norm' && it.eps >= 0;
  const rowden = K.arrays.rowden.get(g);
  c.block('', (gb) => {
    gb.comment(`output group ${g}: ${it.kind === 'norm' ? (normed ? `normalize(${it.terms.join(' + ')})` : it.terms.join(' + ')) : it.term}`);
    const rows: Row[] = tile.o.map((_, m) => ({
      m,
      at: `${ti} + ${m * NTO}u`,
      num: gb.var(`num_${m}`, '0.0'),
      den: gb.var(`den_${m}`, rowden ? `${rowden.name}[${ti} + ${m * NTO}u]` : '0.0'),
    }));
    const A = K.arrays.A.get(g);
    if (A) {
      gb.for('jj', '0u', (jj) => `${jj} < ${a.CA}u`, (l, jj) => {
        const vv = l.let('vv', `${K.arrays.vs.name}[(${jj} + ${a.HALO - a.AH}u) * ${a.R}u + ${tile.cl}]`);
        for (const r of rows) l.line(`${r.num} = ${r.num} + ${A.name}[(${r.at}) * ${a.CA}u + ${jj}] * ${vv};`);
      });
    }
    for (const t of a.groupTerms[g]) {
      if (t.form.kind === 'prefix') stateTerm(K, gb, t, rows, tile);
      else if (!a.L.aTerms.includes(t)) for (const r of rows) directTaps(K, gb, t, r, tile, !!rowden);
    }
    for (const r of rows) {
      gb.block('', (w) => {
        const il = w.let('il', r.at);
        const ia = w.let('ia', `c0 + ${il}`);
        w.block(`if (${il} < n)`, (s) => {
          if (a.spec.partial && K.io.store) {
            K.io.store(s, 'num', g, ia, tile.idx, r.num);
            K.io.store(s, 'den', g, ia, tile.idx, r.den);
          } else if (a.spec.partial) {
            const off = s.let('o_off', `(b * dims.t + ${ia}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, tile.idx)}`);
            const part = K.io.parts[g];
            s.line(`${K.kb.use(part.num)}[${off}] = ${r.num};`);
            s.line(`${K.kb.use(part.den)}[${off}] = ${r.den};`);
          } else {
            const om = tile.o[r.m];
            s.line(normed ? `${om} = ${om} + ${r.num} / (${r.den} + ${(it as { eps: number }).eps});` : `${om} = ${om} + ${r.num};`);
            const kept = K.io.kept.get(g);
            if (kept) keepParts(K, s, kept, ia, tile.idx, r);
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
function stateTerm(K: ChunkKernel, gb: Block, t: Term, rows: readonly Row[], tile: Tile): void {
  const q = K.a.prefix.find((x) => x.term === t)!;
  const { S, phi } = K.arrays.prefix[q.k];
  gb.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
    l.comment(`φ·S_prev for ${t.name}`);
    const sv = l.let('sv', `${S.name}[${f} * ${K.a.R}u + ${tile.cl}]`);
    for (const r of rows) {
      const il = `(${r.at})`;
      l.line(`${r.num} = ${r.num} + ${phi.name}[${il} * ${q.F}u + ${f}]${rowDecay(K, q, il, f)} * ${sv};`);
    }
  });
}

/** A term outside the score matrices (a convolution): Σ_lag s(i, i−lag) v_{i−lag}, reaching into the halo. */
function directTaps(K: ChunkKernel, gb: Block, t: Term, r: Row, tile: Tile, withDen: boolean): void {
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
      const sv = new ExprGen(a.p, a.sizes, stagedResolver(K, il, jj), positions(K, ia, ja)).value(l, t.score, tile.idx, ja);
      l.line(`${r.num} = ${r.num} + ${sv} * ${K.arrays.vs.name}[${jj} * ${a.R}u + ${tile.cl}];`);
      if (withDen) l.line(`${r.den} = ${r.den} + ${sv};`);
    }, { type: 'i32' });
  });
}
