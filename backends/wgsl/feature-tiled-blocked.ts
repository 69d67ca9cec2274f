// The feature-tiled term kernel with register blocking (the same sums as feature-tiled.ts's plain kernel, which
// stays for comparison). Why the plain kernel ran based at 130 ms on the H200 (B 4, H 16, T 4096, D 64, chunk 16,
// 32 columns, 128 features a tile): every FMA of its three matmuls — the tile's partial scores, the numerators
// A·V + Φ·S and the fold S += Ψᵀ·V — reads both operands from workgroup memory, one output per invocation, so it
// is bound by the workgroup-memory port (one 32-lane load a cycle per SM against four 32-lane FMAs), at roughly a
// quarter of the FMA rate; the partial scores are computed again by each column tile; and the scores read ψ rows
// FT apart, a multiple of 32 banks, so 16 invocations of a warp hit one bank.
// Here φ, ψ, v, S and z sit in workgroup memory as vec4s and each invocation owns a micro-tile: MC4 vec4 columns
// (interleaved, tc, tc + TC, …: a warp's loads of one row are consecutive) × MI chunk rows of the numerators, and
// × ML4 quads of features of S, whose micro-tile lives in registers across the whole sequence (workgroup memory
// holds a copy for the numerators). Per 4 features the numerators load MI φ quads and 4·MC4 S rows for 16·MI·MC4
// FMAs; per chunk row the fold loads ML4 ψ quads and MC4 v vec4s for 16·ML4·MC4; the scores (2 × 2 an invocation
// at chunk 32) are dot()s of vec4s. Counting warp-wide load cycles at 128 bytes a cycle (a vec4 row of 16 column
// groups: 2; a broadcast: 1), chunk 32 × 64 columns × 64 features × 256 threads issues about 10 load cycles per 8
// FMA cycles in the numerators and 3 per 4 in the fold (the plain kernel: 2 loads per FMA everywhere, and 16-way
// bank conflicts in its scores), so expect based at B 4, H 16, T 4096 near 15–25 ms rather than 130.
// φ and ψ rows are an odd number of vec4s apart (no bank conflicts in the scores). The denominators are split over
// P invocations a row and summed after the next barrier in a fixed order; a schedule with every value column in
// one workgroup computes the partial scores and φ, ψ once.
import type { Program, Term } from '../../src/ir/types.ts';
import { programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { tiledShape, tileWorkgroup, type FeatureTiledSchedule } from './feature-tile-shape.ts';
import { KernelBuilder } from './kernel-builder.ts';
import type { Kernel } from './plan.ts';

/** How the blocked kernel splits its invocations: TC column groups × TR row groups, and each one's micro-tiles. */
export function blockedSplit(s: FeatureTiledSchedule, featureCount: number, valueCols: number) {
  const C = s.chunk;
  const FT = Math.min(s.featureTile, featureCount);
  const R = Math.min(s.cols, valueCols);
  const FT4 = Math.ceil(FT / 4); // features in vec4s
  const R4 = Math.ceil(R / 4); // value columns in vec4s
  const pow2 = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));
  const TC = pow2(Math.min(16, R4, s.threads));
  const TR = s.threads / TC;
  if (!Number.isInteger(TR)) throw new Error(`internal: ${s.threads} threads do not split into ${TC} column groups`);
  const TJ = pow2(Math.min(16, C, s.threads)); // the scores' key columns
  return {
    C, FT, R, FT4, R4, TC, TR, TJ,
    MC4: Math.ceil(R4 / TC), // vec4 columns an invocation
    MI: Math.ceil(C / TR), // numerator rows an invocation
    ML4: Math.ceil(FT4 / TR), // feature quads of S an invocation
    SI: Math.ceil(C / (s.threads / TJ)),
    SJ: Math.ceil(C / TJ),
    P: Math.max(1, Math.floor(s.threads / C)), // invocations a denominator row
    FS4: FT4 % 2 ? FT4 : FT4 + 1, // φ, ψ row stride in vec4s, odd: a quarter warp reading 8 rows hits 8 distinct bank quads
  };
}

/** Workgroup memory (4-byte elements): φ, ψ [C, FS4] vec4, v [C, R4] vec4, S [4·FT4, R4] vec4, z [FT4] vec4, scores [C, C], denominator parts [C, P]. */
export function blockedSharedFloats(s: FeatureTiledSchedule, featureCount: number, valueCols: number): number {
  const { C, FT4, R4, P, FS4 } = blockedSplit(s, featureCount, valueCols);
  return 4 * (2 * C * FS4 + C * R4 + 4 * FT4 * R4 + FT4) + C * C + C * P;
}

/**
 * Per (b, head slice hs, column tile rt, feature tile ft), for each chunk of C positions c0…c0+n−1:
 *   A[i, j] = Σ_{f in ft} φ_i[f] ψ_j[f] (j ≤ i),  n_i = Σ_j A[i, j] v_j + φ_i[ft] S,  z_i = Σ_j A[i, j] + φ_i[ft] · z,
 * written to tile ft's slice of the partial buffers, then S += ψ[ft]ᵀ v, z += Σ_j ψ_j[ft].
 */
export function blockedTileKernel(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule, label: string, numBuf: string, denBuf: string): Kernel {
  const a = tiledShape(p, sizes, t, s);
  const { C, FT, R, FT4, R4, TC, TR, TJ, MC4, MI, ML4, SI, SJ, P, FS4 } = blockedSplit(s, a.F, a.NR);
  const kb = new KernelBuilder(s.threads, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const gen = new ExprGen(p, sizes, read, { i: 'pos', j: 'pos' });
  const v4 = 'vec4<f32>' as const;
  const Q = kb.workgroup('phi', C * FS4, 'φ(q) of the chunk, this tile of features [C, FS4] in vec4s', v4).name;
  const K = kb.workgroup('psi', C * FS4, 'ψ(k) of the chunk, this tile of features [C, FS4] in vec4s', v4).name;
  const V = kb.workgroup('vals', C * R4, 'v of the chunk, this column tile [C, R4] in vec4s', v4).name;
  const S = kb.workgroup('state', 4 * FT4 * R4, 'S over this tile [4·FT4, R4] in vec4s (a copy of the registers)', v4).name;
  const Z = kb.workgroup('zsum', FT4, 'z over this tile [FT4] in vec4s', v4).name;
  const A = kb.workgroup('scores', C * C, 'partial scores over this tile [C, C], zero above the diagonal').name;
  const D = kb.workgroup('denparts', C * P, `partial denominators [C, ${P}]`).name;
  const { num, den, main, ft, rt, hs, hIdx } = tileWorkgroup(kb, sizes, a, numBuf, denBuf);
  const barrier = 'workgroupBarrier();';
  const tc = main.let('tc', `lid % ${TC}u`);
  const tr = main.let('tr', `lid / ${TC}u`);
  const range = (n: number) => [...Array(n).keys()];
  const XYZW = ['x', 'y', 'z', 'w'];
  // this invocation's vec4 columns and feature quads (clamped for reading: a padded one repeats the last, never written)
  const cols = range(MC4).map((m) => main.let(`g${m}`, `${tc} + ${m * TC}u`));
  const colr = cols.map((c, m) => main.let(`gr${m}`, `min(${c}, ${R4 - 1}u)`));
  const quads = range(ML4).map((m) => main.let(`lq${m}`, `${tr} + ${m * TR}u`));
  const quadr = quads.map((l, m) => main.let(`lqr${m}`, `min(${l}, ${FT4 - 1}u)`));
  const st = range(ML4).map((x) => range(4).map((c) => range(MC4).map((m) => main.var(`s${x}${XYZW[c]}_${m}`, `${v4}()`, v4))));
  main.strided('k', `${4 * FT4 * R4}u`, (b, k) => b.line(`${S}[${k}] = ${v4}();`));
  main.strided('k', `${FT4}u`, (b, k) => b.line(`${Z}[${k}] = ${v4}();`));
  main.line(barrier);
  main.for('c0', '0u', (c0) => `${c0} < dims.t`, (ch, c0) => {
    const n = ch.let('n', `min(${C}u, dims.t - ${c0})`);
    // An invocation stages whole vec4s (four features, or four columns): no two invocations write parts of one vec4.
    ch.comment('1: stage φ and ψ of this tile (zero past the sequence, the tile and the last feature), and v, a vec4 an invocation');
    ch.strided('k', `${C * FT4}u`, (b, k) => {
      const row = b.let('row', `${k} / ${FT4}u`);
      const quad = b.let('quad', `${k} % ${FT4}u`);
      const qv = b.var('qf', `${v4}()`, v4);
      const kv = b.var('kf', `${v4}()`, v4);
      b.block(`if (${row} < ${n})`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`); // the name ExprGen reads at.i / at.j at
        range(4).forEach((e) => {
          const fl = x.let(`fl${e}`, `${quad} * 4u + ${e}u`);
          const f = x.let(`f${e}`, `${ft} * ${FT}u + ${fl}`);
          x.block(`if (${fl} < ${FT}u && ${f} < ${a.F}u)`, (y) => {
            const idx = { ...hIdx, [a.feature]: f };
            y.line(`${qv}.${XYZW[e]} = ${gen.value(y, a.form.phi, idx, pos)};`);
            y.line(`${kv}.${XYZW[e]} = ${gen.value(y, a.form.psi, idx, pos)};`);
          });
        });
      });
      b.line(`${Q}[${row} * ${FS4}u + ${quad}] = ${qv};`);
      b.line(`${K}[${row} * ${FS4}u + ${quad}] = ${kv};`);
    });
    ch.strided('k', `${C * R4}u`, (b, k) => {
      const row = b.let('row', `${k} / ${R4}u`);
      const quad = b.let('quad', `${k} % ${R4}u`);
      const vv = b.var('vf', `${v4}()`, v4);
      b.block(`if (${row} < ${n})`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`);
        range(4).forEach((e) => {
          const cl = x.let(`cl${e}`, `${quad} * 4u + ${e}u`);
          const col = x.let(`col${e}`, `${rt} * ${R}u + ${cl}`);
          x.block(`if (${cl} < ${R}u && ${col} < ${a.NR}u)`, (y) => {
            y.line(`${vv}.${XYZW[e]} = ${gen.value(y, t.value, { ...hIdx, ...y.split(a.rest, sizes, col, 'cx') }, pos)};`);
          });
        });
      });
      b.line(`${V}[${row} * ${R4}u + ${quad}] = ${vv};`);
    });
    ch.line(barrier);
    ch.comment(`2: partial scores over this tile, ${SI} × ${SJ} an invocation, zero above the diagonal (step 3 sums whole rows)`);
    ch.block('', (b) => {
      const si = range(SI).map((m) => b.let(`si${m}`, `min(lid / ${TJ}u + ${m * (s.threads / TJ)}u, ${C - 1}u)`));
      const sj = range(SJ).map((m) => b.let(`sj${m}`, `min(lid % ${TJ}u + ${m * TJ}u, ${C - 1}u)`));
      const acc = range(SI).map((x) => range(SJ).map((y) => b.var(`a${x}_${y}`, '0.0')));
      b.for('l', '0u', (l) => `${l} < ${FT4}u`, (y, l) => {
        const ks = sj.map((j, m) => y.let(`k${m}`, `${K}[${j} * ${FS4}u + ${l}]`));
        si.forEach((i, x) => {
          const q = y.let(`q${x}`, `${Q}[${i} * ${FS4}u + ${l}]`);
          ks.forEach((k, m) => y.line(`${acc[x][m]} += dot(${q}, ${k});`));
        });
      });
      // clamped rows and columns repeat the last one; only the invocation that owns an entry writes it
      si.forEach((i, x) => sj.forEach((j, m) => {
        const own = `lid / ${TJ}u + ${x * (s.threads / TJ)}u < ${C}u && lid % ${TJ}u + ${m * TJ}u < ${C}u`;
        b.line(`if (${own}) { ${A}[${i} * ${C}u + ${j}] = select(0.0, ${acc[x][m]}, ${j} <= ${i}); }`);
      }));
    });
    ch.line(barrier);
    ch.comment(`3: partial numerators, ${MI} rows × ${MC4} vec4 columns an invocation; denominator parts, ${P} an invocation row`);
    const rows = range(MI).map((m) => ch.let(`i${m}`, `${tr} + ${m * TR}u`));
    const rowr = rows.map((i, m) => ch.let(`ir${m}`, `min(${i}, ${C - 1}u)`));
    const o = range(MI).map((x) => range(MC4).map((y) => ch.var(`o${x}_${y}`, `${v4}()`, v4)));
    // up to this invocation's last row: the scores are zero above the diagonal
    ch.for('j', '0u', (j) => `${j} <= ${rowr[MI - 1]}`, (y, j) => {
      const vs = colr.map((c, m) => y.let(`v${m}`, `${V}[${j} * ${R4}u + ${c}]`));
      rowr.forEach((i, x) => {
        const sc = y.let(`a${x}`, `${A}[${i} * ${C}u + ${j}]`);
        vs.forEach((v, m) => y.line(`${o[x][m]} += ${sc} * ${v};`));
      });
    });
    ch.for('l', '0u', (l) => `${l} < ${FT4}u`, (y, l) => {
      const ss = colr.map((c, m) => range(4).map((e) => y.let(`s${m}${XYZW[e]}`, `${S}[(${l} * 4u + ${e}u) * ${R4}u + ${c}]`)));
      rowr.forEach((i, x) => {
        const q = y.let(`q${x}`, `${Q}[${i} * ${FS4}u + ${l}]`);
        ss.forEach((sm, m) => y.line(`${o[x][m]} += ${sm.map((sv, e) => `${q}.${XYZW[e]} * ${sv}`).join(' + ')};`));
      });
    });
    rows.forEach((i, x) =>
      cols.forEach((g, m) =>
        range(4).forEach((e) =>
          ch.block(`if (${i} < ${n} && ${g} * 4u + ${e}u < ${R}u && ${rt} * ${R}u + ${g} * 4u + ${e}u < ${a.NR}u)`, (w) => {
            const col = w.let('col', `${rt} * ${R}u + ${g} * 4u + ${e}u`);
            const row = `(${ft} * dims.b + b) * dims.t + ${c0} + ${i}`;
            w.line(`${num}[${offset(p.outAxes, sizes, { ...hIdx, ...w.split(a.rest, sizes, col, 'cx') }, row)}] = ${o[x][m]}.${XYZW[e]};`);
          }),
        ),
      ),
    );
    ch.strided('k', `${C * P}u`, (b, k) => {
      const i = b.let('i', `${k} / ${P}u`);
      const part = b.let('part', `${k} % ${P}u`);
      const acc = b.var('acc', '0.0');
      b.for('j', part, (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${A}[${i} * ${C}u + ${j}];`), { step: (j) => `${j} += ${P}u` });
      b.for('l', part, (l) => `${l} < ${FT4}u`, (y, l) => y.line(`${acc} += dot(${Q}[${i} * ${FS4}u + ${l}], ${Z}[${l}]);`), { step: (l) => `${l} += ${P}u` });
      b.line(`${D}[${k}] = ${acc};`);
    });
    ch.line(barrier);
    ch.comment(`4: fold the chunk into S (${ML4} feature quads × ${MC4} vec4 columns an invocation, in registers) and z; sum the denominator parts in order`);
    ch.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => {
      const vs = colr.map((c, m) => y.let(`v${m}`, `${V}[${j} * ${R4}u + ${c}]`));
      quadr.forEach((l, x) => {
        const k = y.let(`k${x}`, `${K}[${j} * ${FS4}u + ${l}]`);
        range(4).forEach((e) => vs.forEach((v, m) => y.line(`${st[x][e][m]} += ${k}.${XYZW[e]} * ${v};`)));
      });
    });
    quads.forEach((l, x) =>
      cols.forEach((g, m) =>
        ch.block(`if (${l} < ${FT4}u && ${g} < ${R4}u)`, (w) => range(4).forEach((e) => w.line(`${S}[(${l} * 4u + ${e}u) * ${R4}u + ${g}] = ${st[x][e][m]};`))),
      ),
    );
    ch.strided('k', `${FT4}u`, (b, l) => {
      const acc = b.var('acc', `${Z}[${l}]`, v4);
      b.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${K}[${j} * ${FS4}u + ${l}];`));
      b.line(`${Z}[${l}] = ${acc};`);
    });
    ch.block(`if (${rt} == 0u)`, (r) =>
      r.strided('k', `${C}u`, (b, i) => {
        b.block(`if (${i} < ${n})`, (x) => {
          const acc = x.var('acc', '0.0');
          x.for('part', '0u', (q) => `${q} < ${P}u`, (y, q) => y.line(`${acc} += ${D}[${i} * ${P}u + ${q}];`));
          x.line(`${den}[((${ft} * dims.b + b) * dims.t + ${c0} + ${i}) * ${a.NH}u + ${hs}] = ${acc};`);
        });
      }),
    );
    ch.line(barrier);
  }, { step: (c0) => `${c0} += ${C}u` });
  const x = a.NH * a.RT * a.NFT;
  return kb.build({
    label,
    comment: [
      `${p.name}: term ${t.name} over tiles of ${FT} of its ${a.F} features (${a.NFT} tiles), chunk ${C}, ${R} of ${a.NR} value columns per workgroup, register-blocked:`,
      `${TC} column groups × ${TR} row groups, an invocation ${MI} rows and ${ML4} feature quads × ${MC4} vec4 columns; partial numerators [tile, b, t, out] and denominators [tile, b, t, head]`,
    ],
    workgroups: (b) => [x, b, 1],
    launch: { kind: 'fixed', x, perBatchY: true },
  });
}
