// The register-tiled flash kernel of softmax attention (prefill), for a logit that is a scaled dot product of one
// query feature and one key feature, s_ij = c · Σ_f Q[i, f] K[j, f] (softmax.la; LLaMA's rope(q)·rope(k) / √D):
// what tiledLogit matches. Other logits keep softmax-chunked.ts's kernel, which computes each logit on its own.
//
// A workgroup takes BQ query rows of one head slice and walks the key blocks of BK rows up to its last row. Thread
// (ty, tx) owns rows 4ty … 4ty + 3: their CPT logits at key columns CPT·tx … of a block, and their outputs at value
// columns VC·tx … VC·tx + VC − 1 (VC 4 or 8), accumulated in registers over all key blocks (FlashAttention-2's
// layout). K and V share one workgroup array, and each is read from memory a phase before it is stored, so that
// its loads are in flight while the threads compute: the next block's keys during this block's A·V, the values
// during the logits (LowerOptions.shareKV false: two arrays, both staged at the top of the block; on the H200 at
// d 128 40.6 → 18.6 ms, at d 64 8.99 → 8.03, bench/results/h200-softmax-shared-kv.json). Per key block:
//   store K (transposed, K[f][c], padded to BK + 1 so that the staging's writes fall in distinct banks); read V;
//   the 4 × CPT logits: per feature one vec4 of Q (staged transposed, Q[f][r]) and CPT loads of K for 4·CPT products;
//   each row's block maximum from the TX threads that share it (workgroup memory), the running max m, p = e^(s − m),
//   the row's rescale e^(m_old − m) of its accumulators and of the thread's own share of l; store V; read the next K;
//   acc += P V: per key one vec4 of P (stored transposed, padded) and VC / 4 vec4 of V for 4 · VC products.
// Q, V and P live in vec4 arrays, so that each of those reads is one 16-byte load.
// l is summed over the TX threads once, at the end. The causal mask and the ragged last blocks give p = 0, not
// e^(NO_LOGIT − m): a row with no key yet keeps m = NO_LOGIT and l = 0. The float64 twin of the arithmetic is
// backends/cpu/softmax-chunked.ts (the same online softmax, blocked differently). The workgroups run the query
// blocks last-first: the causal triangle makes the last blocks the longest, so they start in the first wave.
import type { Id, Program } from '../../src/ir/types.ts';
import { programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { KernelBuilder } from './kernel-builder.ts';
import type { Kernel } from './plan.ts';
import type { SoftmaxAnalysis } from './softmax-analysis.ts';
import { cacheBindings } from './softmax-decode.ts';
import { NO_LOGIT } from './softmax-online.ts';
import { valueRows, writeCacheRows } from './softmax-rows.ts';
import type { Block } from './wgsl-block.ts';

/** The logit as c · Σ_axis Q·K: the query and key feature it reads and the scale, or undefined. */
export interface TiledLogit {
  readonly query: Id;
  readonly key: Id;
  readonly scale: number;
}

export function tiledLogit(a: SoftmaxAnalysis): TiledLogit | undefined {
  const { p } = a;
  if (a.query.length !== 1 || a.key.length !== 1) return undefined;
  const [q, k] = [a.query[0], a.key[0]];
  let id = a.term.form.logit;
  let scale = 1;
  const n = p.nodes[id];
  const constOf = (x: Id) => (p.nodes[x].op === 'const' ? (p.nodes[x] as { value: number }).value : undefined);
  if (n.op === 'binary' && (n.fn === 'div' || n.fn === 'mul')) {
    const cb = constOf(n.b);
    const ca = n.fn === 'mul' ? constOf(n.a) : undefined;
    if (cb !== undefined && cb !== 0) [id, scale] = [n.a, n.fn === 'div' ? 1 / cb : cb];
    else if (ca !== undefined) [id, scale] = [n.b, ca];
  }
  const sum = p.nodes[id];
  if (sum.op !== 'sum') return undefined;
  const prod = p.nodes[sum.x];
  if (prod.op !== 'binary' || prod.fn !== 'mul') return undefined;
  const pair = new Set([prod.a, prod.b]);
  if (!(pair.has(q.id) && pair.has(k.id) && q.id !== k.id)) return undefined;
  if (q.axes.length !== 1 || k.axes.length !== 1 || q.axes[0] !== sum.axis || k.axes[0] !== sum.axis) return undefined;
  return { query: q.id, key: k.id, scale };
}

export interface TiledShape {
  /** Query rows per workgroup, key rows per block, logit columns per thread, threads along the value columns. */
  readonly BQ: number;
  readonly BK: number;
  readonly CPT: number;
  readonly TX: number;
  /** Value columns a thread accumulates (4 or 8: one or two vec4 a row); TX = NR / VC. */
  readonly VC: number;
  readonly threads: number;
  readonly floats: number;
  /**
   * K and V of a key block in one array, each read into registers a phase early (the keys during the block before's
   * A·V, the values during the logits) and stored when the array is free; false (LowerOptions.shareKV false, the `sk`
   * switch): two arrays, staged from memory together at the top of each block.
   */
  readonly shareKV: boolean;
}

/**
 * Workgroup floats of the tiled kernel's arrays at a shape (W features, NR value columns), K and V in one array
 * unless `share` is false.
 */
export function tiledFloats(W: number, NR: number, BQ: number, BK: number, TX: number, share = true): { readonly floats: number; readonly shareKV: boolean } {
  const rest = W * BQ + BK * (BQ + 4) + BQ * TX;
  const [keys, values] = [W * (BK + 1), BK * NR];
  return share ? { floats: rest + 4 * Math.ceil(Math.max(keys, values) / 4), shareKV: true } : { floats: rest + keys + values, shareKV: false };
}

/**
 * The shapes that fit, the most query rows first (then 4 value columns a thread before 8, then 2 logits before 1):
 * BQ 64, 32 or 16 query rows, VC 4 or 8 value columns a thread (TX = NR / VC threads along them), each thread 2 or
 * 1 logit columns of a key block of BK = CPT · TX keys. At d 64 the first is 64 rows, 4 columns, 2 logits (256
 * threads); at d 128 (LLaMA's heads) 32 rows, 4 columns, 1 logit (256 threads), where 64 rows do not fit. As
 * schedules (chunk-schedules.ts) they are { chunk: BQ, cols: NR, threads, block: CPT } (threads names VC); none where
 * NR is not a multiple of 4 or the features are too wide.
 */
export function tiledShapes(a: SoftmaxAnalysis, limits: { maxWorkgroupFloats: number; maxThreads: number }): TiledShape[] {
  const W = a.WQ;
  if (a.WK !== W || a.NR % 4 !== 0) return [];
  const out: TiledShape[] = [];
  for (const BQ of [64, 32, 16]) {
    for (const VC of [4, 8]) {
      if (a.NR % VC !== 0) continue;
      const TX = a.NR / VC;
      for (const CPT of [2, 1]) {
        const BK = CPT * TX;
        const threads = TX * (BQ / 4);
        const { floats, shareKV } = tiledFloats(W, a.NR, BQ, BK, TX);
        if (floats <= limits.maxWorkgroupFloats && threads <= limits.maxThreads && threads >= 32) out.push({ BQ, BK, CPT, TX, VC, threads, floats, shareKV });
      }
    }
  }
  return out;
}

/**
 * The tiled shape a schedule names ({ chunk: BQ, threads: NR / VC · BQ / 4, block: CPT }), or why it names none;
 * K and V in one array unless `shareKV` is false.
 */
export function shapeOf(a: SoftmaxAnalysis, s: { chunk: number; threads: number; block?: number }, shareKV?: boolean): TiledShape {
  const CPT = s.block ?? 0;
  if (a.NR % 4 !== 0 || a.WK !== a.WQ) throw new Error(`${a.p.name}: the tiled flash kernel needs value columns in fours and query and key features of one width (${a.NR} columns, ${a.WQ} and ${a.WK} features)`);
  const VC = [4, 8].find((vc) => a.NR % vc === 0 && s.threads === (a.NR / vc) * (s.chunk / 4));
  if (!(CPT === 1 || CPT === 2) || ![64, 32, 16].includes(s.chunk) || VC === undefined) {
    throw new Error(`${a.p.name}: the tiled flash kernel runs 16, 32 or 64 query rows, 1 or 2 logit columns a thread (b1, b2) and ${a.NR / 4} or ${a.NR / 8} threads per 4 rows (4 or 8 value columns a thread); got chunk ${s.chunk}, threads ${s.threads}, b${CPT}`);
  }
  const TX = a.NR / VC;
  return { BQ: s.chunk, BK: CPT * TX, CPT, TX, VC, threads: s.threads, ...tiledFloats(a.WQ, a.NR, s.chunk, CPT * TX, TX, shareKV) };
}

/** Softmax attention's prefill kernel a schedule names, in words: the register-tiled one where it has `block`. */
export function flashKernel(s: { chunk: number; threads: number; block?: number }): string {
  return s.block ? `the register-tiled flash kernel (${s.chunk} query rows, ${s.threads} threads, ${s.block} logit column${s.block > 1 ? 's' : ''} a thread)` : `the flash kernel (chunk ${s.chunk}, ${s.threads} threads)`;
}

export function softmaxTiledKernel(p: Program, sizes: Sizes, a: SoftmaxAnalysis, logit: TiledLogit, shape: TiledShape, exportState: boolean): Kernel {
  const { BQ, BK, CPT, TX, VC } = shape;
  const V = [...Array(VC / 4).keys()];
  const W = a.WQ;
  const NR = a.NR;
  const kb = new KernelBuilder(shape.threads, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const out = kb.storage('out:o', true, { always: true });
  const caches = exportState ? cacheBindings(kb, a, true) : undefined;
  // Q, V and P as vec4 arrays: each read of 4 rows (Q, P) or 4 columns (V) is one 16-byte load
  const qT = kb.workgroup('qT', (W * BQ) / 4, 'query features, transposed: [f][row / 4]', 'vec4<f32>');
  // K (scalar, [f][key] padded) and V (vec4, [key][column / 4]) in their own arrays, or both in one vec4 array (shareKV)
  const kv = shape.shareKV ? kb.workgroup('kv', Math.ceil(Math.max(W * (BK + 1), BK * NR) / 4), 'the key block: its key features transposed ([f][key], padded), then its values ([key][column / 4])', 'vec4<f32>') : undefined;
  const kT = kv ?? kb.workgroup('kT', W * (BK + 1), 'key features of the key block, transposed: [f][key], padded');
  const vt = kv ?? kb.workgroup('vt', (BK * NR) / 4, 'values of the key block: [key][column / 4]', 'vec4<f32>');
  /** Key element x of the block's keys (a scalar of a vec4 array when shared). */
  const keyAt = (x: string) => (kv ? `${kv.name}[(${x}) / 4u][(${x}) % 4u]` : `${kT.name}[${x}]`);
  const pT = kb.workgroup('pT', (BK * (BQ + 4)) / 4, 'e^(s − m) of the block, transposed: [key][row / 4], padded', 'vec4<f32>');
  const red = kb.workgroup('red', BQ * TX, "each row's partial maxima, then its partial sums l, per column thread");
  const main = kb.body;
  const PQ = BQ + 4;
  const PK = BK + 1;
  main.define('nqb', `(dims.t + ${BQ - 1}u) / ${BQ}u`);
  main.define('s', 'wid.x / nqb');
  main.define('qb', 'nqb - 1u - wid.x % nqb', 'the longest query blocks first');
  main.define('b', 'wid.y');
  const head = main.split(a.head, sizes, 's', 'hx');
  main.define('q0', `qb * ${BQ}u`);
  main.define('nq', `min(${BQ}u, dims.t - q0)`);
  main.define('ty', `lid / ${TX}u`);
  main.define('tx', `lid % ${TX}u`);
  main.define('r0', '4u * ty');
  // a block of rows' features, transposed into `into` ([f][row], rows `stride` apart; a vec4 array holds 4 rows an
  // element); 0 past the block's n rows
  // (`into`: a vec4 array's name, or the place of element e · stride + r of a scalar one)
  const stageTransposed = (at: Block, which: Id, rows: number, first: string, n: string, into: string | ((x: string) => string), stride: number) =>
    at.strided('x', `${rows * W}u`, (c, x) => {
      const f = (which === logit.query ? a.query : a.key)[0];
      const r = c.let('r', `${x} / ${W}u`);
      const e = c.let('e', `${x} % ${W}u`);
      const v = c.var('fv', '0.0');
      c.block(`if (${r} < ${n})`, (w) => {
        const pos = `${first} + ${r}`;
        w.line(`${v} = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(w, f.id, { ...head, ...w.split(f.axes, sizes, e, `f${f.id}`) }, pos)};`);
      });
      c.line(typeof into === 'string' ? `${into}[${e} * ${stride / 4}u + ${r} / 4u][${r} % 4u] = ${v};` : `${into(`${e} * ${stride}u + ${r}`)} = ${v};`);
    });
  stageTransposed(main, logit.query, BQ, 'q0', 'nq', qT.name, BQ);
  if (caches) writeCacheRows(main, a, head, read, caches);

  const R = [0, 1, 2, 3];
  const J = [...Array(CPT).keys()];
  const m = R.map(() => main.var('m', NO_LOGIT));
  const l = R.map(() => main.var('l', '0.0'));
  const acc = R.map(() => V.map(() => main.var('acc', 'vec4<f32>(0.0)', 'vec4<f32>')));
  // shared: each block's keys are read into registers while the block before computes A·V (the first block's here)
  // and stored at the top of their block
  const keyTrips = kv ? Math.ceil((BK * W) / shape.threads) : 0;
  const hk = [...Array(keyTrips).keys()].map(() => main.var('hk', '0.0'));
  const keyFeature = a.key[0];
  /** Block `k0`'s key elements a thread stages (the trips of BK · W), read into hk; 0 past the sequence. */
  const holdKeys = (at: Block, k0: string) =>
    at.trips('kx', BK * W, { index: 'lid', size: shape.threads }).forEach(({ x, guard }, t) => {
      const r = at.let('kr', `${x} / ${W}u`);
      const e = at.let('ke', `${x} % ${W}u`);
      at.line(`${hk[t]} = 0.0;`);
      at.block(`if (${guard ? `${guard} && ` : ''}${k0} + ${r} < dims.t)`, (w) => {
        const pos = w.let('kp', `${k0} + ${r}`);
        w.line(`${hk[t]} = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(w, keyFeature.id, { ...head, ...w.split(keyFeature.axes, sizes, e, `f${keyFeature.id}`) }, pos)};`);
      });
    });
  if (kv) holdKeys(main, '0u');
  main.line('workgroupBarrier();');
  main.for('kb', '0u', (k) => `${k} <= (q0 + nq - 1u) / ${BK}u`, (blk) => {
    blk.define('k0', `kb * ${BK}u`);
    blk.define('nk', `min(${BK}u, dims.t - k0)`);
    if (kv) {
      blk.trips('kx', BK * W, { index: 'lid', size: shape.threads }).forEach(({ x, guard }, t) => {
        const at = keyAt(`(${x} % ${W}u) * ${PK}u + ${x} / ${W}u`);
        blk.line(guard ? `if (${guard}) { ${at} = ${hk[t]}; }` : `${at} = ${hk[t]};`);
      });
    } else stageTransposed(blk, logit.key, BK, 'k0', 'nk', keyAt, PK);
    // the block's values, 4 columns a vec4; rows past nk zero (with K, or once the logits have read K)
    const stageValues = (at: Block) =>
      valueRows(at, a, head, 'k0', 'nk', (w, _col, idx, pos, _row, x) => w.line(`${vt.name}[${x} / 4u][${x} % 4u] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(w, a.term.value, idx, pos)};`), {
        rows: BK,
        zero: (w, x) => w.line(`${vt.name}[${x} / 4u][${x} % 4u] = 0.0;`),
      });
    /** Every value element a thread stages (unrolled trips), read into registers; 0 past nk. */
    const holdValues = (at: Block) =>
      at.trips('vx', BK * NR, { index: 'lid', size: shape.threads }).map(({ x, guard }) => {
        const v = at.var('vh', '0.0');
        const r = at.let('vr', `${x} / ${NR}u`);
        const col = at.let('vcol', `${x} % ${NR}u`);
        at.block(`if (${guard ? `${guard} && ` : ''}${r} < nk)`, (w) => {
          const pos = w.let('tp', `k0 + ${r}`);
          const idx = { ...head, ...w.split(a.rest, sizes, col, 'vc') };
          w.line(`${v} = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(w, a.term.value, idx, pos)};`);
        });
        return { x, v, guard };
      });
    if (!kv) stageValues(blk);
    // shared: the block's values are read into registers now (their loads in flight during the logits) and stored
    // once the logits have read the keys
    const held = kv ? holdValues(blk) : undefined;
    blk.line('workgroupBarrier();');
    // the thread's 4 × CPT logits: per feature one vec4 of Q's rows against each of its key columns
    const sv = J.map(() => blk.var('sv', 'vec4<f32>(0.0)', 'vec4<f32>'));
    blk.for('f', '0u', (f) => `${f} < ${W}u`, (lp, f) => {
      const qv = lp.let('qv', `${qT.name}[${f} * ${BQ / 4}u + ty]`);
      for (const j of J) lp.line(`${sv[j]} = fma(${qv}, vec4<f32>(${keyAt(`${f} * ${PK}u + ${CPT}u * tx + ${j}u`)}), ${sv[j]});`);
    });
    // scaled and masked; each row's maximum over the thread's columns
    const ok: string[][] = [];
    const z: string[][] = [];
    for (const i of R) {
      ok.push(J.map((j) => blk.let('ok', `r0 + ${i}u < nq && ${CPT}u * tx + ${j}u < nk && k0 + ${CPT}u * tx + ${j}u <= q0 + r0 + ${i}u`)));
      z.push(J.map((j) => blk.let('z', `select(${NO_LOGIT}, ${sv[j]}[${i}] * ${logit.scale}, ${ok[i][j]})`)));
      blk.line(`${red.name}[(r0 + ${i}u) * ${TX}u + tx] = ${z[i].reduce((x, y) => `max(${x}, ${y})`)};`);
    }
    blk.line('workgroupBarrier();');
    if (kv && held) for (const h of held) blk.line(`${h.guard ? `if (${h.guard}) { ` : ''}${kv.name}[${h.x} / 4u][${h.x} % 4u] = ${h.v};${h.guard ? ' }' : ''}`);
    for (const i of R) {
      blk.block('', (w) => {
        const bm = w.var('bm', `${red.name}[(r0 + ${i}u) * ${TX}u]`);
        w.for('u', '1u', (u) => `${u} < ${TX}u`, (lp, u) => lp.line(`${bm} = max(${bm}, ${red.name}[(r0 + ${i}u) * ${TX}u + ${u}]);`));
        const mn = w.let('mn', `max(${m[i]}, ${bm})`);
        const sc = w.let('sc', `exp(${m[i]} - ${mn})`);
        w.line(`${m[i]} = ${mn};`);
        const ps = J.map((j) => w.let('pr', `select(0.0, exp(${z[i][j]} - ${mn}), ${ok[i][j]})`));
        for (const j of J) w.line(`${pT.name}[(${CPT}u * tx + ${j}u) * ${PQ / 4}u + ty][${i}u] = ${ps[j]};`);
        w.line(`${l[i]} = ${l[i]} * ${sc} + ${ps.join(' + ')};`);
        for (const v of V) w.line(`${acc[i][v]} = ${acc[i][v]} * ${sc};`);
      });
    }
    blk.line('workgroupBarrier();');
    if (kv) holdKeys(blk, `k0 + ${BK}u`);
    blk.for('c', '0u', (c) => `${c} < ${BK}u`, (lp, c) => {
      const p4 = lp.let('p4', `${pT.name}[${c} * ${PQ / 4}u + ty]`);
      for (const v of V) {
        const vv = lp.let('vv', `${vt.name}[${c} * ${NR / 4}u + ${VC / 4}u * tx + ${v}u]`);
        for (const i of R) lp.line(`${acc[i][v]} = fma(vec4<f32>(${p4}[${i}]), ${vv}, ${acc[i][v]});`);
      }
    });
    blk.line('workgroupBarrier();');
  }, { fixed: true });
  for (const i of R) main.line(`${red.name}[(r0 + ${i}u) * ${TX}u + tx] = ${l[i]};`);
  main.line('workgroupBarrier();');
  for (const i of R) {
    main.block(`if (r0 + ${i}u < nq)`, (w) => {
      const L = w.var('lsum', '0.0');
      w.for('u', '0u', (u) => `${u} < ${TX}u`, (lp, u) => lp.line(`${L} = ${L} + ${red.name}[(r0 + ${i}u) * ${TX}u + ${u}];`));
      for (let k = 0; k < VC; k++) {
        const col = w.let('col', `${VC}u * tx + ${k}u`);
        const idx = { ...head, ...w.split(a.rest, sizes, col, 'oc') };
        w.line(`${kb.use(out)}[(b * dims.t + q0 + r0 + ${i}u) * ${a.per}u + ${offset(p.outAxes, sizes, idx)}] = ${acc[i][k >> 2]}[${k & 3}] / ${L};`);
      }
    });
  }
  return kb.build({
    label: `${p.name}.chunked`,
    comment: [
      `register-tiled flash kernel of ${p.name} (softmax term ${a.term.name}, logit ${logit.scale} · Σ q·k): ${BQ} query rows per workgroup, key`,
      `blocks of ${BK}${shape.shareKV ? ' (keys and values in one array, in turn)' : ''}, each of ${shape.threads} threads 4 rows × ${CPT} logits and 4 rows × ${VC} value columns${caches ? '; writes its rows into the key/value cache' : ''}`,
    ],
    workgroups: (b, t) => [a.NS * Math.ceil(t / BQ), b, 1],
    launch: { kind: 'blocks', x: a.NS, block: BQ },
  });
}
