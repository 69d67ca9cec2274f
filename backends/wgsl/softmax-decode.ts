// The recurrent form of softmax attention (decoding): one workgroup per (batch b, head slice s) walks the call's
// tokens in order. Per token at position pos it writes the token's key features and value into the key/value
// cache (softmax-analysis.ts) at slot pos, stages its query features in workgroup memory, then folds keys
// 0 … pos with the online softmax (softmax-online.ts), WG keys per tile:
//
//   o_pos = Σ_{j≤pos} exp(s(pos, j) − m) v_j / Σ_{j≤pos} exp(s(pos, j) − m),   m the running max
//
// The cache grows by one position per token; the plan's maxLength bounds it (the runtime refuses more).
import { programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import type { Plan } from './plan.ts';
import { analyseSoftmax, cacheIndex, featureOffsets, keyCache, VALUE_CACHE, type SoftmaxAnalysis, type SoftmaxFeature } from './softmax-analysis.ts';
import { declareOnline, emitOnlineOutput, emitOnlineStart, emitOnlineTiles } from './softmax-online.ts';
import type { Block } from './wgsl-block.ts';
import type { Program } from '../../src/ir/types.ts';

const WG = 64;

export function softmaxDecodePlan(p: Program, sizes: Sizes, maxLength?: number): Plan {
  const a = analyseSoftmax(p, sizes, maxLength);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + (${where} - dims.pos0)`);
  const out = kb.storage('out:o', true, { always: true });
  const caches = cacheBindings(kb, a, true);
  const qf = kb.workgroup('qf', Math.max(1, a.WQ), 'the token\'s query features');
  const online = declareOnline(kb, WG, a.NR);
  const main = kb.body;
  main.define('s', 'wid.x');
  main.define('b', 'wid.y');
  const head = main.split(a.head, sizes, 's', 'hx');
  main.for('tok', '0u', (tok) => `${tok} < dims.t`, (step) => {
    step.define('pos', 'dims.pos0 + tok');
    const gen = new ExprGen(p, sizes, read, { i: 'pos', j: 'pos' });
    stageFeatures(step, a, a.query, head, (at, f, x, idx) => at.line(`${qf.name}[${x}] = ${gen.value(at, f.id, idx, 'pos')};`));
    stageFeatures(step, a, a.key, head, (at, f, x, idx) => at.line(`${caches.use(keyCache(f.id))}[${cacheIndex(a, f.W, 'pos', offset(f.axes, sizes, idx))}] = ${gen.value(at, f.id, idx, 'pos')};`));
    step.strided('col', `${a.NR}u`, (c, col) => {
      const idx = { ...head, ...c.split(a.rest, sizes, col, 'vc') };
      c.line(`${caches.use(VALUE_CACHE)}[${cacheIndex(a, a.NR, 'pos', col)}] = ${gen.value(c, a.term.value, idx, 'pos')};`);
    });
    emitOnlineStart(step, online);
    step.line('storageBarrier();');
    step.line('workgroupBarrier();');
    const resolve = cachedKeys(a, read, qf, caches);
    emitOnlineTiles(step, online, 'pos + 1u', (at, j) => new ExprGen(p, sizes, resolve(j), { i: 'pos', j }).value(at, a.term.form.logit, head, j), (j, col) => `${caches.use(VALUE_CACHE)}[${cacheIndex(a, a.NR, j, col)}]`);
    emitOnlineOutput(step, online, (c, col, v) => {
      const idx = { ...head, ...c.split(a.rest, sizes, col, 'oc') };
      c.line(`${kb.use(out)}[(b * dims.t + tok) * ${a.per}u + ${offset(p.outAxes, sizes, idx)}] = ${v};`);
    });
    step.line('workgroupBarrier();');
  }, { fixed: true });
  const kernel = kb.build({
    label: `${p.name}.recurrent`,
    comment: [
      `softmax decoding kernel of ${p.name}: per token, its key features and value into the cache at slot pos, then`,
      `the online softmax over keys 0..pos (${WG} per tile); the cache holds ${a.capacity} positions unless allocated for more`,
    ],
    workgroups: (b) => [a.NS, b, 1],
  });
  return { variant: p.name, form: 'recurrent', kernels: [kernel], buffers: [...programBuffers(p, sizes), ...a.buffers], outAxes: p.outAxes, sizes, schedule: { workgroup: WG }, maxLength: a.capacity };
}

export interface CacheBindings {
  /** The WGSL name of cache buffer `name`, bound from here on. */
  use(name: string): string;
}

/** The cache buffers of `a` as storage bindings (written by decoding and prefill, read by verification). */
export function cacheBindings(kb: KernelBuilder, a: SoftmaxAnalysis, write: boolean): CacheBindings {
  const m = new Map<string, Binding>(a.buffers.map((b) => [b.name, kb.storage(b.name, write, { always: true })]));
  return { use: (name) => kb.use(m.get(name)!) };
}

/** For each feature, a strided loop over its W elements of the head slice: `emit(block, feature, flat x, index)`. */
export function stageFeatures(b: Block, a: SoftmaxAnalysis, fs: readonly SoftmaxFeature[], head: Index, emit: (at: Block, f: SoftmaxFeature, x: string, idx: Index) => void): void {
  const offs = featureOffsets(fs);
  for (const f of fs) {
    b.strided('x', `${f.W}u`, (c, x) => {
      const idx = { ...head, ...c.split(f.axes, a.sizes, x, `f${f.id}`) };
      emit(c, f, offs.get(f.id)! === 0 ? x : `${offs.get(f.id)}u + ${x}`, idx);
    });
  }
}

/** Query features from workgroup array `qf`, key features of position j from the cache, leaves from `read`. */
export function cachedKeys(a: SoftmaxAnalysis, read: Resolver, qf: WorkgroupArray, caches: CacheBindings): (j: string) => Resolver {
  const qOff = featureOffsets(a.query);
  const key = new Map(a.key.map((f) => [f.id, f]));
  const query = new Map(a.query.map((f) => [f.id, f]));
  return (j) => (n, idx, where, at) => {
    const q = query.get(n.id);
    if (q) return `${qf.name}[${qOff.get(n.id)}u + ${offset(q.axes, a.sizes, idx)}]`;
    const k = key.get(n.id);
    if (k) return `${caches.use(keyCache(n.id))}[${cacheIndex(a, k.W, j, offset(k.axes, a.sizes, idx))}]`;
    return read(n, idx, where, at);
  };
}
