// The chunked form of softmax attention (prefill): a flash-attention kernel. One workgroup per (batch b, head slice
// s, block of C query rows) stages its rows' query features, then walks the key blocks up to the diagonal: stage C
// keys' features and values, C×C logits (masked j > i to NO_LOGIT), per row the running max m, the rescaling
// e^(m_old − m) and l, and acc[r, col] = acc·e^(m_old − m) + Σ_c e^(s_rc − m) v_c. The float64 twin is
// backends/cpu/softmax-chunked.ts. No T×T matrix, and no exp of a positive number: logits of any size are safe.
//
// With `exportState` each workgroup also writes its own rows' key features and values into the key/value cache
// (softmax-analysis.ts), which decoding then continues from; the call starts at position 0.
import type { Program } from '../../src/ir/types.ts';
import type { ChunkSchedule } from './chunked.ts';
import { programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { KernelBuilder, type WorkgroupArray } from './kernel-builder.ts';
import type { Plan } from './plan.ts';
import { analyseSoftmax, featureOffsets, softmaxSharedFloats, type SoftmaxAnalysis } from './softmax-analysis.ts';
import { cacheBindings } from './softmax-decode.ts';
import { stageRows, valueRows, writeCacheRows } from './softmax-rows.ts';
import { shapeOf, softmaxTiledKernel, tiledLogit } from './softmax-tiled.ts';
import { NO_LOGIT } from './softmax-online.ts';
import type { Block } from './wgsl-block.ts';

export interface SoftmaxChunkOptions {
  readonly schedule: ChunkSchedule;
  readonly exportState?: boolean;
  readonly maxLength?: number;
  /** The tiled kernel's keys and values in one workgroup array, held in registers a phase early (absent: true), or two. */
  readonly shareKV?: boolean;
}

export function softmaxChunkedPlan(p: Program, sizes: Sizes, opts: SoftmaxChunkOptions): Plan {
  const a = analyseSoftmax(p, sizes, opts.maxLength);
  if (opts.schedule.block) {
    // the register-tiled kernel (softmax-tiled.ts): a schedule with `block` names its shape
    const logit = tiledLogit(a);
    if (!logit) throw new Error(`${p.name}: the tiled flash kernel (schedule b${opts.schedule.block}) needs a logit c · Σ q·k of one query and one key feature`);
    const shape = shapeOf(a, opts.schedule, opts.shareKV);
    return {
      variant: p.name,
      form: 'chunked',
      kernels: [softmaxTiledKernel(p, sizes, a, logit, shape, !!opts.exportState)],
      buffers: [...programBuffers(p, sizes), ...(opts.exportState ? a.buffers : [])],
      outAxes: p.outAxes,
      sizes,
      schedule: { chunk: shape.BQ, cols: a.NR, threads: shape.threads, block: shape.CPT },
      ...(opts.exportState ? { maxLength: a.capacity } : {}),
    };
  }
  const C = opts.schedule.chunk;
  const kb = new KernelBuilder(opts.schedule.threads, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const out = kb.storage('out:o', true, { always: true });
  const caches = opts.exportState ? cacheBindings(kb, a, true) : undefined;
  const A = {
    qf: kb.workgroup('qf', Math.max(1, C * a.WQ), 'query features of the block\'s rows'),
    kf: kb.workgroup('kf', Math.max(1, C * a.WK), 'key features of the key block'),
    vt: kb.workgroup('vt', C * a.NR, 'values of the key block'),
    S: kb.workgroup('S', C * C, 'logits, then exp(s − m)'),
    acc: kb.workgroup('acc', C * a.NR, 'Σ exp(s − m) v per row and column'),
    m: kb.workgroup('mrow', C, 'running max per row'),
    l: kb.workgroup('lrow', C, 'Σ exp(s − m) per row'),
    scale: kb.workgroup('srow', C, 'e^(m_old − m) of the last key block'),
  };
  if (kb.workgroupFloats() !== softmaxSharedFloats(a, C)) throw new Error('internal: softmaxSharedFloats disagrees with the flash kernel\'s arrays');
  const main = kb.body;
  main.define('nqb', `(dims.t + ${C - 1}u) / ${C}u`);
  main.define('s', 'wid.x / nqb');
  main.define('qb', 'wid.x % nqb');
  main.define('b', 'wid.y');
  const head = main.split(a.head, sizes, 's', 'hx');
  main.define('q0', `qb * ${C}u`);
  main.define('nq', `min(${C}u, dims.t - q0)`);
  stageRows(main, a, a.query, head, 'q0', 'nq', a.WQ, (at, f, slot, idx, pos) => at.line(`${A.qf.name}[${slot}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(at, f.id, idx, pos)};`));
  if (caches) writeCacheRows(main, a, head, read, caches);

  main.strided('r', `${C}u`, (c, r) => c.line(`${A.m.name}[${r}] = ${NO_LOGIT}; ${A.l.name}[${r}] = 0.0;`));
  main.strided('x', `${C * a.NR}u`, (c, x) => c.line(`${A.acc.name}[${x}] = 0.0;`));
  main.line('workgroupBarrier();');
  main.for('kb', '0u', (kbv) => `${kbv} <= qb`, (blk) => {
    blk.define('k0', `kb * ${C}u`);
    blk.define('nk', `min(${C}u, dims.t - k0)`);
    stageRows(blk, a, a.key, head, 'k0', 'nk', a.WK, (at, f, slot, idx, pos) => at.line(`${A.kf.name}[${slot}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(at, f.id, idx, pos)};`));
    valueRows(blk, a, head, 'k0', 'nk', (at, col, idx, pos, row) => at.line(`${A.vt.name}[${row} * ${a.NR}u + ${col}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(at, a.term.value, idx, pos)};`), { rows: C, zero: (w, x) => w.line(`${A.vt.name}[${x}] = 0.0;`) });
    blk.line('workgroupBarrier();');
    emitLogits(blk, a, A, head, read, C);
    blk.line('workgroupBarrier();');
    blk.strided('r', `${C}u`, (c, r) => {
      const mo = c.let('mo', `${A.m.name}[${r}]`);
      const mx = c.var('mx', mo);
      c.for('c', '0u', (cc) => `${cc} < ${C}u`, (l, cc) => l.line(`${mx} = max(${mx}, ${A.S.name}[${r} * ${C}u + ${cc}]);`));
      const sum = c.var('sum', '0.0');
      c.for('c', '0u', (cc) => `${cc} < ${C}u`, (l, cc) => {
        const pr = l.let('pr', `exp(${A.S.name}[${r} * ${C}u + ${cc}] - ${mx})`);
        l.line(`${A.S.name}[${r} * ${C}u + ${cc}] = ${pr};`);
        l.line(`${sum} = ${sum} + ${pr};`);
      });
      const sc = c.let('sc', `exp(${mo} - ${mx})`);
      c.line(`${A.scale.name}[${r}] = ${sc}; ${A.l.name}[${r}] = ${A.l.name}[${r}] * ${sc} + ${sum}; ${A.m.name}[${r}] = ${mx};`);
    });
    blk.line('workgroupBarrier();');
    blk.strided('x', `${C * a.NR}u`, (c, x) => {
      const r = c.let('r', `${x} / ${a.NR}u`);
      const col = c.let('col', `${x} % ${a.NR}u`);
      const acc = c.var('a', `${A.acc.name}[${x}] * ${A.scale.name}[${r}]`);
      c.for('c', '0u', (cc) => `${cc} < ${C}u`, (l, cc) => l.line(`${acc} = ${acc} + ${A.S.name}[${r} * ${C}u + ${cc}] * ${A.vt.name}[${cc} * ${a.NR}u + ${col}];`));
      c.line(`${A.acc.name}[${x}] = ${acc};`);
    });
    blk.line('workgroupBarrier();');
  }, { fixed: true });
  main.strided('x', `${C * a.NR}u`, (c, x) => {
    const r = c.let('r', `${x} / ${a.NR}u`);
    const col = c.let('col', `${x} % ${a.NR}u`);
    c.block(`if (${r} < nq)`, (w) => {
      const idx = { ...head, ...w.split(a.rest, sizes, col, 'oc') };
      w.line(`${kb.use(out)}[(b * dims.t + q0 + ${r}) * ${a.per}u + ${offset(p.outAxes, sizes, idx)}] = ${A.acc.name}[${x}] / ${A.l.name}[${r}];`);
    });
  });
  const kernel = kb.build({
    label: `${p.name}.chunked`,
    comment: [
      `flash-attention kernel of ${p.name} (softmax term ${a.term.name}): blocks of ${C} query rows per workgroup, key blocks`,
      `of ${C} up to the diagonal, a running max per row${caches ? '; writes its rows into the key/value cache' : ''}`,
    ],
    workgroups: (b, t) => [a.NS * Math.ceil(t / C), b, 1],
    launch: { kind: 'blocks', x: a.NS, block: C },
  });
  return {
    variant: p.name,
    form: 'chunked',
    kernels: [kernel],
    buffers: [...programBuffers(p, sizes), ...(caches ? a.buffers : [])],
    outAxes: p.outAxes,
    sizes,
    schedule: { chunk: C, cols: a.NR, threads: opts.schedule.threads },
    ...(caches ? { maxLength: a.capacity } : {}),
  };
}

/** S[r, c] = logit(q0 + r, k0 + c) where the causal mask admits it, NO_LOGIT elsewhere. */
function emitLogits(b: Block, a: SoftmaxAnalysis, A: { qf: WorkgroupArray; kf: WorkgroupArray; S: WorkgroupArray }, head: Index, read: Resolver, C: number): void {
  const qOff = featureOffsets(a.query);
  const kOff = featureOffsets(a.key);
  const query = new Map(a.query.map((f) => [f.id, f]));
  const key = new Map(a.key.map((f) => [f.id, f]));
  b.strided('x', `${C * C}u`, (c, x) => {
    const r = c.let('r', `${x} / ${C}u`);
    const cc = c.let('c', `${x} % ${C}u`);
    const ia = c.let('ia', `q0 + ${r}`);
    const ja = c.let('ja', `k0 + ${cc}`);
    const sc = c.var('sc', NO_LOGIT);
    c.block(`if (${r} < nq && ${cc} < nk && ${ja} <= ${ia})`, (w) => {
      const resolve: Resolver = (n, idx, where, at) => {
        const q = query.get(n.id);
        if (q) return `${A.qf.name}[${r} * ${a.WQ}u + ${qOff.get(n.id)}u + ${offset(q.axes, a.sizes, idx)}]`;
        const k = key.get(n.id);
        if (k) return `${A.kf.name}[${cc} * ${a.WK}u + ${kOff.get(n.id)}u + ${offset(k.axes, a.sizes, idx)}]`;
        return read(n, idx, where, at);
      };
      w.line(`${sc} = ${new ExprGen(a.p, a.sizes, resolve, { i: ia, j: ja }).value(w, a.term.form.logit, head, ja)};`);
    });
    c.line(`${A.S.name}[${x}] = ${sc};`);
  });
}
