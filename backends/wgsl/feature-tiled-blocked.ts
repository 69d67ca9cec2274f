// The feature-tiled term kernel with register blocking (the same sums as feature-tiled.ts's plain kernel, which
// stays for comparison). Why the plain kernel ran based at 130 ms on the H200 (B 4, H 16, T 4096, D 64, chunk 16,
// 32 columns, 128 features a tile): every FMA of its three matmuls — the tile's partial scores, the numerators
// A·V + Φ·S and the fold S += Ψᵀ·V — reads both operands from workgroup memory, one output per invocation, so it
// is bound by the workgroup-memory port (one 32-lane load a cycle per SM against four 32-lane FMAs), at roughly a
// quarter of the FMA rate; the partial scores are computed again by each column tile; and the scores read ψ rows
// FT apart, a multiple of 32 banks, so 16 invocations of a warp hit one bank.
// Here each invocation owns a micro-tile of MC value columns (interleaved: columns tc, tc + TC, …, so that a warp's
// loads of one row fall in consecutive banks) × MI chunk rows of the numerators and × ML features of S. S's micro-
// tile lives in registers across the whole sequence (workgroup memory holds a copy for the numerators), so per
// chunk row the fold loads ML + MC values for ML·MC FMAs; the numerators load MI + MC per MI·MC. Φ and Ψ rows are
// FT + 1 apart (no bank conflicts in the scores). The denominators are split over P invocations a row and summed
// after the next barrier in a fixed order; a schedule with every value column in one workgroup computes the
// partial scores once.
import type { Program, Term } from '../../src/ir/types.ts';
import { programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import type { FeatureTiledSchedule } from './feature-tiled.ts';
import { tiledShape } from './feature-tiled.ts';
import { KernelBuilder } from './kernel-builder.ts';
import type { Kernel } from './plan.ts';

/** How the blocked kernel splits its invocations: TC column groups × TR row groups, and each one's micro-tiles. */
export function blockedSplit(s: FeatureTiledSchedule, featureCount: number, valueCols: number) {
  const C = s.chunk;
  const FT = Math.min(s.featureTile, featureCount);
  const R = Math.min(s.cols, valueCols);
  let TC = 1;
  while (TC * 2 <= Math.min(16, R, s.threads)) TC *= 2;
  const TR = s.threads / TC;
  if (!Number.isInteger(TR)) throw new Error(`internal: ${s.threads} threads do not split into ${TC} column groups`);
  return { C, FT, R, TC, TR, MC: Math.ceil(R / TC), MI: Math.ceil(C / TR), ML: Math.ceil(FT / TR), P: Math.max(1, Math.floor(s.threads / C)), FS: FT + 1 };
}

/** Workgroup memory (4-byte elements): φ and ψ [C, FT + 1], v [C, R], scores [C, C], S [FT, R], z [FT], denominator parts [C, P]. */
export function blockedSharedFloats(s: FeatureTiledSchedule, featureCount: number, valueCols: number): number {
  const { C, FT, R, P, FS } = blockedSplit(s, featureCount, valueCols);
  return 2 * C * FS + C * R + C * C + FT * R + FT + C * P;
}

/**
 * Per (b, head slice hs, column tile rt, feature tile ft), for each chunk of C positions c0…c0+n−1:
 *   A[i, j] = Σ_{f in ft} φ_i[f] ψ_j[f] (j ≤ i),  n_i = Σ_j A[i, j] v_j + φ_i[ft] S,  z_i = Σ_j A[i, j] + φ_i[ft] · z,
 * written to tile ft's slice of the partial buffers, then S += ψ[ft]ᵀ v, z += Σ_j ψ_j[ft].
 */
export function blockedTileKernel(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule, label: string, numBuf: string, denBuf: string): Kernel {
  const a = tiledShape(p, sizes, t, s);
  const { C, FT, R, TC, TR, MC, MI, ML, P, FS } = blockedSplit(s, a.F, a.NR);
  // the scores' split: TJ key columns × threads / TJ query rows, SI × SJ an invocation
  let TJ = 1;
  while (TJ * 2 <= Math.min(16, C, s.threads)) TJ *= 2;
  const SI = Math.ceil(C / (s.threads / TJ));
  const SJ = Math.ceil(C / TJ);
  const kb = new KernelBuilder(s.threads, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const gen = new ExprGen(p, sizes, read, { i: 'pos', j: 'pos' });
  const Q = kb.workgroup('phi', C * FS, `φ(q) of the chunk, this tile of features [C, FT + 1]`).name;
  const K = kb.workgroup('psi', C * FS, `ψ(k) of the chunk, this tile of features [C, FT + 1]`).name;
  const V = kb.workgroup('vals', C * R, 'v of the chunk, this column tile [C, R]').name;
  const A = kb.workgroup('scores', C * C, 'partial scores over this tile [C, C], zero above the diagonal').name;
  const S = kb.workgroup('state', FT * R, 'S over this tile [FT, R] (a copy of the registers)').name;
  const Z = kb.workgroup('zsum', FT, 'z over this tile [FT]').name;
  const D = kb.workgroup('denparts', C * P, `partial denominators [C, ${P}]`).name;
  const num = kb.use(kb.storage(numBuf, true, { always: true }));
  const den = kb.use(kb.storage(denBuf, true, { always: true }));
  const main = kb.body;
  const barrier = 'workgroupBarrier();';
  main.define('b', 'wid.y');
  const ft = main.let('ft', `wid.x % ${a.NFT}u`);
  const rt = main.let('rt', `(wid.x / ${a.NFT}u) % ${a.RT}u`);
  const hs = main.let('hs', `wid.x / ${a.NFT * a.RT}u`);
  const hIdx = main.split(a.head, sizes, hs, 'hx');
  const tc = main.let('tc', `lid % ${TC}u`);
  const tr = main.let('tr', `lid / ${TC}u`);
  const range = (n: number) => [...Array(n).keys()];
  // this invocation's columns (clamped for reading: a padded column repeats the last, and is never written)
  const cols = range(MC).map((m) => main.let(`c${m}`, `${tc} + ${m * TC}u`));
  const colr = cols.map((c, m) => main.let(`cr${m}`, `min(${c}, ${R - 1}u)`));
  const feats = range(ML).map((m) => main.let(`l${m}`, `${tr} + ${m * TR}u`));
  const featr = feats.map((l, m) => main.let(`lr${m}`, `min(${l}, ${FT - 1}u)`));
  const st = range(ML).map((x) => range(MC).map((y) => main.var(`s${x}_${y}`, '0.0')));
  main.strided('k', `${FT * R}u`, (b, k) => b.line(`${S}[${k}] = 0.0;`));
  main.strided('k', `${FT}u`, (b, k) => b.line(`${Z}[${k}] = 0.0;`));
  main.line(barrier);
  main.for('c0', '0u', (c0) => `${c0} < dims.t`, (ch, c0) => {
    const n = ch.let('n', `min(${C}u, dims.t - ${c0})`);
    ch.comment('1: stage φ and ψ of this tile (zero past the sequence and past the last feature), and v');
    ch.strided('k', `${C * FT}u`, (b, k) => {
      const row = b.let('row', `${k} / ${FT}u`);
      const fl = b.let('fl', `${k} % ${FT}u`);
      const f = b.let('f', `${ft} * ${FT}u + ${fl}`);
      const qv = b.var('qf', '0.0');
      const kv = b.var('kf', '0.0');
      b.block(`if (${row} < ${n} && ${f} < ${a.F}u)`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`); // the name ExprGen reads at.i / at.j at
        const idx = { ...hIdx, [a.feature]: f };
        x.line(`${qv} = ${gen.value(x, a.form.phi, idx, pos)};`);
        x.line(`${kv} = ${gen.value(x, a.form.psi, idx, pos)};`);
      });
      b.line(`${Q}[${row} * ${FS}u + ${fl}] = ${qv};`);
      b.line(`${K}[${row} * ${FS}u + ${fl}] = ${kv};`);
    });
    ch.strided('k', `${C * R}u`, (b, k) => {
      const row = b.let('row', `${k} / ${R}u`);
      const col = b.let('col', `${rt} * ${R}u + ${k} % ${R}u`);
      const vv = b.var('vf', '0.0');
      b.block(`if (${row} < ${n} && ${col} < ${a.NR}u)`, (x) => {
        const pos = x.define('pos', `${c0} + ${row}`);
        x.line(`${vv} = ${gen.value(x, t.value, { ...hIdx, ...x.split(a.rest, sizes, col, 'cx') }, pos)};`);
      });
      b.line(`${V}[${k}] = ${vv};`);
    });
    ch.line(barrier);
    ch.comment(`2: partial scores over this tile, ${SI} × ${SJ} an invocation, zero above the diagonal (step 3 sums whole rows)`);
    ch.block('', (b) => {
      const si = range(SI).map((m) => b.let(`si${m}`, `min(lid / ${TJ}u + ${m * (s.threads / TJ)}u, ${C - 1}u)`));
      const sj = range(SJ).map((m) => b.let(`sj${m}`, `min(lid % ${TJ}u + ${m * TJ}u, ${C - 1}u)`));
      const acc = range(SI).map((x) => range(SJ).map((y) => b.var(`a${x}_${y}`, '0.0')));
      b.for('l', '0u', (l) => `${l} < ${FT}u`, (y, l) => {
        const ks = sj.map((j, m) => y.let(`k${m}`, `${K}[${j} * ${FS}u + ${l}]`));
        si.forEach((i, x) => {
          const q = y.let(`q${x}`, `${Q}[${i} * ${FS}u + ${l}]`);
          ks.forEach((k, m) => y.line(`${acc[x][m]} += ${q} * ${k};`));
        });
      });
      // clamped rows and columns repeat the last one and write the same value to the same place; keep one writer
      si.forEach((i, x) => sj.forEach((j, m) => {
        const own = `lid / ${TJ}u + ${x * (s.threads / TJ)}u < ${C}u && lid % ${TJ}u + ${m * TJ}u < ${C}u`;
        b.line(`if (${own}) { ${A}[${i} * ${C}u + ${j}] = select(0.0, ${acc[x][m]}, ${j} <= ${i}); }`);
      }));
    });
    ch.line(barrier);
    ch.comment(`3: partial numerators, ${MI} rows × ${MC} columns an invocation; denominator parts, ${P} an invocation row`);
    const rows = range(MI).map((m) => ch.let(`i${m}`, `${tr} + ${m * TR}u`));
    const rowr = rows.map((i, m) => ch.let(`ir${m}`, `min(${i}, ${C - 1}u)`));
    const o = range(MI).map((x) => range(MC).map((y) => ch.var(`o${x}_${y}`, '0.0')));
    ch.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => {
      const vs = colr.map((c, m) => y.let(`v${m}`, `${V}[${j} * ${R}u + ${c}]`));
      rowr.forEach((i, x) => {
        const s2 = y.let(`a${x}`, `${A}[${i} * ${C}u + ${j}]`);
        vs.forEach((v, m) => y.line(`${o[x][m]} += ${s2} * ${v};`));
      });
    });
    ch.for('l', '0u', (l) => `${l} < ${FT}u`, (y, l) => {
      const ss = colr.map((c, m) => y.let(`s${m}`, `${S}[${l} * ${R}u + ${c}]`));
      rowr.forEach((i, x) => {
        const q = y.let(`q${x}`, `${Q}[${i} * ${FS}u + ${l}]`);
        ss.forEach((sv, m) => y.line(`${o[x][m]} += ${q} * ${sv};`));
      });
    });
    rows.forEach((i, x) =>
      cols.forEach((c, m) =>
        ch.block(`if (${i} < ${n} && ${c} < ${R}u && ${rt} * ${R}u + ${c} < ${a.NR}u)`, (w) => {
          const col = w.let('col', `${rt} * ${R}u + ${c}`);
          const row = `(${ft} * dims.b + b) * dims.t + ${c0} + ${i}`;
          w.line(`${num}[${offset(p.outAxes, sizes, { ...hIdx, ...w.split(a.rest, sizes, col, 'cx') }, row)}] = ${o[x][m]};`);
        }),
      ),
    );
    ch.strided('k', `${C * P}u`, (b, k) => {
      const i = b.let('i', `${k} / ${P}u`);
      const part = b.let('part', `${k} % ${P}u`);
      const acc = b.var('acc', '0.0');
      b.for('j', part, (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${A}[${i} * ${C}u + ${j}];`), { step: (j) => `${j} += ${P}u` });
      b.for('l', part, (l) => `${l} < ${FT}u`, (y, l) => y.line(`${acc} += ${Q}[${i} * ${FS}u + ${l}] * ${Z}[${l}];`), { step: (l) => `${l} += ${P}u` });
      b.line(`${D}[${k}] = ${acc};`);
    });
    ch.line(barrier);
    ch.comment(`4: fold the chunk into S (${ML} features × ${MC} columns an invocation, in registers) and z; sum the denominator parts in order`);
    ch.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => {
      const vs = colr.map((c, m) => y.let(`v${m}`, `${V}[${j} * ${R}u + ${c}]`));
      featr.forEach((l, x) => {
        const k = y.let(`k${x}`, `${K}[${j} * ${FS}u + ${l}]`);
        vs.forEach((v, m) => y.line(`${st[x][m]} += ${k} * ${v};`));
      });
    });
    feats.forEach((l, x) => cols.forEach((c, m) => ch.line(`if (${l} < ${FT}u && ${c} < ${R}u) { ${S}[${l} * ${R}u + ${c}] = ${st[x][m]}; }`)));
    ch.strided('k', `${FT}u`, (b, l) => {
      const acc = b.var('acc', `${Z}[${l}]`);
      b.for('j', '0u', (j) => `${j} < ${C}u`, (y, j) => y.line(`${acc} += ${K}[${j} * ${FS}u + ${l}];`));
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
      `${TC} column groups × ${TR} row groups, an invocation ${MI} rows and ${ML} features × ${MC} columns; partial numerators [tile, b, t, out] and denominators [tile, b, t, head]`,
    ],
    workgroups: (b) => [x, b, 1],
    launch: { kind: 'fixed', x, perBatchY: true },
  });
}
