// Phase 2 of a chunk: the score matrices A_g[il, ja] of the output groups that have one, ja over the A halo and
// the chunk, and each tile's share of the row denominators.
//
//   A_g[i, j] = Σ_{prefix t ∈ g} [M_t(i, j)] Σ_f φ_t,i[f] ψ_t,j[f] · decay_{j→i}[f]  +  Σ_{bounded t ∈ g} [M_t(i, j)] s_t(i, j)
//
// Each invocation owns a TI×TJ micro-tile (rows ti + m·NTI, columns tj + n·NTJ, strided so that neighbouring
// invocations read neighbouring ψ), so every φ and ψ it loads from workgroup memory feeds TJ or TI products.
import { maskCondition } from '../common.ts';
import { ExprGen, type Resolver } from '../expr.ts';
import type { Block } from '../wgsl-block.ts';
import { scoresInChunk, type PrefixPlan } from './analysis.ts';
import { phiVec, positions, psiAt, psiVec, stagedResolver, stateArrays, type ChunkKernel } from './declarations.ts';
import { storeQuad } from './row-quads.ts';
import { emitCellDots, type CellDots } from './score-dots.ts';

/** The micro-tile's accumulators: name of a_g at cell (m, n). */
type Cells = (g: number, m: number, n: number) => string;

/** `alongside`: what other invocations emit in the same phase, before its barrier (early-state.ts). */
export function emitScores(K: ChunkKernel, body: Block, alongside?: (b: Block) => void): void {
  const { a } = K;
  if (!a.aGroups.length || a.segmented === 'state') return;
  const { TI, TJ, NTI, NTJ } = a.tile;
  body.strided('x', `${NTI * NTJ}u`, (b, x) => {
    const ti = b.let('ti', `${x} / ${NTJ}u`);
    const tj = b.let('tj', `${x} % ${NTJ}u`);
    const acc = new Map<string, string>();
    for (const g of a.aGroups) for (let m = 0; m < TI; m++) for (let n = 0; n < TJ; n++) acc.set(`${g},${m},${n}`, b.var(`a${g}_${m}_${n}`, '0.0'));
    const cells: Cells = (g, m, n) => acc.get(`${g},${m},${n}`)!;
    for (const g of a.aGroups) {
      for (const t of a.groupTerms[g]) if (t.form.kind === 'prefix' && scoresInChunk(t, a.C)) prefixTile(K, b, a.prefix.find((q) => q.term === t)!, g, cells, ti, tj);
    }
    const dots = emitCellDots(K, b, ti, tj);
    for (let m = 0; m < TI; m++) for (let n = 0; n < TJ; n++) boundedCell(K, b, m, n, cells, ti, tj, dots);
    // row quads: the tile's four rows of its column stored as one vec4 (chunked/row-quads.ts; TI 4, TJ 1, tj < CA)
    if (a.rowQuads) for (const g of a.aGroups) storeQuad(K, b, g, tj, ti, [0, 1, 2, 3].map((m) => cells(g, m, 0)));
    for (const g of a.denGroups) if (K.arrays.denp.has(g)) for (let m = 0; m < TI; m++) partialDenominator(K, b, g, m, cells, ti, tj);
  });
  alongside?.(body);
  body.line('workgroupBarrier();');
}

/** A prefix term's φ_i·ψ_j over the tile (per-feature decay inside the sum, a scalar one outside), masked into a_g. */
function prefixTile(K: ChunkKernel, b: Block, q: PrefixPlan, g: number, cells: Cells, ti: string, tj: string): void {
  const { a } = K;
  const { TI, TJ, NTI, NTJ } = a.tile;
  const { phi, lg } = K.arrays.prefix[q.k];
  b.block('', (t) => {
    t.comment(`term ${q.term.name} (prefix): φ_i·ψ_j over the tile${q.gateWidth ? ', with decay' : ''}`);
    const d = new Map<string, string>();
    for (let m = 0; m < TI; m++) for (let n = 0; n < TJ; n++) d.set(`${m},${n}`, t.var(`d_${m}_${n}`, '0.0'));
    const jl = [...Array(TJ).keys()].map((n) => t.let(`jl_${n}`, `u32(clamp(i32(${tj} + ${n * NTJ}u) - ${a.AH}, 0, ${a.C - 1}))`));
    if (q.vec4) vec4Products(K, t, q, d, jl, ti);
    else t.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
      const p = [...Array(TI).keys()].map((m) => l.let(`p_${m}`, `${phi.name}[(${ti} + ${m * NTI}u) * ${q.F}u + ${f}]`));
      const s = jl.map((j, n) => l.let(`q_${n}`, psiAt(K, q, j, f)));
      for (let m = 0; m < TI; m++) {
        for (let n = 0; n < TJ; n++) {
          const decay = q.gatePerFeature ? ` * exp(${lg!.name}[(${ti} + ${m * NTI}u) * ${q.F}u + ${f}] - ${lg!.name}[${jl[n]} * ${q.F}u + ${f}])` : '';
          const dm = d.get(`${m},${n}`)!;
          l.line(`${dm} = ${dm} + ${p[m]} * ${s[n]}${decay};`);
        }
      }
    });
    for (let m = 0; m < TI; m++) {
      for (let n = 0; n < TJ; n++) {
        t.block('', (c) => {
          const il = c.let('il', `${ti} + ${m * NTI}u`);
          const jj = c.let('jj', `${tj} + ${n * NTJ}u`);
          const ia = c.let('ia', `c0 + ${il}`);
          const jai = c.let('ja_i', `i32(c0) + i32(${jj}) - ${a.AH}`);
          const ja = c.let('ja', `u32(max(${jai}, 0))`);
          const decay = q.gateWidth === 1 ? ` * exp(${lg!.name}[${il}] - ${lg!.name}[${jl[n]}])` : '';
          const am = cells(g, m, n);
          c.block(`if (${il} < n && ${jj} >= ${a.AH}u && ${jj} < ${a.CA}u && ${jai} >= 0 && (${maskCondition(q.term.mask, ia, ja)}))`, (s) => s.line(`${am} = ${am} + ${d.get(`${m},${n}`)}${decay};`));
        });
      }
    }
  });
}

/**
 * The tile's φ_i·ψ_j of a vec4 term (PrefixPlan.vec4), four features a trip: each row's φ one vec4 load (the
 * invocations of a warp share their rows: a broadcast), each key row's ψ four (transposed: neighbouring invocations
 * read neighbouring rows), and a dot product per cell; a per-feature decay multiplies ψ lane by lane.
 */
function vec4Products(K: ChunkKernel, l0: Block, q: PrefixPlan, d: ReadonlyMap<string, string>, jl: readonly string[], ti: string): void {
  const { TI, TJ, NTI } = K.a.tile;
  const lg = K.arrays.prefix[q.k].lg?.name;
  const lanes = (at: (l: number) => string) => `vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')})`;
  // A resident kernel sums each cell's products in up to 4 interleaved chains: its score phase keeps half of a
  // workgroup busy (C² cells, C = 16, of 512 invocations), so each cell's one chain of F/4 dependent dot products
  // (32 at d 128) is its latency — ~15 % of the hand kernel's time on the H200 (call 85: 1.309 ms without scores,
  // 1.542 with). Other kernels keep one chain (untimed beside it).
  const chains = K.a.resident ? [4, 2, 1].find((c) => (q.F / 4) % c === 0)! : 1;
  if (chains > 1) {
    const extra = [...Array(chains - 1).keys()].map((c) => new Map([...d.keys()].map((key) => [key, l0.var(`dc${c + 1}_${key.replace(',', '_')}`, '0.0')])));
    const into = (c: number) => (c ? new Map([...d.keys()].map((key) => [key, extra[c - 1].get(key)!])) : d);
    l0.for('f4b', '0u', (f4b) => `${f4b} < ${q.F / 4}u`, (l, f4b) => {
      for (let c = 0; c < chains; c++) l.block('', (lc) => productsAt(lc, lc.let('f4', `${f4b} + ${c}u`), into(c)));
    }, { step: (f4b) => `${f4b} += ${chains}u` });
    for (const [key, dm] of d) l0.line(`${dm} = ${dm} + ${extra.map((e) => e.get(key)!).join(' + ')};`);
    return;
  }
  l0.for('f4', '0u', (f4) => `${f4} < ${q.F / 4}u`, (l, f4) => productsAt(l, f4, d));

  /** Features 4·f4 … 4·f4 + 3 of every cell, added into `acc`. */
  function productsAt(l: Block, f4: string, acc: ReadonlyMap<string, string>): void {
    const f = l.let('f', `${f4} * 4u`);
    const fl = (k: number) => (k ? `${f} + ${k}u` : f);
    const rows = [...Array(TI).keys()].map((m) => `(${ti} + ${m * NTI}u)`);
    const p = rows.map((row, m) => l.let(`p_${m}`, phiVec(K, q, row, f4)));
    const s = jl.map((j, n) => l.let(`q_${n}`, q.psiVec4 ? psiVec(K, q, j, f4) : lanes((k) => psiAt(K, q, j, fl(k)))));
    for (let m = 0; m < TI; m++) {
      for (let n = 0; n < TJ; n++) {
        const dm = acc.get(`${m},${n}`)!;
        const decayed = q.gatePerFeature ? `${s[n]} * exp(${lanes((k) => `${lg}[${rows[m]} * ${q.F}u + ${fl(k)}]`)} - ${lanes((k) => `${lg}[${jl[n]} * ${q.F}u + ${fl(k)}]`)})` : s[n];
        l.line(`${dm} = ${dm} + dot(${p[m]}, ${decayed});`);
      }
    }
  }
}

/**
 * Cell (m, n): the bounded terms' scores, evaluated from the staged features (their dot products from `dots`,
 * score-dots.ts), then a_g stored into A_g.
 */
function boundedCell(K: ChunkKernel, b: Block, m: number, n: number, cells: Cells, ti: string, tj: string, dots: CellDots): void {
  const { a } = K;
  const { NTI, NTJ } = a.tile;
  b.block('', (c) => {
    const il = c.let('il', `${ti} + ${m * NTI}u`);
    const jj = c.let('jj', `${tj} + ${n * NTJ}u`);
    c.block(`if (${jj} < ${a.CA}u)`, (s) => {
      const ia = s.let('ia', `c0 + ${il}`);
      const jai = s.let('ja_i', `i32(c0) + i32(${jj}) - ${a.AH}`);
      const ja = s.let('ja', `u32(max(${jai}, 0))`);
      const valid = s.let('valid', `${il} < n && ${jai} >= 0`);
      for (const g of a.aGroups) {
        const am = cells(g, m, n);
        for (const t of a.groupTerms[g]) {
          if (!a.L.aTerms.includes(t) || t.form.kind === 'prefix') continue;
          s.block(`if (${valid} && (${maskCondition(t.mask, ia, ja)}))`, (e) => {
            e.comment(`term ${t.name} (${t.form.kind})`);
            const staged = stagedResolver(K, il, `(${jj} + ${a.HALO - a.AH}u)`);
            const resolve: Resolver = (x, idx, where, at) => dots.get(x.id)?.(m, n) ?? staged(x, idx, where, at);
            const gen = new ExprGen(a.p, a.sizes, resolve, positions(K, ia, ja));
            e.line(`${am} = ${am} + ${gen.value(e, t.score, K.head, ja)};`);
          });
        }
        if (!a.rowQuads) s.line(`${K.arrays.A.get(g)!.name}[${il} * ${a.CA}u + ${jj}] = ${am};`);
      }
    });
  });
}

/** This tile's share of row il's denominator: its row sums of A, and φ·z over the features f ≡ tj (mod NTJ). */
function partialDenominator(K: ChunkKernel, b: Block, g: number, m: number, cells: Cells, ti: string, tj: string): void {
  const { a } = K;
  const { TJ, NTI, NTJ } = a.tile;
  b.block('', (c) => {
    const il = c.let('il', `${ti} + ${m * NTI}u`);
    const dp = c.var('dp', [...Array(TJ).keys()].map((n) => cells(g, m, n)).join(' + '));
    for (const t of a.groupTerms[g]) {
      if (t.form.kind !== 'prefix') continue;
      const q = a.prefix.find((x) => x.term === t)!;
      if (q.vec4) {
        // four features a trip, f = 4·f4 for f4 ≡ tj (mod NTJ): φ and z one vec4 load each
        c.for('f4', tj, (f4) => `${f4} < ${q.F / 4}u`, (l, f4) => {
          l.comment(`φ·z for ${t.name}`);
          l.line(`${dp} = ${dp} + dot(${phiVec(K, q, il, f4)}${rowDecay4(K, q, il, `${f4} * 4u`)}, ${stateArrays(K, q).z.name}[${f4}]);`);
        }, { step: (f4) => `${f4} += ${NTJ}u` });
        continue;
      }
      c.for('f', tj, (f) => `${f} < ${q.F}u`, (l, f) => {
        l.comment(`φ·z for ${t.name}`);
        l.line(`${dp} = ${dp} + ${K.arrays.prefix[q.k].phi.name}[${il} * ${q.F}u + ${f}]${rowDecay(K, q, il, f)} * ${stateArrays(K, q).z.name}[${f}];`);
      }, { step: (f) => `${f} += ${NTJ}u` });
    }
    c.line(`${K.arrays.denp.get(g)!.name}[${il} * ${NTJ}u + ${tj}] = ${dp};`);
  });
}

/** rowDecay for the four features f … f + 3 of a vec4 term: a vec4 factor per feature, a scalar one for a scalar gate. */
export function rowDecay4(K: ChunkKernel, q: PrefixPlan, il: string, f: string): string {
  const lg = K.arrays.prefix[q.k].lg?.name;
  if (!q.gatePerFeature) return rowDecay(K, q, il, f);
  return ` * exp(vec4<f32>(${[0, 1, 2, 3].map((k) => `${lg}[${il} * ${q.F}u + ${f} + ${k}u]`).join(', ')}))`;
}

/** ` * exp(Σ log decay from the chunk start to row il)` for feature f, or '' without decay: how S_prev and z reach row il. */
export function rowDecay(K: ChunkKernel, q: PrefixPlan, il: string, f: string): string {
  const lg = K.arrays.prefix[q.k].lg?.name;
  return q.gatePerFeature ? ` * exp(${lg}[${il} * ${q.F}u + ${f}])` : q.gateWidth === 1 ? ` * exp(${lg}[${il}])` : '';
}

