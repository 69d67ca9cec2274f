// The feature-tiled term kernel: a plain causal prefix term whose feature axis is too wide for one workgroup's
// state (based's Taylor map, 1 + d + d² = 4161 features at d 64: S[f, e] alone is 1 MB) runs over tiles of
// FT features. Everything the chunk recurrence computes is a sum over features f, so it splits exactly:
//   n_i = Σ_{j≤i} (Σ_f φ_i[f] ψ_j[f]) v_j = Σ_tiles [ Σ_{j in chunk, j≤i} s_tile(i,j) v_j + φ_i[tile] · S_tile ]
//   z_i = Σ_tiles [ Σ_{j in chunk, j≤i} s_tile(i,j) + φ_i[tile] · z_tile ]
// One workgroup per (b, head slice, column tile, feature tile) runs the recurrence for its tile, computing φ and
// ψ for its features inline (nothing [b, t, f] is materialised), and writes partial n and z per tile; a second
// launch sums the tiles in a fixed order (no atomics: runs repeat bit for bit) into the [b, t, out] numerator and
// denominator that the unfused plan's combine kernel divides. lower.ts runs it for the unfused plan's terms
// that `tileable` admits when given a feature tile (plan-choice.ts asks for one when nothing else fits); the fused
// plan over feature tiles (feature-tiled-plan.ts, the default there) reads the per-tile partials itself. The tile
// kernel is the register-blocked one (feature-tiled-blocked.ts) unless the schedule says otherwise; the plain
// kernel below, one output an invocation, stays for comparison (bench/based-tiled.ts times both).
import type { Program, Term } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { blockedSharedFloats, blockedTileKernel } from './feature-tiled-blocked.ts';
import { tiledShape, tileWorkgroup, type FeatureTiledSchedule } from './feature-tile-shape.ts';

export { tileable, tiledShape, type FeatureTiledSchedule } from './feature-tile-shape.ts';
import { flatIndex, KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel, type PlanBuffer } from './plan.ts';

/** Workgroup memory of the tiled kernel (4-byte elements): φ and ψ tiles [C, FT], v [C, R], scores [C, C], S [FT, R], z [FT]. */
export function tiledSharedFloats(s: FeatureTiledSchedule, featureCount: number, valueCols: number): number {
  const FT = Math.min(s.featureTile, featureCount);
  const R = Math.min(s.cols, valueCols);
  return 2 * s.chunk * FT + s.chunk * R + s.chunk * s.chunk + FT * R + FT;
}

/** Workgroup memory of the tiled kernel of term t. */
export function tiledTermFloats(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule): number {
  const a = tiledShape(p, sizes, t, s);
  return s.blocked ? blockedSharedFloats(s, a.F, a.NR) : tiledSharedFloats(s, a.F, a.NR);
}

/** Term t's per-tile kernel and its partial buffers [tile, b, t, out] and [tile, b, t, head] (the tile sums read them). */
export function featureTiles(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule, label: string) {
  const a = tiledShape(p, sizes, t, s);
  const per = count(p.outAxes, sizes);
  const tileNum = `${label}:tiles:num`;
  const tileDen = `${label}:tiles:den`;
  const buffers: PlanBuffer[] = [
    { name: tileNum, role: 'scratch', floats: (b, T) => a.NFT * b * T * per, shape: (b, T) => [a.NFT, b, T, per] },
    { name: tileDen, role: 'scratch', floats: (b, T) => a.NFT * b * T * a.NH, shape: (b, T) => [a.NFT, b, T, a.NH] },
  ];
  return { kernel: (s.blocked ? blockedTileKernel : tileKernel)(p, sizes, t, s, label, tileNum, tileDen), buffers, tileNum, tileDen, shape: a };
}

/**
 * Term t tiled over its features: the per-tile kernel, the tile sum, and their buffers. `num` and `den` name the
 * [b, t, out] buffers the sum writes (the unfused plan's partial numerator and denominator of t's output item).
 */
export function featureTiledTerm(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule, label: string, num: string, den: string): { kernels: Kernel[]; buffers: PlanBuffer[] } {
  const x = featureTiles(p, sizes, t, s, label);
  return { kernels: [x.kernel, tileSumKernel(p, sizes, x.shape, `${label}.tile-sum`, x.tileNum, x.tileDen, num, den)], buffers: x.buffers };
}


/**
 * Per (b, head slice hs, column tile rt, feature tile ft), for each chunk of C positions c0…c0+n−1:
 *   A[i, j] = Σ_{f in ft} φ_i[f] ψ_j[f] (j ≤ i),  n_i = Σ_j A[i, j] v_j + φ_i[ft] S,  z_i = Σ_j A[i, j] + φ_i[ft] · z,
 * written to tile ft's slice of the partial buffers, then S += ψ[ft]ᵀ v, z += Σ_j ψ_j[ft].
 */
function tileKernel(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule, label: string, numBuf: string, denBuf: string): Kernel {
  const a = tiledShape(p, sizes, t, s);
  const { C, FT, R } = a;
  const kb = new KernelBuilder(s.threads, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const gen = new ExprGen(p, sizes, read, { i: 'pos', j: 'pos' });
  const Q = kb.workgroup('phi', C * FT, 'φ(q) of the chunk, this tile of features [C, FT]').name;
  const K = kb.workgroup('psi', C * FT, 'ψ(k) of the chunk, this tile of features [C, FT]').name;
  const V = kb.workgroup('vals', C * R, 'v of the chunk, this column tile [C, R]').name;
  const A = kb.workgroup('scores', C * C, 'partial scores over this tile [C, C]').name;
  const S = kb.workgroup('state', FT * R, 'S over this tile [FT, R]').name;
  const Z = kb.workgroup('zsum', FT, 'z over this tile [FT]').name;
  const { num, den, main, ft, rt, hs, hIdx } = tileWorkgroup(kb, sizes, a, numBuf, denBuf);
  const barrier = 'workgroupBarrier();';
  main.strided('k', `${FT * R}u`, (b, k) => b.line(`${S}[${k}] = 0.0;`));
  main.strided('k', `${FT}u`, (b, k) => b.line(`${Z}[${k}] = 0.0;`));
  main.line(barrier);
  main.for('c0', '0u', (c0) => `${c0} < dims.t`, (ch, c0) => {
    const n = ch.let('n', `min(${C}u, dims.t - ${c0})`);
    ch.comment('1: stage φ and ψ of this tile (zero past the sequence and past the last feature), and v');
    ch.strided('k', `${C * FT}u`, (b, k) => {
      const row = b.let('row', `${k} / ${FT}u`);
      const f = b.let('f', `${ft} * ${FT}u + ${k} % ${FT}u`);
      const qv = b.var('qf', '0.0');
      const kv = b.var('kf', '0.0');
      b.block(`if (${row} < ${n} && ${f} < ${a.F}u)`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`); // the name ExprGen reads at.i / at.j at
        const idx = { ...hIdx, [a.feature]: f };
        x.line(`${qv} = ${gen.value(x, a.form.phi, idx, pos)};`);
        x.line(`${kv} = ${gen.value(x, a.form.psi, idx, pos)};`);
      });
      b.line(`${Q}[${k}] = ${qv};`);
      b.line(`${K}[${k}] = ${kv};`);
    });
    ch.strided('k', `${C * R}u`, (b, k) => {
      const row = b.let('row', `${k} / ${R}u`);
      const col = b.let('col', `${rt} * ${R}u + ${k} % ${R}u`);
      const vv = b.var('vf', '0.0');
      b.block(`if (${row} < ${n} && ${col} < ${a.NR}u)`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`); // the name ExprGen reads at.i / at.j at
        x.line(`${vv} = ${gen.value(x, t.value, { ...hIdx, ...x.split(a.rest, sizes, col, 'cx') }, pos)};`);
      });
      b.line(`${V}[${k}] = ${vv};`);
    });
    ch.line(barrier);
    ch.comment('2: partial scores over this tile, causal within the chunk');
    ch.strided('k', `${C * C}u`, (b, k) => {
      const i = b.let('i', `${k} / ${C}u`);
      const j = b.let('j', `${k} % ${C}u`);
      const acc = b.var('acc', '0.0');
      b.block(`if (${j} <= ${i})`, (x) => x.for('l', '0u', (l) => `${l} < ${FT}u`, (y, l) => y.line(`${acc} += ${Q}[${i} * ${FT}u + ${l}] * ${K}[${j} * ${FT}u + ${l}];`)));
      b.line(`${A}[${k}] = ${acc};`);
    });
    ch.line(barrier);
    ch.comment('3: partial numerators (this column tile) and, from the first column tile, partial denominators');
    ch.strided('k', `${C * R}u`, (b, k) => {
      const i = b.let('i', `${k} / ${R}u`);
      const cl = b.let('cl', `${k} % ${R}u`);
      const col = b.let('col', `${rt} * ${R}u + ${cl}`);
      b.block(`if (${i} < ${n} && ${col} < ${a.NR}u)`, (x) => {
        const acc = x.var('acc', '0.0');
        x.for('j', '0u', (j) => `${j} <= ${i}`, (y, j) => y.line(`${acc} += ${A}[${i} * ${C}u + ${j}] * ${V}[${j} * ${R}u + ${cl}];`));
        x.for('l', '0u', (l) => `${l} < ${FT}u`, (y, l) => y.line(`${acc} += ${Q}[${i} * ${FT}u + ${l}] * ${S}[${l} * ${R}u + ${cl}];`));
        const row = `(${ft} * dims.b + b) * dims.t + ${c0} + ${i}`;
        x.line(`${num}[${offset(p.outAxes, sizes, { ...hIdx, ...x.split(a.rest, sizes, col, 'cx') }, row)}] = ${acc};`);
      });
    });
    ch.block(`if (${rt} == 0u)`, (r) =>
      r.strided('k', `${C}u`, (b, i) => {
        b.block(`if (${i} < ${n})`, (x) => {
          const acc = x.var('acc', '0.0');
          x.for('j', '0u', (j) => `${j} <= ${i}`, (y, j) => y.line(`${acc} += ${A}[${i} * ${C}u + ${j}];`));
          x.for('l', '0u', (l) => `${l} < ${FT}u`, (y, l) => y.line(`${acc} += ${Q}[${i} * ${FT}u + ${l}] * ${Z}[${l}];`));
          x.line(`${den}[((${ft} * dims.b + b) * dims.t + ${c0} + ${i}) * ${a.NH}u + ${hs}] = ${acc};`);
        });
      }),
    );
    ch.line(barrier);
    ch.comment('4: fold the chunk into S and z (rows past the sequence were staged as zeros)');
    ch.strided('k', `${FT * R}u`, (b, k) => {
      const l = b.let('l', `${k} / ${R}u`);
      const cl = b.let('cl', `${k} % ${R}u`);
      const acc = b.var('acc', `${S}[${k}]`);
      b.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${K}[${j} * ${FT}u + ${l}] * ${V}[${j} * ${R}u + ${cl}];`));
      b.line(`${S}[${k}] = ${acc};`);
    });
    ch.strided('k', `${FT}u`, (b, l) => {
      const acc = b.var('acc', `${Z}[${l}]`);
      b.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${K}[${j} * ${FT}u + ${l}];`));
      b.line(`${Z}[${l}] = ${acc};`);
    });
    ch.line(barrier);
  }, { step: (c0) => `${c0} += ${C}u` });
  const x = a.NH * a.RT * a.NFT;
  return kb.build({
    label,
    comment: [`${p.name}: term ${t.name} over tiles of ${FT} of its ${a.F} features (${a.NFT} tiles), chunk ${C}, ${R} of ${a.NR} value columns per workgroup`, 'partial numerators [tile, b, t, out] and denominators [tile, b, t, head]; the tile sum adds them'],
    workgroups: (b) => [x, b, 1],
    launch: { kind: 'fixed', x, perBatchY: true },
  });
}

/** num[b, t, out] = Σ_tiles (in order) tileNum[tile, b, t, out]; den likewise from tileDen[tile, b, t, head]. */
function tileSumKernel(p: Program, sizes: Sizes, a: ReturnType<typeof tiledShape>, label: string, tileNum: string, tileDen: string, numBuf: string, denBuf: string): Kernel {
  const WG = 64;
  const per = count(p.outAxes, sizes);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const tn = kb.use(kb.storage(tileNum, false, { always: true }));
  const td = kb.use(kb.storage(tileDen, false, { always: true }));
  const num = kb.use(kb.storage(numBuf, true, { always: true }));
  const den = kb.use(kb.storage(denBuf, true, { always: true }));
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${per}u) { return; }`);
  const row = main.let('row', `${flat} / ${per}u`);
  const idx = main.split(p.outAxes, sizes, `${flat} % ${per}u`, 'ox');
  const h = main.let('hoff', offset(a.head, sizes, idx));
  const sn = main.var('sn', '0.0');
  const sd = main.var('sd', '0.0');
  main.for('ft', '0u', (ft) => `${ft} < ${a.NFT}u`, (b, ft) => {
    b.line(`${sn} += ${tn}[${ft} * dims.b * dims.t * ${per}u + ${flat}];`);
    b.line(`${sd} += ${td}[(${ft} * dims.b * dims.t + ${row}) * ${a.NH}u + ${h}];`);
  });
  main.line(`${num}[${flat}] = ${sn};`);
  main.line(`${den}[${flat}] = ${sd};`);
  return kb.build({ label, comment: [`${p.name}: sum the ${a.NFT} feature tiles' partial numerators and denominators, in order`], workgroups: (b, t) => grid(b * t * per, WG), launch: { kind: 'grid', perToken: per, size: WG } });
}
